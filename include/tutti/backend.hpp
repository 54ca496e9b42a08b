// Backend: the engine that carries out operations for one device type, and
// the registry through which backends are found by name.
//
// A ProcessGroup checks every argument that does not depend on the backend
// (tensor counts, sizes, dtypes, contiguity, ranks, split sizes, reduce op
// against dtype) and only then forwards the call, so a backend sees
// well-formed input. A backend adds the checks of its own, also before any
// communication, and raises InvalidArgument for them.
//
// Every operation returns a Work at once and completes it from the backend's
// own threads. Unless stated otherwise, calls must be issued in the same
// order on every rank.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tutti/options.hpp"
#include "tutti/store.hpp"
#include "tutti/tensor.hpp"
#include "tutti/work.hpp"

namespace tutti {

struct BackendConfig;

class Backend {
 public:
  Backend(int rank, int size) : rank_(rank), size_(size) {}
  virtual ~Backend() = default;
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  virtual std::string name() const = 0;

  // Capability query: whether this backend carries out `op`. The operations
  // marked [optional] below are supported only where this says so; the
  // ProcessGroup asks before forwarding and names the backends that do.
  virtual bool supports(OpType op) const;

  virtual std::shared_ptr<Work> broadcast(std::vector<Tensor>& tensors,
                                          const BroadcastOptions& opts) = 0;
  virtual std::shared_ptr<Work> allreduce(std::vector<Tensor>& tensors,
                                          const AllreduceOptions& opts) = 0;
  // [optional]
  virtual std::shared_ptr<Work> allreduce_sparse(std::vector<SparseTensor>& tensors,
                                                 const AllreduceOptions& opts);
  // [optional]
  virtual std::shared_ptr<Work> allreduce_coalesced(std::vector<Tensor>& tensors,
                                                    const AllreduceCoalescedOptions& opts);
  virtual std::shared_ptr<Work> reduce(std::vector<Tensor>& tensors, const ReduceOptions& opts) = 0;
  virtual std::shared_ptr<Work> allgather(std::vector<std::vector<Tensor>>& outputs,
                                          std::vector<Tensor>& inputs,
                                          const AllgatherOptions& opts) = 0;
  // [optional]
  virtual std::shared_ptr<Work> allgather_into_tensor(Tensor& output, Tensor& input,
                                                      const AllgatherOptions& opts);
  // [optional]
  virtual std::shared_ptr<Work> allgather_coalesced(std::vector<std::vector<Tensor>>& output_lists,
                                                    std::vector<Tensor>& inputs,
                                                    const AllgatherOptions& opts);
  // [optional]
  virtual std::shared_ptr<Work> allgather_into_tensor_coalesced(std::vector<Tensor>& outputs,
                                                                std::vector<Tensor>& inputs,
                                                                const AllgatherOptions& opts);
  virtual std::shared_ptr<Work> gather(std::vector<std::vector<Tensor>>& outputs,
                                       std::vector<Tensor>& inputs, const GatherOptions& opts) = 0;
  virtual std::shared_ptr<Work> scatter(std::vector<Tensor>& outputs,
                                        std::vector<std::vector<Tensor>>& inputs,
                                        const ScatterOptions& opts) = 0;
  virtual std::shared_ptr<Work> reduce_scatter(std::vector<Tensor>& outputs,
                                               std::vector<std::vector<Tensor>>& inputs,
                                               const ReduceScatterOptions& opts) = 0;
  // [optional]
  virtual std::shared_ptr<Work> reduce_scatter_tensor(Tensor& output, Tensor& input,
                                                      const ReduceScatterOptions& opts);
  // [optional]
  virtual std::shared_ptr<Work> reduce_scatter_tensor_coalesced(std::vector<Tensor>& outputs,
                                                                std::vector<Tensor>& inputs,
                                                                const ReduceScatterOptions& opts);
  // Empty split sizes mean equal parts along dimension 0.
  virtual std::shared_ptr<Work> alltoall_base(Tensor& output, Tensor& input,
                                              std::vector<int64_t> output_split_sizes,
                                              std::vector<int64_t> input_split_sizes,
                                              const AllToAllOptions& opts) = 0;
  virtual std::shared_ptr<Work> alltoall(std::vector<Tensor>& outputs, std::vector<Tensor>& inputs,
                                         const AllToAllOptions& opts) = 0;
  // Point-to-point: not ordered with respect to collectives; matched by
  // (peer, tag).
  virtual std::shared_ptr<Work> send(std::vector<Tensor>& tensors, int dst_rank, int tag) = 0;
  virtual std::shared_ptr<Work> recv(std::vector<Tensor>& tensors, int src_rank, int tag) = 0;
  virtual std::shared_ptr<Work> recv_anysource(std::vector<Tensor>& tensors, int tag) = 0;
  virtual std::shared_ptr<Work> barrier(const BarrierOptions& opts) = 0;
  // [optional] Rank 0 waits for every rank; throws naming the ranks that did
  // not arrive in time (all of them with wait_all_ranks, else the first).
  virtual void monitored_barrier(const BarrierOptions& opts, bool wait_all_ranks);

