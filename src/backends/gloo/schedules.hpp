// The schedules tutti runs itself on gloo's transport (schedules.cpp), in
// place of gloo's own allreduce and allgather: their scratch comes from
// tutti's tensor storage (gloo's new[] scratch spread the malloc arenas;
// docs/soak-and-netns.md), the caller's input is sent without a copy first,
// and every rank ends with the same bits.
#pragma once

#include <cstddef>
#include <vector>

#include "backends/gloo/backend.hpp"
#include "tutti/reduce_op.hpp"
#include "tutti/tensor.hpp"

namespace tutti::gloo_backend::algorithms {

// Each reduces `count` (> 0) elements of `dtype` at `data` over the group in
// place, with the combining kind of the op (PREMUL_SUM's scaling and AVG's
// division are the caller's steps before and after).
//
// log2(p) exchanges of the whole buffer: the fewest rounds, for latency.
// Up to EagerChannel::kMaxBytes, through the operation's eager channel when
// it has one (eager.hpp).
void doubling_allreduce(const OpContext& ctx, void* data, size_t count, DType dtype,
                        ReduceOp::Kind kind);
// The ranks `rank` exchanges with in doubling_allreduce on `size` ranks.
std::vector<int> doubling_partners(int rank, int size);
// The ranks `rank` needs an eager channel to (eager.hpp): its doubling
// partners and its ring neighbours, sorted, each once.
std::vector<int> eager_partners(int rank, int size);
// 2(p-1) steps of 1/p of the buffer, pipelined in segments: the least data
// per rank, for bandwidth.
void ring_allreduce(const OpContext& ctx, void* data, size_t count, DType dtype,
                    ReduceOp::Kind kind);

// `bytes` (> 0) from `input` of every rank r into output[r * bytes, ...):
// p-1 steps around the ring, pipelined in segments. `input` may be this
// rank's own block of `output`. Up to EagerChannel::kMaxBytes per rank,
// through the operation's eager channel when it has one.
void ring_allgather(const OpContext& ctx, const void* input, void* output, size_t bytes);

}  // namespace tutti::gloo_backend::algorithms
