// ProcessGroup: the front end of collective communication over a fixed set of
// ranks. It checks the arguments of every call (raising InvalidArgument before
// any communication), counts collectives, and routes each call to the backend
// registered for the device type of its tensors.
//
// Thread safety: calls may come from several threads, but every rank must
// issue the group's collectives in the same order.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "tutti/backend.hpp"
#include "tutti/options.hpp"
#include "tutti/store.hpp"
#include "tutti/tensor.hpp"
#include "tutti/work.hpp"

namespace tutti {

namespace trace {
class GroupTracer;  // the flight recorder's view of a group (src/debug)
}

class ProcessGroup : public std::enable_shared_from_this<ProcessGroup> {
 public:
  struct Options {
    // A registered backend name ("gloo"), a per-device list
    // ("cpu:gloo,cuda:nccl"), or empty to attach backends with set_backend().
    std::string backend;
    std::chrono::milliseconds timeout = kDefaultTimeout;
    // Shown in messages and logs; subgroups get "<parent>/<n>".
    std::string group_name = "default";
  };

  // Creates the named backends through the registry (each on `store`).
  // Throws InvalidArgument for an unknown backend or a rank outside [0, size).
  ProcessGroup(std::shared_ptr<Store> store, int rank, int size, Options options);
  virtual ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  std::string backend_name() const;
  const std::string& group_name() const { return options_.group_name; }
  std::chrono::milliseconds timeout() const { return options_.timeout; }
  const std::shared_ptr<Store>& store() const { return store_; }

  // Ops route by the tensors' device.
  void set_backend(DeviceType type, std::shared_ptr<Backend> backend);
  // nullptr if no backend serves `type`.
  std::shared_ptr<Backend> get_backend(DeviceType type) const;
  // Collectives issued so far (point-to-point calls are not counted).
  uint64_t sequence_number() const { return sequence_.load(); }

  std::shared_ptr<Work> broadcast(std::vector<Tensor>& tensors, const BroadcastOptions& opts = {});
  std::shared_ptr<Work> allreduce(std::vector<Tensor>& tensors, const AllreduceOptions& opts = {});
  std::shared_ptr<Work> allreduce_sparse(std::vector<SparseTensor>& tensors,
                                         const AllreduceOptions& opts = {});
  std::shared_ptr<Work> allreduce_coalesced(std::vector<Tensor>& tensors,
                                            const AllreduceCoalescedOptions& opts = {});
  std::shared_ptr<Work> reduce(std::vector<Tensor>& tensors, const ReduceOptions& opts = {});
  std::shared_ptr<Work> allgather(std::vector<std::vector<Tensor>>& outputs,
                                  std::vector<Tensor>& inputs, const AllgatherOptions& opts = {});
  std::shared_ptr<Work> allgather_into_tensor(Tensor& output, Tensor& input,
                                              const AllgatherOptions& opts = {});
  std::shared_ptr<Work> allgather_coalesced(std::vector<std::vector<Tensor>>& output_lists,
                                            std::vector<Tensor>& inputs,
                                            const AllgatherOptions& opts = {});
  std::shared_ptr<Work> allgather_into_tensor_coalesced(std::vector<Tensor>& outputs,
                                                        std::vector<Tensor>& inputs,
                                                        const AllgatherOptions& opts = {});
  std::shared_ptr<Work> gather(std::vector<std::vector<Tensor>>& outputs,
                               std::vector<Tensor>& inputs, const GatherOptions& opts = {});
  std::shared_ptr<Work> scatter(std::vector<Tensor>& outputs,
                                std::vector<std::vector<Tensor>>& inputs,
                                const ScatterOptions& opts = {});
  std::shared_ptr<Work> reduce_scatter(std::vector<Tensor>& outputs,
                                       std::vector<std::vector<Tensor>>& inputs,
                                       const ReduceScatterOptions& opts = {});
  std::shared_ptr<Work> reduce_scatter_tensor(Tensor& output, Tensor& input,
                                              const ReduceScatterOptions& opts = {});
  std::shared_ptr<Work> reduce_scatter_tensor_coalesced(std::vector<Tensor>& outputs,
                                                        std::vector<Tensor>& inputs,
                                                        const ReduceScatterOptions& opts = {});
  std::shared_ptr<Work> alltoall_base(Tensor& output, Tensor& input,
                                      std::vector<int64_t> output_split_sizes,
                                      std::vector<int64_t> input_split_sizes,
                                      const AllToAllOptions& opts = {});
  std::shared_ptr<Work> alltoall(std::vector<Tensor>& outputs, std::vector<Tensor>& inputs,
                                 const AllToAllOptions& opts = {});
  std::shared_ptr<Work> send(std::vector<Tensor>& tensors, int dst_rank, int tag);
  std::shared_ptr<Work> recv(std::vector<Tensor>& tensors, int src_rank, int tag);
  std::shared_ptr<Work> recv_anysource(std::vector<Tensor>& tensors, int tag);
  std::shared_ptr<Work> barrier(const BarrierOptions& opts = {});
  // Rank 0 waits for every rank; throws naming the ranks that did not arrive
  // in time.
  void monitored_barrier(const BarrierOptions& opts = {}, bool wait_all_ranks = false);
  // Collective over this group; returns nullptr on ranks not in `ranks`.
  std::shared_ptr<ProcessGroup> new_group(const std::vector<int>& ranks);

  // "group 'default' rank 1/4": the context every message of this group names.
  const std::string& describe() const { return description_; }

 private:
  using BackendSlots = std::array<std::shared_ptr<Backend>, kNumDeviceTypes>;
  // As the public constructor; slots already filled (by a parent backend's
  // create_subgroup) are used instead of the registry's factory.
  ProcessGroup(std::shared_ptr<Store> store, int rank, int size, Options options,
               BackendSlots prebuilt);

  // The backend for `device`, checked to support `op`.
  Backend& route(OpType op, Device device) const;
  // Backend for operations without tensors (barrier): CPU if present.
  Backend& route_tensorless(OpType op) const;
  uint64_t next_sequence() { return ++sequence_; }

  const std::shared_ptr<Store> store_;
  const int rank_;
  const int size_;
  const Options options_;
  const std::string description_;  // describe(), formatted once
  std::atomic<uint64_t> sequence_{0};
  std::atomic<uint64_t> subgroups_created_{0};
  std::shared_ptr<trace::GroupTracer> tracer_;  // set in the constructor

  // Publishes backends_ to route(), which reads without the lock. REQUIRES:
  // backends_mutex_ held.
  void publish_routes_locked();

  mutable std::mutex backends_mutex_;
  BackendSlots backends_;  // GUARDED_BY(backends_mutex_)
  // backends_ as raw pointers for route(); a backend set_backend replaces is
  // kept in replaced_ until the group is destroyed, so a pointer read here
  // stays good.
  std::array<std::atomic<Backend*>, kNumDeviceTypes> routes_{};
  std::vector<std::shared_ptr<Backend>> replaced_;  // GUARDED_BY(backends_mutex_)
};

}  // namespace tutti