  // Subgroups carved out of this backend's own resources (MPI_Comm_create)
  // rather than built afresh through the registry. When this returns true,
  // ProcessGroup::new_group calls create_subgroup() on every rank of the
  // parent group, member or not, in the same order; it returns the member's
  // backend, nullptr on a non-member. `ranks` are ranks of this group;
  // config describes the new group (rank -1 on a non-member).
  virtual bool creates_subgroups() const { return false; }
  virtual std::shared_ptr<Backend> create_subgroup(const std::vector<int>& ranks,
                                                   const BackendConfig& config);

 protected:
  // For the [optional] operations a backend does not override.
  [[noreturn]] void throw_unsupported(OpType op) const;

 private:
  const int rank_;
  const int size_;
};

// What a backend factory gets to build one backend instance for one group.
struct BackendConfig {
  std::shared_ptr<Store> store;  // already prefixed for this group; may be null
                                 // for a backend that needs none
  int rank = 0;
  int size = 1;
  std::chrono::milliseconds timeout = kDefaultTimeout;
  std::string group_name = "default";
  // Whether, after a timeout or lost peer, the backend may take a short
  // grace to find out which ranks are gone, and name them (gloo's roll call,
  // docs/gloo.md). Off for helper groups whose user names the ranks itself
  // within a budget of its own (TUTTI_DEBUG=DETAIL's checks).
  bool roll_call = true;
};

using BackendFactory = std::function<std::shared_ptr<Backend>(const BackendConfig&)>;

struct BackendInfo {
  std::string name;                 // "gloo", "mpi", ...
  std::vector<DeviceType> devices;  // device types it serves
  BackendFactory factory;
  // Higher wins when init_process_group picks backend "auto".
  int auto_priority = 0;
  // Whether it can run in this process (e.g. MPI only under mpirun); null
  // means always.
  std::function<bool()> available;
  // Operations it supports beyond the required ones, for error messages that
  // name a backend which does support an operation.
  std::vector<OpType> optional_ops;
  // Whether its groups need a store (MPI's do not: MPI connects the ranks).
  bool needs_store = true;
  // For backends with a launcher of their own (MPI): the rank and size the
  // launcher gave this process and a store shared by every rank, so that
  // init_process_group needs no environment variables. Null: none.
  struct Bootstrap {
    int rank = 0;
    int size = 1;
    std::shared_ptr<Store> store;
  };
  std::function<Bootstrap(std::chrono::milliseconds timeout)> bootstrap;
};

// Adds a backend. Throws InvalidArgument if the name is taken or empty.
void register_backend(BackendInfo info);
// The backend registered under name, or nullptr.
const BackendInfo* find_backend(const std::string& name);
// Names of every registered backend, sorted.
std::vector<std::string> registered_backends();

}  // namespace tutti
