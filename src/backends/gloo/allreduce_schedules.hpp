// The allreduce schedules tutti runs itself on gloo's transport
// (algorithms_allreduce.cpp). Each reduces `count` (> 0) elements of `dtype`
// at `data` over the group in place, with the combining kind of the op
// (PREMUL_SUM and AVG are the caller's steps before and after), and leaves
// the same bits on every rank.
#pragma once

#include <cstddef>

#include "backends/gloo/backend.hpp"
#include "tutti/reduce_op.hpp"
#include "tutti/tensor.hpp"

namespace tutti::gloo_backend::algorithms {

// log2(p) exchanges of the whole buffer: the fewest rounds, for latency.
void doubling_allreduce(const OpContext& ctx, void* data, size_t count, DType dtype,
                        ReduceOp::Kind kind);
// 2(p-1) steps of 1/p of the buffer, pipelined in segments: the least data
// per rank, for bandwidth.
void ring_allreduce(const OpContext& ctx, void* data, size_t count, DType dtype,
                    ReduceOp::Kind kind);

}  // namespace tutti::gloo_backend::algorithms
