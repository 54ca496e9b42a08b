// allgather (+ into_tensor, coalesced), gather, scatter, alltoall (+ base)
// and barrier on gloo. Lists of tensors are packed into one contiguous buffer
// so each operation is a single gloo call.
#include <gloo/alltoall.h>
#include <gloo/alltoallv.h>
#include <gloo/barrier.h>
#include <gloo/gather.h>
#include <gloo/scatter.h>

#include <cstring>

#include "backends/gloo/algorithms.hpp"
#include "backends/gloo/algorithms_common.hpp"
#include "backends/gloo/schedules.hpp"
#include "core/pack.hpp"

namespace tutti::gloo_backend::algorithms {
namespace {

// Allgather of `bytes` bytes per rank from `in` into `out`.
void allgather_bytes(const OpContext& ctx, const void* in, void* out, size_t bytes) {
  if (bytes == 0) return;
  if (ctx.size() == 1) {
    std::memmove(out, in, bytes);
    return;
  }
  ring_allgather(ctx, in, out, bytes);
}

std::vector<int64_t> bytes_per_rank(const std::vector<int64_t>& splits, const Tensor& t, int size) {
  const int64_t rows = t.dim() == 0 ? 1 : t.size(0);
  const int64_t row_bytes = rows == 0 ? 0 : static_cast<int64_t>(t.nbytes()) / rows;
  std::vector<int64_t> bytes(static_cast<size_t>(size));
  for (int r = 0; r < size; ++r) {
    const int64_t part = splits.empty() ? rows / size : splits[static_cast<size_t>(r)];
    bytes[static_cast<size_t>(r)] = part * row_bytes;
  }
  return bytes;
}

// gloo alltoallv over byte counts per rank.
void alltoallv_bytes(const OpContext& ctx, const void* in, std::vector<int64_t> in_bytes, void* out,
                     std::vector<int64_t> out_bytes) {
  if (ctx.size() == 1) {
    if (in_bytes[0] > 0) std::memmove(out, in, static_cast<size_t>(in_bytes[0]));
    return;
  }
  auto opts_holder = std::make_shared<::gloo::AlltoallvOptions>(ctx.context);
  auto& opts = *opts_holder;
  opts.setTag(ctx.tag);
  opts.setTimeout(ctx.timeout);
  opts.setInput(static_cast<uint8_t*>(const_cast<void*>(in)), std::move(in_bytes));
  opts.setOutput(static_cast<uint8_t*>(out), std::move(out_bytes));
  ::gloo::alltoallv(opts);
  ctx.retire(std::move(opts_holder));
}

}  // namespace

void allgather(const OpContext& ctx, std::vector<std::vector<Tensor>>& outputs,
               std::vector<Tensor>& inputs) {
  Tensor in = pack(inputs);
  const size_t per_rank = in.nbytes();
  Tensor out = Tensor::empty({static_cast<int64_t>(per_rank) * ctx.size()}, DType::UInt8);
  allgather_bytes(ctx, in.data_ptr(), out.data_ptr(), per_rank);
  // out holds, for each rank, its inputs one after the other.
  for (int r = 0; r < ctx.size(); ++r) {
    std::vector<Tensor> from_rank;
    for (auto& list : outputs) from_rank.push_back(list[static_cast<size_t>(r)]);
    unpack(out, static_cast<size_t>(r) * per_rank, from_rank);
  }
}

void allgather_into_tensor(const OpContext& ctx, Tensor& output, const Tensor& input) {
  allgather_bytes(ctx, input.data_ptr(), output.data_ptr(), input.nbytes());
}

void allgather_coalesced(const OpContext& ctx, std::vector<std::vector<Tensor>>& output_lists,
                         std::vector<Tensor>& inputs) {
  Tensor in = pack(inputs);
  const size_t per_rank = in.nbytes();
  Tensor out = Tensor::empty({static_cast<int64_t>(per_rank) * ctx.size()}, DType::UInt8);
  allgather_bytes(ctx, in.data_ptr(), out.data_ptr(), per_rank);
  for (int r = 0; r < ctx.size(); ++r) {
    unpack(out, static_cast<size_t>(r) * per_rank, output_lists[static_cast<size_t>(r)]);
  }
}

void gather(const OpContext& ctx, std::vector<std::vector<Tensor>>& outputs,
            std::vector<Tensor>& inputs, int root_rank) {
  const Tensor& input = inputs[0];
  const size_t bytes = input.nbytes();
  const bool root = ctx.rank() == root_rank;
  if (bytes == 0) return;
  if (ctx.size() == 1) {
    outputs[0][0].copy_(input);
    return;
  }
  Tensor flat;
  auto opts_holder = std::make_shared<::gloo::GatherOptions>(ctx.context);
  auto& opts = *opts_holder;
  opts.setTag(ctx.tag);
  opts.setTimeout(ctx.timeout);
  opts.setRoot(root_rank);
  opts.setInput(static_cast<uint8_t*>(const_cast<void*>(input.data_ptr())), bytes);
  if (root) {
    flat = Tensor::empty({static_cast<int64_t>(bytes) * ctx.size()}, DType::UInt8);
    opts.setOutput(static_cast<uint8_t*>(flat.data_ptr()), bytes * static_cast<size_t>(ctx.size()));
  }
  ::gloo::gather(opts);
  ctx.retire(std::move(opts_holder));
  if (root) unpack(flat, 0, outputs[0]);
}

void scatter(const OpContext& ctx, std::vector<Tensor>& outputs,
             std::vector<std::vector<Tensor>>& inputs, int root_rank) {
  Tensor& output = outputs[0];
  const size_t bytes = output.nbytes();
  if (bytes == 0) return;
  if (ctx.size() == 1) {
    output.copy_(inputs[0][0]);
    return;
  }
  auto opts_holder = std::make_shared<::gloo::ScatterOptions>(ctx.context);
  auto& opts = *opts_holder;
  opts.setTag(ctx.tag);
  opts.setTimeout(ctx.timeout);
  opts.setRoot(root_rank);
  if (ctx.rank() == root_rank) {
    std::vector<uint8_t*> sources;
    for (auto& t : inputs[0]) sources.push_back(static_cast<uint8_t*>(t.data_ptr()));
    opts.setInputs(sources, bytes);
  }
  opts.setOutput(static_cast<uint8_t*>(output.data_ptr()), bytes);
  ::gloo::scatter(opts);
  ctx.retire(std::move(opts_holder));
}

void alltoall_base(const OpContext& ctx, Tensor& output, const Tensor& input,
                   const std::vector<int64_t>& output_split_sizes,
                   const std::vector<int64_t>& input_split_sizes) {
  if (output_split_sizes.empty() && input_split_sizes.empty()) {
    const size_t bytes = input.nbytes();
    if (bytes == 0) return;
    if (ctx.size() == 1) {
      output.copy_(input);
      return;
    }
    auto opts_holder = std::make_shared<::gloo::AlltoallOptions>(ctx.context);
    auto& opts = *opts_holder;
    opts.setTag(ctx.tag);
    opts.setTimeout(ctx.timeout);
    opts.setInput(static_cast<uint8_t*>(const_cast<void*>(input.data_ptr())), bytes);
    opts.setOutput(static_cast<uint8_t*>(output.data_ptr()), output.nbytes());
    ::gloo::alltoall(opts);
    ctx.retire(std::move(opts_holder));
    return;
  }
  alltoallv_bytes(ctx, input.data_ptr(), bytes_per_rank(input_split_sizes, input, ctx.size()),
                  output.data_ptr(), bytes_per_rank(output_split_sizes, output, ctx.size()));
}

void alltoall(const OpContext& ctx, std::vector<Tensor>& outputs, std::vector<Tensor>& inputs) {
  Tensor in = pack(inputs);
  size_t out_total = 0;
  std::vector<int64_t> in_bytes, out_bytes;
  for (const auto& t : inputs) in_bytes.push_back(static_cast<int64_t>(t.nbytes()));
  for (const auto& t : outputs) {
    out_bytes.push_back(static_cast<int64_t>(t.nbytes()));
    out_total += t.nbytes();
  }
  Tensor out = Tensor::empty({static_cast<int64_t>(out_total)}, DType::UInt8);
  alltoallv_bytes(ctx, in.data_ptr(), std::move(in_bytes), out.data_ptr(), std::move(out_bytes));
  unpack(out, 0, outputs);
}

void barrier(const OpContext& ctx) {
  if (ctx.size() == 1) return;
  auto opts_holder = std::make_shared<::gloo::BarrierOptions>(ctx.context);
  auto& opts = *opts_holder;
  opts.setTag(ctx.tag);
  opts.setTimeout(ctx.timeout);
  ::gloo::barrier(opts);
  ctx.retire(std::move(opts_holder));
}

}  // namespace tutti::gloo_backend::algorithms
