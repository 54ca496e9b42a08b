// broadcast, allreduce (+ coalesced) and reduce on gloo.
#include <gloo/allreduce.h>
#include <gloo/broadcast.h>
#include <gloo/reduce.h>

#include <cstring>

#include "backends/gloo/algorithms.hpp"
#include "backends/gloo/algorithms_common.hpp"
#include "backends/gloo/schedules.hpp"

namespace tutti::gloo_backend::algorithms {
namespace {

// Up to this many bytes, recursive doubling's log2(p) exchanges of the whole
// buffer beat the ring's 2(p-1) steps of 1/p of it; above, the ring's
// bandwidth wins. Measured (docs/perf.md, "gloo backend", session 5): on 3
// and 4 ranks doubling took 0.5-0.8x the ring's time up to 512 KiB and
// 1.4-1.5x at 1 MiB; on 2 ranks they were even around 1 MiB.
constexpr size_t kDoublingMaxBytes = size_t{512} << 10;

AllreduceAlgorithm choose(AllreduceAlgorithm requested, size_t bytes) {
  if (requested != AllreduceAlgorithm::AUTO) return requested;
  return bytes <= kDoublingMaxBytes ? AllreduceAlgorithm::DOUBLING : AllreduceAlgorithm::RING;
}

// gloo's own allreduce (GLOO_RING, GLOO_BCUBE): every buffer in and out.
void gloo_allreduce(const OpContext& ctx, const std::vector<void*>& buffers, size_t count,
                    DType dtype, ReduceOp op, ::gloo::AllreduceOptions::Algorithm algorithm) {
  auto opts_holder = std::make_shared<::gloo::AllreduceOptions>(ctx.context);
  auto& opts = *opts_holder;
  opts.setTag(ctx.tag);
  opts.setTimeout(ctx.timeout);
  opts.setAlgorithm(algorithm);
  opts.setReduceFunction(reduce_function(dtype, op));
  with_element_type(itemsize(dtype), [&](auto element) {
    using T = decltype(element);
    std::vector<T*> typed;
    for (void* b : buffers) typed.push_back(static_cast<T*>(b));
    opts.setOutputs(typed, count);
  });
  ::gloo::allreduce(opts);
  ctx.retire(std::move(opts_holder));
}

// Allreduce over buffers of `count` elements of dtype, in place: the sum (or
// op) of every buffer of every rank ends in each.
void allreduce_buffers(const OpContext& ctx, const std::vector<void*>& buffers, size_t count,
                       DType dtype, ReduceOp op) {
  const AllreduceAlgorithm algorithm = choose(ctx.allreduce_algorithm, count * itemsize(dtype));
  // Only doubling takes a turn on the small-message channel; the others
  // must not hold up the operations queued after them there.
  if (algorithm != AllreduceAlgorithm::DOUBLING) ctx.skip_eager_turn();
  if (algorithm == AllreduceAlgorithm::GLOO_RING || algorithm == AllreduceAlgorithm::GLOO_BCUBE) {
    gloo_allreduce(ctx, buffers, count, dtype, op,
                   algorithm == AllreduceAlgorithm::GLOO_RING
                       ? ::gloo::AllreduceOptions::Algorithm::RING
                       : ::gloo::AllreduceOptions::Algorithm::BCUBE);
    return;
  }
  const ReduceOp::Kind kind = kernels::combine_kind(op);
  void* first = buffers[0];
  for (size_t i = 1; i < buffers.size(); ++i) {
    kernels::combine_into(first, buffers[i], count, dtype, kind);
  }
  if (ctx.size() > 1) {
    if (algorithm == AllreduceAlgorithm::RING) {
      ring_allreduce(ctx, first, count, dtype, kind);
    } else {
      doubling_allreduce(ctx, first, count, dtype, kind);
    }
  }
  for (size_t i = 1; i < buffers.size(); ++i) {
    std::memcpy(buffers[i], first, count * itemsize(dtype));
  }
}

}  // namespace

void broadcast(const OpContext& ctx, std::vector<Tensor>& tensors, int root_rank, int root_tensor) {
  Tensor& source = tensors[static_cast<size_t>(root_tensor)];
  if (source.numel() > 0 && ctx.size() > 1) {
    auto opts_holder = std::make_shared<::gloo::BroadcastOptions>(ctx.context);
    auto& opts = *opts_holder;
    opts.setTag(ctx.tag);
    opts.setTimeout(ctx.timeout);
    opts.setRoot(root_rank);
    with_element_type(source.element_size(), [&](auto element) {
      using T = decltype(element);
      const size_t count = static_cast<size_t>(source.numel());
      // In place: no input buffer, so the root sends from the output. Given
      // the same memory as input too, gloo's root copies input to output
      // (memcpy onto itself) while its sends of that memory are in flight:
      // a data race ThreadSanitizer reported in every broadcast.
      opts.setOutput(static_cast<T*>(source.data_ptr()), count);
    });
    ::gloo::broadcast(opts);
    ctx.retire(std::move(opts_holder));
  }
  // Every other local tensor gets the broadcast value.
  for (auto& t : tensors) {
    if (t.data_ptr() != source.data_ptr()) t.copy_(source);
  }
}

void allreduce(const OpContext& ctx, std::vector<Tensor>& tensors, ReduceOp op) {
  const size_t count = static_cast<size_t>(tensors[0].numel());
  if (count == 0) return;
  for (auto& t : tensors) premultiply(t, op);
  std::vector<void*> buffers;
  for (auto& t : tensors) buffers.push_back(t.data_ptr());
  allreduce_buffers(ctx, buffers, count, tensors[0].dtype(), op);
  // AVG divides by the number of contributions: every tensor of every rank.
  const int contributions = ctx.size() * static_cast<int>(tensors.size());
  for (auto& t : tensors) finish_average(t, op, contributions);
}

void allreduce_coalesced(const OpContext& ctx, std::vector<Tensor>& tensors, ReduceOp op) {
  int64_t total = 0;
  for (const auto& t : tensors) total += t.numel();
  if (total == 0) return;
  const DType dtype = tensors[0].dtype();
  Tensor flat = Tensor::empty({total}, dtype);
  auto* cursor = static_cast<char*>(flat.data_ptr());
  for (const auto& t : tensors) {
    std::memcpy(cursor, t.data_ptr(), t.nbytes());
    cursor += t.nbytes();
  }
  premultiply(flat, op);
  allreduce_buffers(ctx, {flat.data_ptr()}, static_cast<size_t>(total), dtype, op);
  finish_average(flat, op, ctx.size());
  cursor = static_cast<char*>(flat.data_ptr());
  for (auto& t : tensors) {
    std::memcpy(t.data_ptr(), cursor, t.nbytes());
    cursor += t.nbytes();
  }
}

void reduce(const OpContext& ctx, std::vector<Tensor>& tensors, ReduceOp op, int root_rank,
            int root_tensor) {
  Tensor& target = tensors[static_cast<size_t>(root_tensor)];
  const size_t count = static_cast<size_t>(target.numel());
  if (count == 0) return;
  // Local tensors are reduced into the root tensor first.
  for (auto& t : tensors) premultiply(t, op);
  for (auto& t : tensors) {
    if (t.data_ptr() == target.data_ptr()) continue;
    kernels::combine_into(target.data_ptr(), t.data_ptr(), count, target.dtype(),
                          kernels::combine_kind(op));
  }
  if (ctx.size() > 1) {
    auto opts_holder = std::make_shared<::gloo::ReduceOptions>(ctx.context);
    auto& opts = *opts_holder;
    opts.setTag(ctx.tag);
    opts.setTimeout(ctx.timeout);
    opts.setRoot(root_rank);
    opts.setReduceFunction(reduce_function(target.dtype(), op));
    with_element_type(target.element_size(), [&](auto element) {
      using T = decltype(element);
      opts.setInput(static_cast<T*>(target.data_ptr()), count);
      opts.setOutput(static_cast<T*>(target.data_ptr()), count);
    });
    ::gloo::reduce(opts);
    ctx.retire(std::move(opts_holder));
  }
  if (ctx.rank() == root_rank) {
    finish_average(target, op, ctx.size() * static_cast<int>(tensors.size()));
  }
}

}  // namespace tutti::gloo_backend::algorithms
