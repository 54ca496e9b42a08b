// GlooBackend's collectives: the checks of gloo's own, then a queued job.
// The ProcessGroup has already checked everything that does not depend on
// the backend (see tutti/backend.hpp).
#include <fmt/format.h>

#include "backends/gloo/algorithms.hpp"
#include "backends/gloo/backend.hpp"
#include "backends/gloo/work.hpp"
#include "core/checks.hpp"

namespace tutti::gloo_backend {
namespace {

std::vector<Tensor> flatten(const std::vector<std::vector<Tensor>>& lists) {
  std::vector<Tensor> out;
  for (const auto& list : lists) out.insert(out.end(), list.begin(), list.end());
  return out;
}

}  // namespace

std::shared_ptr<Work> GlooBackend::broadcast(std::vector<Tensor>& tensors,
                                             const BroadcastOptions& opts) {
  const int root = static_cast<int>(opts.root_rank);
  const int root_tensor = static_cast<int>(opts.root_tensor);
  return enqueue(OpType::BROADCAST, opts.timeout, tensors,
                 [tensors, root, root_tensor](const OpContext& ctx, GlooWork&) mutable {
                   algorithms::broadcast(ctx, tensors, root, root_tensor);
                 });
}

std::shared_ptr<Work> GlooBackend::allreduce(std::vector<Tensor>& tensors,
                                             const AllreduceOptions& opts) {
  const ReduceOp op = opts.reduce_op;
  return enqueue(OpType::ALLREDUCE, opts.timeout, tensors,
                 [tensors, op](const OpContext& ctx, GlooWork&) mutable {
                   algorithms::allreduce(ctx, tensors, op);
                 });
}

std::shared_ptr<Work> GlooBackend::allreduce_coalesced(std::vector<Tensor>& tensors,
                                                       const AllreduceCoalescedOptions& opts) {
  const ReduceOp op = opts.reduce_op;
  return enqueue(OpType::ALLREDUCE_COALESCED, opts.timeout, tensors,
                 [tensors, op](const OpContext& ctx, GlooWork&) mutable {
                   algorithms::allreduce_coalesced(ctx, tensors, op);
                 });
}

std::shared_ptr<Work> GlooBackend::reduce(std::vector<Tensor>& tensors, const ReduceOptions& opts) {
  const ReduceOp op = opts.reduce_op;
  const int root = static_cast<int>(opts.root_rank);
  const int root_tensor = static_cast<int>(opts.root_tensor);
  return enqueue(OpType::REDUCE, opts.timeout, tensors,
                 [tensors, op, root, root_tensor](const OpContext& ctx, GlooWork&) mutable {
                   algorithms::reduce(ctx, tensors, op, root, root_tensor);
                 });
}

std::shared_ptr<Work> GlooBackend::allreduce_sparse(std::vector<SparseTensor>& tensors,
                                                    const AllreduceOptions& opts) {
  return enqueue(OpType::ALLREDUCE_SPARSE, opts.timeout, {},
                 [tensors](const OpContext& ctx, GlooWork& work) mutable {
                   work.set_result(algorithms::allreduce_sparse(ctx, tensors));
                 });
}

std::shared_ptr<Work> GlooBackend::allgather(std::vector<std::vector<Tensor>>& outputs,
                                             std::vector<Tensor>& inputs,
                                             const AllgatherOptions& opts) {
  return enqueue(OpType::ALLGATHER, opts.timeout, flatten(outputs),
                 [outputs, inputs](const OpContext& ctx, GlooWork&) mutable {
                   algorithms::allgather(ctx, outputs, inputs);
                 });
}

std::shared_ptr<Work> GlooBackend::allgather_into_tensor(Tensor& output, Tensor& input,
                                                         const AllgatherOptions& opts) {
  return enqueue(OpType::ALLGATHER_INTO_TENSOR, opts.timeout, {output},
                 [output, input](const OpContext& ctx, GlooWork&) mutable {
                   algorithms::allgather_into_tensor(ctx, output, input);
                 });
}

std::shared_ptr<Work> GlooBackend::allgather_coalesced(
    std::vector<std::vector<Tensor>>& output_lists, std::vector<Tensor>& inputs,
    const AllgatherOptions& opts) {
  return enqueue(OpType::ALLGATHER_COALESCED, opts.timeout, flatten(output_lists),
                 [output_lists, inputs](const OpContext& ctx, GlooWork&) mutable {
                   algorithms::allgather_coalesced(ctx, output_lists, inputs);
                 });
}

std::shared_ptr<Work> GlooBackend::allgather_into_tensor_coalesced(std::vector<Tensor>& outputs,
                                                                   std::vector<Tensor>& inputs,
                                                                   const AllgatherOptions& opts) {
  return enqueue(OpType::ALLGATHER_INTO_TENSOR_COALESCED, opts.timeout, outputs,
                 [outputs, inputs](const OpContext& ctx, GlooWork&) mutable {
                   for (size_t i = 0; i < inputs.size(); ++i) {
                     algorithms::allgather_into_tensor(ctx, outputs[i], inputs[i]);
                   }
                 });
}

std::shared_ptr<Work> GlooBackend::gather(std::vector<std::vector<Tensor>>& outputs,
                                          std::vector<Tensor>& inputs, const GatherOptions& opts) {
  const int root = static_cast<int>(opts.root_rank);
  return enqueue(OpType::GATHER, opts.timeout, flatten(outputs),
                 [outputs, inputs, root](const OpContext& ctx, GlooWork&) mutable {
                   algorithms::gather(ctx, outputs, inputs, root);
                 });
}

std::shared_ptr<Work> GlooBackend::scatter(std::vector<Tensor>& outputs,
                                           std::vector<std::vector<Tensor>>& inputs,
                                           const ScatterOptions& opts) {
  const int root = static_cast<int>(opts.root_rank);
  return enqueue(OpType::SCATTER, opts.timeout, outputs,
                 [outputs, inputs, root](const OpContext& ctx, GlooWork&) mutable {
                   algorithms::scatter(ctx, outputs, inputs, root);
                 });
}

std::shared_ptr<Work> GlooBackend::reduce_scatter(std::vector<Tensor>& outputs,
                                                  std::vector<std::vector<Tensor>>& inputs,
                                                  const ReduceScatterOptions& opts) {
  const ReduceOp op = opts.reduce_op;
  return enqueue(OpType::REDUCE_SCATTER, opts.timeout, outputs,
                 [outputs, inputs, op](const OpContext& ctx, GlooWork&) mutable {
                   algorithms::reduce_scatter(ctx, outputs, inputs, op);
                 });
}

std::shared_ptr<Work> GlooBackend::reduce_scatter_tensor(Tensor& output, Tensor& input,
                                                         const ReduceScatterOptions& opts) {
  const ReduceOp op = opts.reduce_op;
  return enqueue(OpType::REDUCE_SCATTER_TENSOR, opts.timeout, {output},
                 [output, input, op](const OpContext& ctx, GlooWork&) mutable {
                   algorithms::reduce_scatter_tensor(ctx, output, input, op);
                 });
}

std::shared_ptr<Work> GlooBackend::reduce_scatter_tensor_coalesced(
    std::vector<Tensor>& outputs, std::vector<Tensor>& inputs, const ReduceScatterOptions& opts) {
  const ReduceOp op = opts.reduce_op;
  return enqueue(OpType::REDUCE_SCATTER_TENSOR_COALESCED, opts.timeout, outputs,
                 [outputs, inputs, op](const OpContext& ctx, GlooWork&) mutable {
                   for (size_t i = 0; i < inputs.size(); ++i) {
                     algorithms::reduce_scatter_tensor(ctx, outputs[i], inputs[i], op);
                   }
                 });
}

std::shared_ptr<Work> GlooBackend::alltoall_base(Tensor& output, Tensor& input,
                                                 std::vector<int64_t> output_split_sizes,
                                                 std::vector<int64_t> input_split_sizes,
                                                 const AllToAllOptions& opts) {
  return enqueue(
      OpType::ALLTOALL_BASE, opts.timeout, {output},
      [output, input, out_splits = std::move(output_split_sizes),
       in_splits = std::move(input_split_sizes)](const OpContext& ctx, GlooWork&) mutable {
        algorithms::alltoall_base(ctx, output, input, out_splits, in_splits);
      });
}

std::shared_ptr<Work> GlooBackend::alltoall(std::vector<Tensor>& outputs,
                                            std::vector<Tensor>& inputs,
                                            const AllToAllOptions& opts) {
  return enqueue(OpType::ALLTOALL, opts.timeout, outputs,
                 [outputs, inputs](const OpContext& ctx, GlooWork&) mutable {
                   algorithms::alltoall(ctx, outputs, inputs);
                 });
}

std::shared_ptr<Work> GlooBackend::barrier(const BarrierOptions& opts) {
  return enqueue(OpType::BARRIER, opts.timeout, {},
                 [](const OpContext& ctx, GlooWork&) { algorithms::barrier(ctx); });
}

}  // namespace tutti::gloo_backend
