// The gloo backend: every operation of Backend on the real gloo library
// (Debian libgloo-dev, TCP transport).
//
// Set-up: one gloo context per device, each a full mesh connected through the
// group's store. Operations are queued and run by `threads` worker threads in
// issue order; each gets a tag from a counter that advances identically on
// every rank, and runs on context[tag % contexts], so several devices share
// the load. Point-to-point calls bypass the queue.
//
// Deadlines: every operation runs with its options' timeout (else the
// group's); gloo's timeout becomes TimeoutError, a lost peer
// DistNetworkError, both naming the operation and its sequence number and,
// after a roll call through the store (census.hpp), the ranks that did not
// answer. A lost peer also closes this rank's connections, so that the
// ranks waiting on this one fail at once instead of at their timeout.
#pragma once

#include <gloo/context.h>
#include <gloo/transport/device.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "backends/gloo/census.hpp"
#include "backends/gloo/eager.hpp"
#include "backends/gloo/grace_timer.hpp"
#include "backends/gloo/scratch_pool.hpp"
#include "backends/gloo/waiter_pool.hpp"
#include "tutti/backend.hpp"

namespace tutti::gloo_backend {

// AUTO: tutti's choice by size. RING and DOUBLING are tutti's own schedules
// (schedules.hpp); GLOO_RING and GLOO_BCUBE call gloo's allreduce.
enum class AllreduceAlgorithm { AUTO, RING, DOUBLING, GLOO_RING, GLOO_BCUBE };
// "auto", "ring", "doubling", "gloo-ring", "gloo-bcube" ("bcube" is kept as
// gloo-bcube); throws InvalidArgument otherwise.
AllreduceAlgorithm parse_algorithm(const std::string& name);

struct Options {
  std::chrono::milliseconds timeout = kDefaultTimeout;
  // Empty: default_devices() (device.hpp).
  std::vector<std::shared_ptr<::gloo::transport::Device>> devices;
  int threads = 2;
  AllreduceAlgorithm allreduce_algorithm = AllreduceAlgorithm::AUTO;
  // Name the ranks gone after a failure (census.hpp); BackendConfig::roll_call.
  bool roll_call = true;

  // Reads TUTTI_GLOO_THREADS and TUTTI_GLOO_ALLREDUCE (parse_algorithm).
  static Options from_env(std::chrono::milliseconds timeout);
};

// Where operations leave gloo's option objects (which own the operation's
// transport buffers) instead of destroying them on the spot. The destructor
// of a gloo tcp UnboundBuffer spins on sched_yield() until gloo's network
// thread has let go of the buffer, which it holds for a moment after
// signalling the completion. If that thread is not running then, because
// the waiter it just woke took its CPU and the other CPU runs another
// process's spinner, the destructor spins for a whole scheduler time slice:
// measured as about 4 ms per 8-byte operation on 2 ranks over 2 cores,
// against 0.2 ms otherwise. gloo can hold a buffer until later events on
// its connection (dropping them at the next operation still spun), so they
// are dropped kDelay operations later, when gloo has long let go of them.
class Retired {
 public:
  static constexpr size_t kDelay = 8;

  void keep(std::shared_ptr<void> object) {
    std::lock_guard<std::mutex> lock(mutex_);
    current_.push_back(std::move(object));
  }
  // An operation starts: what was kept kDelay operations ago is dropped.
  void next_operation() {
    std::vector<std::shared_ptr<void>> dropped;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      batches_.push_back(std::move(current_));
      current_.clear();
      if (batches_.size() <= kDelay) return;
      dropped = std::move(batches_.front());
      batches_.pop_front();
    }
  }

 private:
  std::mutex mutex_;
  std::vector<std::shared_ptr<void>> current_;              // GUARDED_BY(mutex_)
  std::deque<std::vector<std::shared_ptr<void>>> batches_;  // GUARDED_BY(mutex_)
};

class LinkWatch;

// What a running operation gets.
struct OpContext {
  std::shared_ptr<::gloo::Context> context;
  uint32_t tag = 0;
  std::chrono::milliseconds timeout{0};
  AllreduceAlgorithm allreduce_algorithm = AllreduceAlgorithm::AUTO;
  Retired* retired = nullptr;       // null: objects are destroyed at once
  LinkWatch* link_watch = nullptr;  // null: transfer waits are not watched
  ScratchPool* scratch = nullptr;   // null: scratch is allocated each time
  // An allreduce's or allgather's small-message channel and its ticket
  // there (eager.hpp); null and 0 for other operations and where there is
  // none.
  EagerChannel* eager = nullptr;
  uint64_t eager_ticket = 0;
  int rank() const { return context->rank; }
  int size() const { return context->size; }
  // For an operation that does not use the channel (or is done with it):
  // settles its ticket, so the operations queued after it there may go.
  void skip_eager_turn() const {
    if (eager != nullptr) eager->settle(eager_ticket);
  }
  // Hands a finished operation's gloo objects over (see Retired).
  void retire(std::shared_ptr<void> object) const {
    if (retired != nullptr) retired->keep(std::move(object));
  }
  // At least `bytes` of scratch (see ScratchPool).
  Tensor take_scratch(size_t bytes) const {
    return scratch != nullptr ? scratch->take(bytes)
                              : Tensor::empty({static_cast<int64_t>(bytes)}, DType::UInt8);
  }
  // Scratch from take_scratch that no posted transfer uses any more.
  void reuse_scratch(Tensor block) const {
    if (scratch != nullptr) scratch->give_back(std::move(block));
  }
};

