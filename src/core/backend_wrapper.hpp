// BackendWrapper: a Backend that forwards every call to another backend, the
// target. A wrapper derives from it and overrides only what it changes (as
// leveldb's EnvWrapper does for Env); everything else reaches the target
// unchanged, including the capability queries and subgroup creation.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tutti/backend.hpp"

namespace tutti {

class BackendWrapper : public Backend {
 public:
  // REQUIRES: target is not null.
  explicit BackendWrapper(std::shared_ptr<Backend> target)
      : Backend(target->rank(), target->size()), target_(std::move(target)) {}

  const std::shared_ptr<Backend>& target() const { return target_; }

  std::string name() const override { return target_->name(); }
  bool supports(OpType op) const override { return target_->supports(op); }

  std::shared_ptr<Work> broadcast(std::vector<Tensor>& tensors,
                                  const BroadcastOptions& opts) override {
    return target_->broadcast(tensors, opts);
  }
  std::shared_ptr<Work> allreduce(std::vector<Tensor>& tensors,
                                  const AllreduceOptions& opts) override {
    return target_->allreduce(tensors, opts);
  }
  std::shared_ptr<Work> allreduce_sparse(std::vector<SparseTensor>& tensors,
                                         const AllreduceOptions& opts) override {
    return target_->allreduce_sparse(tensors, opts);
  }
  std::shared_ptr<Work> allreduce_coalesced(std::vector<Tensor>& tensors,
                                            const AllreduceCoalescedOptions& opts) override {
    return target_->allreduce_coalesced(tensors, opts);
  }
  std::shared_ptr<Work> reduce(std::vector<Tensor>& tensors, const ReduceOptions& opts) override {
    return target_->reduce(tensors, opts);
  }
  std::shared_ptr<Work> allgather(std::vector<std::vector<Tensor>>& outputs,
                                  std::vector<Tensor>& inputs,
                                  const AllgatherOptions& opts) override {
    return target_->allgather(outputs, inputs, opts);
  }
  std::shared_ptr<Work> allgather_into_tensor(Tensor& output, Tensor& input,
                                              const AllgatherOptions& opts) override {
    return target_->allgather_into_tensor(output, input, opts);
  }
  std::shared_ptr<Work> allgather_coalesced(std::vector<std::vector<Tensor>>& output_lists,
                                            std::vector<Tensor>& inputs,
                                            const AllgatherOptions& opts) override {
    return target_->allgather_coalesced(output_lists, inputs, opts);
  }
  std::shared_ptr<Work> allgather_into_tensor_coalesced(std::vector<Tensor>& outputs,
                                                        std::vector<Tensor>& inputs,
                                                        const AllgatherOptions& opts) override {
    return target_->allgather_into_tensor_coalesced(outputs, inputs, opts);
  }
  std::shared_ptr<Work> gather(std::vector<std::vector<Tensor>>& outputs,
                               std::vector<Tensor>& inputs, const GatherOptions& opts) override {
    return target_->gather(outputs, inputs, opts);
  }
  std::shared_ptr<Work> scatter(std::vector<Tensor>& outputs,
                                std::vector<std::vector<Tensor>>& inputs,
                                const ScatterOptions& opts) override {
    return target_->scatter(outputs, inputs, opts);
  }
  std::shared_ptr<Work> reduce_scatter(std::vector<Tensor>& outputs,
                                       std::vector<std::vector<Tensor>>& inputs,
                                       const ReduceScatterOptions& opts) override {
    return target_->reduce_scatter(outputs, inputs, opts);
  }
  std::shared_ptr<Work> reduce_scatter_tensor(Tensor& output, Tensor& input,
                                              const ReduceScatterOptions& opts) override {
    return target_->reduce_scatter_tensor(output, input, opts);
  }
  std::shared_ptr<Work> reduce_scatter_tensor_coalesced(std::vector<Tensor>& outputs,
                                                        std::vector<Tensor>& inputs,
                                                        const ReduceScatterOptions& opts) override {
    return target_->reduce_scatter_tensor_coalesced(outputs, inputs, opts);
  }
  std::shared_ptr<Work> alltoall_base(Tensor& output, Tensor& input,
                                      std::vector<int64_t> output_split_sizes,
                                      std::vector<int64_t> input_split_sizes,
                                      const AllToAllOptions& opts) override {
    return target_->alltoall_base(output, input, std::move(output_split_sizes),
                                  std::move(input_split_sizes), opts);
  }
  std::shared_ptr<Work> alltoall(std::vector<Tensor>& outputs, std::vector<Tensor>& inputs,
                                 const AllToAllOptions& opts) override {
    return target_->alltoall(outputs, inputs, opts);
  }
  std::shared_ptr<Work> send(std::vector<Tensor>& tensors, int dst_rank, int tag) override {
    return target_->send(tensors, dst_rank, tag);
  }
  std::shared_ptr<Work> recv(std::vector<Tensor>& tensors, int src_rank, int tag) override {
    return target_->recv(tensors, src_rank, tag);
  }
  std::shared_ptr<Work> recv_anysource(std::vector<Tensor>& tensors, int tag) override {
    return target_->recv_anysource(tensors, tag);
  }
  std::shared_ptr<Work> barrier(const BarrierOptions& opts) override {
    return target_->barrier(opts);
  }
  void monitored_barrier(const BarrierOptions& opts, bool wait_all_ranks) override {
    target_->monitored_barrier(opts, wait_all_ranks);
  }
  bool creates_subgroups() const override { return target_->creates_subgroups(); }
  std::shared_ptr<Backend> create_subgroup(const std::vector<int>& ranks,
                                           const BackendConfig& config) override {
    return target_->create_subgroup(ranks, config);
  }

 private:
  const std::shared_ptr<Backend> target_;
};

}  // namespace tutti
