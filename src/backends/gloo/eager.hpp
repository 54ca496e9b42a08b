// Small allreduce and allgather messages with their receives posted ahead.
//
// gloo's unbound buffers (what tutti's own schedules use) move a message only
// after a rendezvous: the receiver announces its receive (NOTIFY_RECV_READY),
// and the sender writes the data at once only if that notice is already in;
// otherwise it announces the send and gloo's network thread writes the data
// when the notice arrives. In recursive doubling both ranks of an exchange
// post at the same moment, so most messages take the slow way: a notice
// across, a wake-up of the peer's network thread, the data back. For a
// small allreduce that round is most of the cost (docs/perf.md, "gloo
// backend", session 11); so it is for a ring allgather on 2 ranks, one
// exchange.
//
// An EagerChannel keeps the receive posted ahead. For each rank this one
// exchanges with in recursive doubling or the ring it has two inboxes, each with a
// receive posted for a coming message, and two outboxes to send from.
// Messages to a peer are numbered, alternate between its two inboxes, and
// a receive is posted for message n + 2 as soon as message n has been used
// up. So when a rank sends message n, the peer's notice for it arrived one
// or two operations earlier, and gloo writes the data to the socket at once
// from the sending thread: one message per transfer, no rendezvous.
//
// Both ranks must number their messages alike: they must run the same
// operations through the channel in the same order, one at a time.
// Operations get a ticket when they are queued (GlooBackend::enqueue, in
// the same order on every rank) and take their turn by it, since two worker
// threads may run consecutive operations at once. Each message carries its
// operation's tag, step and length, checked on arrival: a channel out of
// step fails the operation instead of reducing someone else's data. After
// an operation fails inside the channel (a timeout, a lost peer) the counts
// of the two sides may differ, so the channel refuses every later
// operation. A message only ever lands in an inbox whose receive is posted,
// so no state of either side can make one overwrite data in use.
#pragma once

#include <gloo/context.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

namespace tutti::gloo_backend {

class Transfers;

class EagerChannel {
 public:
  using Clock = std::chrono::steady_clock;
  // The largest message (in bytes) that goes through the channel: a whole
  // allreduce, or one rank's part of an allgather.
  static constexpr size_t kMaxBytes = size_t{64} << 10;

  // Makes the buffers for `peers` on `context`'s connections and posts
  // the first receives. Null when `peers` is empty.
  static std::unique_ptr<EagerChannel> create(std::shared_ptr<::gloo::Context> context,
                                              const std::vector<int>& peers);
  ~EagerChannel();
  EagerChannel(const EagerChannel&) = delete;
  EagerChannel& operator=(const EagerChannel&) = delete;

  // Tickets, 1, 2, ...: call in the order operations are queued (every
  // rank queues the same ones in the same order).
  uint64_t take_ticket();
  // The operation with `ticket` will not use the channel, or is done with
  // it. Idempotent; every ticket taken must be settled once.
  void settle(uint64_t ticket);

  // An operation's use of the channel: waits for the operations with
  // earlier tickets (until the deadline of `transfers`, which also names
  // the steps and peers in errors); settles its ticket when destroyed. A
  // ticket is good for one turn: a second one fails and closes the channel
  // rather than waiting for a turn that has passed.
  class Turn {
   public:
    // Throws TimeoutError past the deadline, DistBackendError if the
    // channel is out of step.
    Turn(EagerChannel& channel, uint64_t ticket, const Transfers& transfers);
    ~Turn();
    Turn(const Turn&) = delete;
    Turn& operator=(const Turn&) = delete;

    // Copies `bytes` from `data` into the next outbox to `peer` and sends
    // it. REQUIRES: bytes <= kMaxBytes.
    void send(int peer, size_t step, const void* data, size_t bytes);
    // Waits for the last send to `peer` to leave its outbox.
    void wait_sent(int peer, size_t step);
    // Waits for the next message from `peer`, checks that it is this
    // operation's `step` of `bytes`, passes its payload to `use`, then posts
    // the receive that inbox waits on next. Throws DistBackendError if the
    // message is another's.
    void receive(int peer, size_t step, size_t bytes, const std::function<void(const void*)>& use);

    // Marks the channel out of step (call when the operation failed inside
    // it): later turns fail at once with `reason` in their message.
    void fail(const std::string& reason);

   private:
    EagerChannel& channel_;
    const uint64_t ticket_;
    const Transfers& transfers_;
  };

 private:
  struct Link;
  explicit EagerChannel(std::shared_ptr<::gloo::Context> context);
  Link& link(int peer);

  const std::shared_ptr<::gloo::Context> context_;  // outlives the buffers
  std::map<int, std::unique_ptr<Link>> links_;      // by peer; fixed after create()

  std::mutex mutex_;
  std::condition_variable turn_cv_;
  uint64_t next_ticket_ = 1;    // GUARDED_BY(mutex_)
  uint64_t turn_ = 1;           // GUARDED_BY(mutex_): the lowest ticket not settled
  std::set<uint64_t> settled_;  // GUARDED_BY(mutex_): settled tickets above turn_
  std::string broken_;          // GUARDED_BY(mutex_): why the channel is out of step
};

}  // namespace tutti::gloo_backend