class GlooWork;

class GlooBackend : public Backend, public std::enable_shared_from_this<GlooBackend> {
 public:
  // Connects the full mesh of every device through `store` (already
  // prefixed for this group); throws DistNetworkError naming the peer that
  // could not be reached, TimeoutError if a peer never arrives.
  GlooBackend(std::shared_ptr<Store> store, int rank, int size, std::string group_name,
              Options options);
  ~GlooBackend() override;

  std::string name() const override { return "gloo"; }
  bool supports(OpType op) const override;

  std::shared_ptr<Work> broadcast(std::vector<Tensor>& tensors,
                                  const BroadcastOptions& opts) override;
  std::shared_ptr<Work> allreduce(std::vector<Tensor>& tensors,
                                  const AllreduceOptions& opts) override;
  std::shared_ptr<Work> allreduce_sparse(std::vector<SparseTensor>& tensors,
                                         const AllreduceOptions& opts) override;
  std::shared_ptr<Work> allreduce_coalesced(std::vector<Tensor>& tensors,
                                            const AllreduceCoalescedOptions& opts) override;
  std::shared_ptr<Work> reduce(std::vector<Tensor>& tensors, const ReduceOptions& opts) override;
  std::shared_ptr<Work> allgather(std::vector<std::vector<Tensor>>& outputs,
                                  std::vector<Tensor>& inputs,
                                  const AllgatherOptions& opts) override;
  std::shared_ptr<Work> allgather_into_tensor(Tensor& output, Tensor& input,
                                              const AllgatherOptions& opts) override;
  std::shared_ptr<Work> allgather_coalesced(std::vector<std::vector<Tensor>>& output_lists,
                                            std::vector<Tensor>& inputs,
                                            const AllgatherOptions& opts) override;
  std::shared_ptr<Work> allgather_into_tensor_coalesced(std::vector<Tensor>& outputs,
                                                        std::vector<Tensor>& inputs,
                                                        const AllgatherOptions& opts) override;
  std::shared_ptr<Work> gather(std::vector<std::vector<Tensor>>& outputs,
                               std::vector<Tensor>& inputs, const GatherOptions& opts) override;
  std::shared_ptr<Work> scatter(std::vector<Tensor>& outputs,
                                std::vector<std::vector<Tensor>>& inputs,
                                const ScatterOptions& opts) override;
  std::shared_ptr<Work> reduce_scatter(std::vector<Tensor>& outputs,
                                       std::vector<std::vector<Tensor>>& inputs,
                                       const ReduceScatterOptions& opts) override;
  std::shared_ptr<Work> reduce_scatter_tensor(Tensor& output, Tensor& input,
                                              const ReduceScatterOptions& opts) override;
  std::shared_ptr<Work> reduce_scatter_tensor_coalesced(std::vector<Tensor>& outputs,
                                                        std::vector<Tensor>& inputs,
                                                        const ReduceScatterOptions& opts) override;
  std::shared_ptr<Work> alltoall_base(Tensor& output, Tensor& input,
                                      std::vector<int64_t> output_split_sizes,
                                      std::vector<int64_t> input_split_sizes,
                                      const AllToAllOptions& opts) override;
  std::shared_ptr<Work> alltoall(std::vector<Tensor>& outputs, std::vector<Tensor>& inputs,
                                 const AllToAllOptions& opts) override;
  std::shared_ptr<Work> send(std::vector<Tensor>& tensors, int dst_rank, int tag) override;
  std::shared_ptr<Work> recv(std::vector<Tensor>& tensors, int src_rank, int tag) override;
  std::shared_ptr<Work> recv_anysource(std::vector<Tensor>& tensors, int tag) override;
  std::shared_ptr<Work> barrier(const BarrierOptions& opts) override;
  void monitored_barrier(const BarrierOptions& opts, bool wait_all_ranks) override;

  const Options& options() const { return options_; }

 private:
  using Job = std::function<void(const OpContext&, GlooWork&)>;

