// The body of each gloo operation: runs on a worker thread with an OpContext
// (context, tag, timeout), moves the bytes, and throws on failure. Inputs
// have passed the ProcessGroup's checks and the backend's own.
//
// Reductions use tutti's kernels through gloo's custom reduce function, so
// every dtype and ReduceOp works (Float16/BFloat16 included). AVG is SUM
// then a division by the group size; PREMUL_SUM scales the local input first.
#pragma once

#include <vector>

#include "backends/gloo/backend.hpp"
#include "tutti/options.hpp"
#include "tutti/tensor.hpp"

namespace tutti::gloo_backend::algorithms {

void broadcast(const OpContext& ctx, std::vector<Tensor>& tensors, int root_rank, int root_tensor);
// Reduces all tensors of all ranks into every tensor (multiple local tensors
// are summed too, as c10d does).
void allreduce(const OpContext& ctx, std::vector<Tensor>& tensors, ReduceOp op);
// One allreduce over the tensors flattened into one buffer.
void allreduce_coalesced(const OpContext& ctx, std::vector<Tensor>& tensors, ReduceOp op);
void reduce(const OpContext& ctx, std::vector<Tensor>& tensors, ReduceOp op, int root_rank,
            int root_tensor);

void allgather(const OpContext& ctx, std::vector<std::vector<Tensor>>& outputs,
               std::vector<Tensor>& inputs);
void allgather_into_tensor(const OpContext& ctx, Tensor& output, const Tensor& input);
void allgather_coalesced(const OpContext& ctx, std::vector<std::vector<Tensor>>& output_lists,
                         std::vector<Tensor>& inputs);
void gather(const OpContext& ctx, std::vector<std::vector<Tensor>>& outputs,
            std::vector<Tensor>& inputs, int root_rank);
void scatter(const OpContext& ctx, std::vector<Tensor>& outputs,
             std::vector<std::vector<Tensor>>& inputs, int root_rank);
// Each rank receives only its part, reduced (a ring reduce-scatter).
void reduce_scatter_tensor(const OpContext& ctx, Tensor& output, const Tensor& input, ReduceOp op);
void reduce_scatter(const OpContext& ctx, std::vector<Tensor>& outputs,
                    std::vector<std::vector<Tensor>>& inputs, ReduceOp op);
void alltoall_base(const OpContext& ctx, Tensor& output, const Tensor& input,
                   const std::vector<int64_t>& output_split_sizes,
                   const std::vector<int64_t>& input_split_sizes);
void alltoall(const OpContext& ctx, std::vector<Tensor>& outputs, std::vector<Tensor>& inputs);
void barrier(const OpContext& ctx);
// The sum over ranks of each sparse tensor, coalesced: for tensor i,
// result[2i] = indices and result[2i+1] = values.
std::vector<Tensor> allreduce_sparse(const OpContext& ctx, std::vector<SparseTensor>& tensors);

}  // namespace tutti::gloo_backend::algorithms
