// DebugBackend: the wrapper TUTTI_DEBUG puts around a group's backends.
//
// At INFO it only logs: every operation that fails, with what it was called
// with. At DETAIL it also checks, over a helper gloo backend of its own
// (built through the registry on the group's store under "debug/"):
//
// Collectives. Before forwarding, the calling thread allgathers 24 bytes
// per rank over the helper: the sequence number, a 64-bit hash of the
// fingerprint, and the rank's term of the alltoall cross-check (terms XOR
// to 0 over all ranks when every sender and receiver agree). When all
// agree, that is all. Otherwise, or when the allgather fails (it ends a
// margin before the operation's timeout), every rank writes its full
// fingerprint to the group's store under "debug/checks/" and reads the
// others' until the timeout, and raises DesyncError naming the ranks and
// fields that differ, or the ranks that never arrived and what the others
// called. Nothing is forwarded on a failed check, so the backend itself
// stays in step. The collective call returns once every rank has reached it
// (as in c10d's wrapper).
//
// Point to point. A send first sends a 128-byte description of its tensor
// (and its place in the order of sends to that peer with that tag) to the
// peer over the helper, on a tag of its own derived from the user's tag, and
// waits for the peer's answer; the receiver compares it with its own tensor
// and answers. Only a matching pair goes on to the real backend, in the
// order the pair was matched, so a recv_anysource gets the data of the send
// whose description it received. All of this runs in the background, so
// send and recv return at once as usual and are not ordered with
// collectives. An unmatched send or recv raises at the group's timeout
// (DeadlineWatcher aborts its helper operations), naming the peer and the
// tensor.
#pragma once

#include <array>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>

#include "core/backend_wrapper.hpp"
#include "debug/fingerprint.hpp"
#include "tutti/store.hpp"

namespace tutti::debug {

struct GroupInfo {
  std::shared_ptr<Store> store;  // the group's own store (unprefixed)
  int rank = 0;
  int size = 1;
  std::chrono::milliseconds timeout = kDefaultTimeout;
  std::string group_name;
};

// Called by every ProcessGroup constructor with the backends it made: at
// INFO and DETAIL logs the group's creation and wraps each distinct backend
// in a DebugBackend (checking at DETAIL). Throws InvalidArgument for a bad
// TUTTI_DEBUG, or at DETAIL when no helper can be built (no gloo in this
// build, or a group without a store).
void instrument_group(std::array<std::shared_ptr<Backend>, kNumDeviceTypes>& backends,
                      const GroupInfo& group, const std::string& backend_name);

// Runs actions keyed by (channel, counter) in counter order per channel,
// each exactly once; a null action only advances the channel.
class Sequencer {
 public:
  using Key = std::tuple<int, int, int>;
  void arrive(const Key& key, uint64_t counter, std::function<void()> action);

 private:
  struct Channel {
    uint64_t next = 0;
    bool draining = false;
    std::map<uint64_t, std::function<void()>> ready;
  };
  std::mutex mutex_;
  std::map<Key, Channel> channels_;  // GUARDED_BY(mutex_)
};

// Runs actions at deadlines on a thread of its own (started at the first
// one), for the point-to-point checks that have no thread waiting.
class DeadlineWatcher {
 public:
  using Clock = std::chrono::steady_clock;
  using Key = std::pair<Clock::time_point, uint64_t>;
  DeadlineWatcher() = default;
  ~DeadlineWatcher();
  DeadlineWatcher(const DeadlineWatcher&) = delete;
  DeadlineWatcher& operator=(const DeadlineWatcher&) = delete;

  Key at(Clock::time_point when, std::function<void()> action);
  // Drops the action if it has not run.
  void cancel(const Key& key);

 private:
  void loop();
  std::mutex mutex_;
  std::condition_variable cv_;
  std::map<Key, std::function<void()>> actions_;  // GUARDED_BY(mutex_)
  uint64_t next_id_ = 0;                          // GUARDED_BY(mutex_)
  bool stopping_ = false;                         // GUARDED_BY(mutex_)
  std::thread thread_;                            // GUARDED_BY(mutex_)
};

class DebugBackend : public BackendWrapper, public std::enable_shared_from_this<DebugBackend> {
 public:
  // helper null: log only (INFO). `wrapped` names the target's store prefix
  // ("gloo/cpu").
  DebugBackend(std::shared_ptr<Backend> target, std::shared_ptr<Backend> helper, GroupInfo group,
               const std::string& wrapped = {});
  ~DebugBackend() override;

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

 private:
  // Numbers the call, checks it (DETAIL), forwards it and watches it.
  std::shared_ptr<Work> collective(Fingerprint fp, std::chrono::milliseconds timeout,
                                   const std::function<std::shared_ptr<Work>()>& forward);
  // The check described above; throws DesyncError.
  void check(const Fingerprint& fp, std::chrono::milliseconds timeout);
  // "allreduce #3 on group 'default' rank 1/4"
  std::string where(const Fingerprint& fp) const;
  // Logs the error of a failed call or work, with the call.
  // `call` is formatted only if there is a failure to log.
  using CallText = std::function<std::string()>;
  void log_failure(const CallText& call, const std::exception_ptr& error) const;
  void watch(CallText call, const std::shared_ptr<Work>& work) const;

  // The helper's send or recv (peer -1: from any rank); a failure to post
  // becomes DistNetworkError.
  std::shared_ptr<Work> helper_p2p(OpType op, Tensor tensor, int peer, int tag);
  std::shared_ptr<Work> post_send(std::vector<Tensor>& tensors, int dst, int tag);
  std::shared_ptr<Work> post_recv(OpType op, std::vector<Tensor>& tensors, int src, int tag);

  const std::shared_ptr<Backend> helper_;
  const GroupInfo group_;
  // Full fingerprints when a check fails, under "debug/checks/".
  std::shared_ptr<Store> checks_store_;
  std::mutex collective_mutex_;  // one check at a time, in call order
  uint64_t sequence_ = 0;        // GUARDED_BY(collective_mutex_)

  std::mutex p2p_mutex_;
  std::map<std::pair<int, int>, uint64_t> send_counters_;  // GUARDED_BY(p2p_mutex_)
  Sequencer sequencer_;
  DeadlineWatcher deadlines_;  // last: stopped first
};

}  // namespace tutti::debug