  // Queues `job` as one collective; returns its Work at once. `outputs`
  // are what Work::result() returns.
  std::shared_ptr<Work> enqueue(OpType op, std::chrono::milliseconds timeout,
                                std::vector<Tensor> outputs, Job job);
  void worker_loop();
  std::chrono::milliseconds resolve(std::chrono::milliseconds timeout) const {
    return effective_timeout(timeout, options_.timeout);
  }
  // Call from a catch block: the error in flight as a tutti error naming
  // `what`. A timeout or a lost peer (TimeoutError, DistNetworkError) also
  // takes the roll call (census.hpp) and adds its verdict; a lost peer
  // first closes every connection of the group (see the top of this file).
  std::exception_ptr fail_current(const std::string& what, std::chrono::milliseconds timeout);
  // Posts a send or recv (peer -1: from any rank) and returns its Work.
  std::shared_ptr<Work> post_p2p(OpType op, Tensor tensor, int peer, int tag);

  const std::shared_ptr<Store> store_;
  const std::string group_name_;
  // "group 'default' rank 1/4 (gloo)", shared by the works' descriptions.
  const std::shared_ptr<const std::string> where_;
  Options options_;
  std::vector<std::shared_ptr<::gloo::Context>> contexts_;
  Retired retired_;  // after contexts_: its objects go first
  // One per context (null where there is none), after contexts_.
  std::vector<std::unique_ptr<EagerChannel>> eager_;
  ScratchPool scratch_;
  // After contexts_, which its thread reads; operations have ended before
  // members go (the workers are joined, and a waiter holds the backend).
  std::unique_ptr<LinkWatch> link_watch_;
  std::unique_ptr<Census> census_;

  struct Queued {
    std::shared_ptr<GlooWork> work;
    std::function<void()> run;
    std::chrono::steady_clock::time_point enqueued_at;
    // When a worker may run it: enqueued_at plus the grace.
    std::chrono::steady_clock::time_point ready_at;
  };
  // Runs `queued` (taken with pop_head) on this thread and completes its
  // Work.
  void run(Queued& queued);
  // On the thread waiting for `target` with `limit` (kNoTimeout: none):
  // runs the queue's head up to and including `target`, if it is still
  // queued and none of those operations' timeouts exceeds the limit (gloo
  // returns within an operation's timeout). Otherwise hands `target` to the
  // workers at once, without its grace: somebody is waiting for it.
  void help(const GlooWork* target, std::chrono::milliseconds limit);
  friend class GlooWork;  // calls help() and expedite() for itself

  // Makes `target`, if still queued, and the operations before it ready for
  // the workers now: its caller polls instead of waiting.
  void expedite(const GlooWork* target);
  // Makes the queue's operations up to and including `last` ready for the
  // workers now, then end_streak(). REQUIRES: queue_mutex_ held.
  void ready_now_through(std::deque<Queued>::iterator last);
  // Back to the short grace (kInlineGrace), for the queued operations too.
  // REQUIRES: queue_mutex_ held.
  void end_streak();
  // Removes the queue's head and makes sure the timer fires by the next
  // one's time; the head counts as running until run() ends it.
  // REQUIRES: queue_mutex_ held, queue_ not empty.
  Queued pop_head();
  // Makes sure the grace timer fires no later than `when`: arms it unless it
  // is already due by then. REQUIRES: queue_mutex_ held.
  void fire_by(std::chrono::steady_clock::time_point when);

  std::mutex queue_mutex_;
  std::deque<Queued> queue_;    // GUARDED_BY(queue_mutex_)
  uint64_t next_sequence_ = 0;  // GUARDED_BY(queue_mutex_)
  bool stopping_ = false;       // GUARDED_BY(queue_mutex_)
  // Set first thing by the destructor: failures from then on are its own
  // doing, not a peer's, so they take no roll call.
  std::atomic<bool> closing_{false};
  // Due no later than the head's grace while the queue is not empty; the
  // workers sleep on it. It is mostly left armed when the queue empties (a
  // system call saved per operation), so it may fire with nothing to do;
  // in a streak of waited operations it is disarmed instead (pop_head).
  GraceTimer grace_timer_;
  static constexpr auto kUnarmed = std::chrono::steady_clock::time_point::max();
  // When the timer fires, or kUnarmed.
  std::chrono::steady_clock::time_point timer_due_ = kUnarmed;  // GUARDED_BY(queue_mutex_)
  // Operations in a row that the thread waiting on them ran itself.
  uint32_t waited_streak_ = 0;  // GUARDED_BY(queue_mutex_)
  // Operations taken from the queue whose run() has not ended. Read by the
  // destructor once the queue is closed, when it can only fall.
  std::atomic<int> running_{0};
  std::vector<std::thread> workers_;
  std::atomic<uint64_t> monitored_barriers_{0};
  // Posted sends and receives, failed and cancelled when the group goes away.
  std::mutex p2p_mutex_;
  std::vector<std::weak_ptr<GlooWork>> p2p_pending_;  // GUARDED_BY(p2p_mutex_)
  WaiterPool waiters_;  // last: joined first, while everything else is alive
};

BackendInfo backend_info();

}  // namespace tutti::gloo_backend
