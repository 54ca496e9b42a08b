// The MPI backend: every operation of Backend that MPI can express, on the
// MPI library of the system (Open MPI on Debian; any MPI-3 implementation).
//
// Design (as c10d's ProcessGroupMPI, with deadlines added):
//   - one communicator per group: a duplicate of MPI_COMM_WORLD for the
//     default group, MPI_Comm_create over the parent for subgroups;
//   - one worker thread per group runs the group's collectives in issue
//     order, each as one blocking MPI call (MPI's tuned algorithms);
//   - send/recv post MPI_Isend/MPI_Irecv from the calling thread; the worker
//     tests the requests when it has no collective to run;
//   - a watchdog thread enforces deadlines. An operation past its timeout
//     fails with TimeoutError naming it. MPI cannot cancel a collective, so
//     the group is then unusable: later calls fail at once and say why.
#pragma once

#include <mpi.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "tutti/backend.hpp"

namespace tutti::mpi_backend {

class MpiWork;

// Up to this many bytes per rank, broadcast, allreduce and allgather use
// MPI's nonblocking collectives and run on the waiting thread. Above it,
// MPI's nonblocking algorithms are slower than the blocking ones (2-3x at
// 64 KiB here), and the worker runs the blocking call.
inline constexpr size_t kPollingMaxBytes = 2048;

class MpiBackend : public Backend {
 public:
  // Takes ownership of `comm`, whose rank and size must be rank and size.
  MpiBackend(MPI_Comm comm, int rank, int size, std::string group_name,
             std::chrono::milliseconds timeout);
  ~MpiBackend() override;

  // The backend of a group over all of MPI_COMM_WORLD; throws
  // InvalidArgument if config's rank and size are not MPI's.
  static std::shared_ptr<MpiBackend> create_world(const BackendConfig& config);

  std::string name() const override { return "mpi"; }
  bool supports(OpType op) const override;
  bool creates_subgroups() const override { return true; }
  std::shared_ptr<Backend> create_subgroup(const std::vector<int>& ranks,
                                           const BackendConfig& config) override;

  std::shared_ptr<Work> broadcast(std::vector<Tensor>& tensors,
                                  const BroadcastOptions& opts) override;
  std::shared_ptr<Work> allreduce(std::vector<Tensor>& tensors,
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

  MPI_Comm comm() const { return comm_; }
  // Whether the group runs in inline mode (TUTTI_MPI_INLINE=1 on every rank).
  bool inline_mode() const { return inline_mode_; }

 private:
  // Queues `job` (a callable: blocking MPI calls on the group's
  // communicator) as one collective of this group; returns its Work at once.
  // A job that `polls` uses nonblocking MPI calls completed through
  // await_request(), so it enforces its own deadline and may run on the
  // thread that waits for it (no hand-over to the worker). Whether a job
  // polls must be decided the same way on every rank (MPI does not match a
  // nonblocking collective with a blocking one): by polls_for().
  // The work holds the job (work.hpp).
  template <class Job>
  std::shared_ptr<Work> enqueue(OpType op, std::chrono::milliseconds timeout,
                                std::vector<Tensor> outputs, Job job, bool polls = false);
  // enqueue()'s untyped part: numbers the operation, has make(maker,
  // sequence) make its Work under the queue's lock, and queues it.
  using MakeWork = std::shared_ptr<MpiWork> (*)(void* maker, uint64_t sequence);
  std::shared_ptr<Work> submit(OpType op, std::chrono::milliseconds timeout, bool polls,
                               MakeWork make, void* maker);
  // The description of the internal operation `sequence` (new_group).
  std::string describe_internal(uint64_t sequence) const;
  // One MPI_Allgather of the packed inputs; rank r's bytes are unpacked into
  // by_rank[r].
  std::shared_ptr<Work> allgather_packed(OpType op, std::chrono::milliseconds timeout,
                                         const std::vector<Tensor>& inputs,
                                         std::vector<std::vector<Tensor>> by_rank);
  // Posts a send or recv (peer MPI_ANY_SOURCE for any) from this thread.
  std::shared_ptr<Work> post_p2p(OpType op, const Tensor& tensor, int peer, int tag);
  // Whether a broadcast, allreduce or allgather of `bytes` per rank polls:
  // up to kPollingMaxBytes, except in inline mode (every rank agrees on
  // both).
  bool polls_for(size_t bytes) const { return !inline_mode_ && bytes <= kPollingMaxBytes; }
  std::chrono::milliseconds resolve(std::chrono::milliseconds timeout) const {
    return effective_timeout(timeout, timeout_);
  }

  const std::string group_name_;
  // "group 'default' rank 1/4 (mpi)", shared by the works' descriptions.
  const std::shared_ptr<const std::string> where_;
  const std::chrono::milliseconds timeout_;
  const MPI_Comm comm_;
  // A duplicate of comm_ for tutti's own messages (monitored_barrier), so
  // they never match a user's send or recv.
  MPI_Comm control_comm_ = MPI_COMM_NULL;
  uint64_t monitored_barriers_ = 0;
  int tag_ub_ = 32767;  // MPI_TAG_UB of comm_ (the standard's minimum until read)
  // TUTTI_MPI_INLINE on every rank of the group: blocking collectives run on
  // the waiting thread (docs/mpi.md, "Inline mode"). Set in the constructor.
  bool inline_mode_ = false;
  // The queue, the posted transfers and the threads, shared with the threads
  // so that a worker stuck in MPI past its deadline can be left behind.
  struct Core;
  friend class MpiWork;  // hands its operation to the Core
  std::shared_ptr<Core> core_;
};

// Inside a job that polls: tests `request` until it completes; past the
// operation's deadline throws TimeoutError (the group is then unusable) and
// leaves the request to abandon_request() with `buffers`, which MPI may
// still read or write.
void await_request(MPI_Request* request, const char* call, std::vector<Tensor> buffers);

BackendInfo backend_info();

}  // namespace tutti::mpi_backend
