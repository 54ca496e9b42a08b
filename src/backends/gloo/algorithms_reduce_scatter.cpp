// reduce_scatter and reduce_scatter_tensor on gloo: a ring reduce-scatter on
// gloo's unbound buffers, so each rank receives (p-1)/p of one part instead of
// the whole reduced tensor an allreduce would give it.
//
// The ring: rank r sends to r+1 and receives from r-1. In step s (0..p-2) it
// sends its partial sum of part (r-s-1) mod p and receives the left
// neighbour's partial sum of part (r-s-2) mod p, which it combines with its
// own contribution to that part. The part received in the last step is
// (r-p) mod p = r, reduced over every rank: the output.
#include <gloo/transport/unbound_buffer.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>
#include <vector>

#include "backends/gloo/algorithms.hpp"
#include "backends/gloo/algorithms_common.hpp"
#include "backends/gloo/transfers.hpp"

namespace tutti::gloo_backend::algorithms {
namespace {

using UnboundBuffer = ::gloo::transport::UnboundBuffer;

// A part larger than this travels in segments: combining one segment then
// overlaps receiving the next, and each reduced segment leaves for the next
// rank at once instead of waiting for the whole part.
constexpr size_t kSegmentBytes = 256 << 10;

// Where each scratch region starts, for the vectorised kernels.
constexpr size_t kRegionAlignment = 64;

// One unbound buffer per segment of a part-sized region, so the completion
// of each segment can be awaited on its own.
struct Segments {
  size_t count = 0;     // number of segments
  size_t elements = 0;  // per segment; the last one may be shorter
  size_t part = 0;      // elements in the whole part

  size_t offset(size_t j) const { return j * elements; }
  size_t length(size_t j) const { return std::min(elements, part - offset(j)); }
};

Segments split_part(size_t part_elements, size_t item_bytes, size_t steps) {
  Segments s;
  s.part = part_elements;
  size_t count = std::max<size_t>(1, (part_elements * item_bytes) / kSegmentBytes);
  // Every (step, segment) message needs its own slot number.
  count = std::min(count, static_cast<size_t>(Transfers::kMaxMessages / steps));
  s.elements = (part_elements + count - 1) / count;
  s.count = (part_elements + s.elements - 1) / s.elements;
  return s;
}

class RingReduceScatter {
 public:
  RingReduceScatter(const OpContext& ctx, size_t part_elements, DType dtype, ReduceOp op)
      : ctx_(ctx),
        size_(ctx.size()),
        rank_(ctx.rank()),
        left_((ctx.rank() + ctx.size() - 1) % ctx.size()),
        right_((ctx.rank() + 1) % ctx.size()),
        steps_(static_cast<size_t>(ctx.size() - 1)),
        dtype_(dtype),
        item_(itemsize(dtype)),
        op_(op),
        kind_(kernels::combine_kind(op)),
        segments_(split_part(part_elements, item_, steps_)),
        transfers_(ctx, SlotPrefix::kReduceScatter, "ring reduce-scatter", steps_) {}

  // output: part_elements; input: size * part_elements, left unchanged.
  void run(void* output, const void* input) {
    const auto* in = static_cast<const char*>(input);
    auto* out = static_cast<char*>(output);
    const size_t part_bytes = segments_.part * item_;
    auto part_of = [&](int step_offset) {
      // (rank - step_offset) mod size, as a byte offset into the input.
      return static_cast<size_t>((rank_ - step_offset % size_ + size_) % size_) * part_bytes;
    };

    const bool premultiply = op_.kind == ReduceOp::PREMUL_SUM;

    // Scratch (from the backend's pool, warm from the last operation): the
    // segments received in the current step, and up to two regions of
    // partial sums, one on its way to the right while the next step fills
    // the other. Step s < p-2 sums into partial[s % 2]; PREMUL_SUM also
    // scales the contribution step 0 sends into partial[1].
    const std::array<bool, 2> partial_used = {steps_ >= 2, steps_ >= 3 || premultiply};
    const size_t region = (part_bytes + kRegionAlignment - 1) / kRegionAlignment * kRegionAlignment;
    Tensor scratch = ctx_.take_scratch(
        region * (1 + static_cast<size_t>(partial_used[0]) + static_cast<size_t>(partial_used[1])));
    char* next_region = static_cast<char*>(scratch.data_ptr());
    char* const incoming = next_region;
    next_region += region;
    std::array<char*, 2> partial = {nullptr, nullptr};
    std::array<std::vector<std::unique_ptr<UnboundBuffer>>, 2> partial_bufs;
    for (size_t b = 0; b < 2; ++b) {
      if (!partial_used[b]) continue;
      partial[b] = next_region;
      next_region += region;
      partial_bufs[b] = make_buffers(partial[b]);
    }
    auto incoming_bufs = make_buffers(incoming);

    // Step 0 sends the local contribution: from the input itself, or scaled
    // into partial[1] for PREMUL_SUM.
    const char* first_part = in + part_of(1);
    std::vector<std::unique_ptr<UnboundBuffer>> input_bufs;
    if (premultiply) {
      kernels::scale(partial[1], first_part, segments_.part, dtype_, op_.factor);
    } else {
      // gloo only reads from a buffer it sends.
      input_bufs = make_buffers(const_cast<char*>(first_part));
    }
    // Sends posted and not yet awaited, per buffer and segment.
    std::array<std::vector<bool>, 2> sending = {std::vector<bool>(segments_.count, false),
                                                std::vector<bool>(segments_.count, false)};
    std::vector<bool> sending_input(segments_.count, false);
    auto& first_bufs = premultiply ? partial_bufs[1] : input_bufs;
    auto& first_sending = premultiply ? sending[1] : sending_input;

    for (size_t j = 0; j < segments_.count; ++j) {
      post_recv(*incoming_bufs[j], 0, j);
    }
    for (size_t j = 0; j < segments_.count; ++j) {
      post_send(*first_bufs[j], 0, j);
      first_sending[j] = true;
    }

    for (size_t step = 0; step < steps_; ++step) {
      const bool last = step + 1 == steps_;
      const char* local = in + part_of(static_cast<int>(step) + 2);
      const size_t target = step % 2;
      char* sum = last ? out : partial[target];
      for (size_t j = 0; j < segments_.count; ++j) {
        const size_t offset = segments_.offset(j) * item_;
        const size_t length = segments_.length(j);
        wait(*incoming_bufs[j], /*receiving=*/true, step);
        if (!last && sending[target][j]) {
          wait(*partial_bufs[target][j], /*receiving=*/false, step);
          sending[target][j] = false;
        }
        const char* received = incoming + offset;
        if (premultiply) {
          kernels::scale(sum + offset, local + offset, length, dtype_, op_.factor);
          kernels::combine_into(sum + offset, received, length, dtype_, kind_);
        } else {
          kernels::combine(sum + offset, local + offset, received, length, dtype_, kind_);
        }
        if (!last) {
          post_recv(*incoming_bufs[j], step + 1, j);
          post_send(*partial_bufs[target][j], step + 1, j);
          sending[target][j] = true;
        }
      }
    }

    // The last sends must leave before their buffers are released.
    for (size_t j = 0; j < segments_.count; ++j) {
      if (sending_input[j]) wait(*input_bufs[j], /*receiving=*/false, steps_ - 1);
      for (size_t b = 0; b < 2; ++b) {
        if (sending[b][j]) wait(*partial_bufs[b][j], /*receiving=*/false, steps_ - 1);
      }
    }
    // Done: no transfer uses the scratch any more; the buffers over it go
    // later (see Retired).
    ctx_.reuse_scratch(std::move(scratch));
    struct Leftovers {
      std::array<std::vector<std::unique_ptr<UnboundBuffer>>, 2> partial_bufs;
      std::vector<std::unique_ptr<UnboundBuffer>> incoming_bufs;
      std::vector<std::unique_ptr<UnboundBuffer>> input_bufs;
    };
    ctx_.retire(std::make_shared<Leftovers>(
        Leftovers{std::move(partial_bufs), std::move(incoming_bufs), std::move(input_bufs)}));
  }

 private:
  uint64_t message(size_t step, size_t segment) const { return step * segments_.count + segment; }

  std::vector<std::unique_ptr<UnboundBuffer>> make_buffers(char* base) const {
    std::vector<std::unique_ptr<UnboundBuffer>> buffers;
    buffers.reserve(segments_.count);
    for (size_t j = 0; j < segments_.count; ++j) {
      buffers.push_back(
          transfers_.buffer(base + segments_.offset(j) * item_, segments_.length(j) * item_));
    }
    return buffers;
  }

  void post_recv(UnboundBuffer& buffer, size_t step, size_t segment) const {
    transfers_.post_recv(buffer, left_, message(step, segment), step);
  }

  void post_send(UnboundBuffer& buffer, size_t step, size_t segment) const {
    transfers_.post_send(buffer, right_, message(step, segment), step);
  }

  void wait(UnboundBuffer& buffer, bool receiving, size_t step) const {
    if (receiving) {
      transfers_.wait_recv(buffer, left_, step);
    } else {
      transfers_.wait_send(buffer, right_, step);
    }
  }

  const OpContext& ctx_;
  const int size_;
  const int rank_;
  const int left_;
  const int right_;
  const size_t steps_;
  const DType dtype_;
  const size_t item_;
  const ReduceOp op_;
  const ReduceOp::Kind kind_;
  const Segments segments_;
  const Transfers transfers_;
};

}  // namespace

void reduce_scatter_tensor(const OpContext& ctx, Tensor& output, const Tensor& input, ReduceOp op) {
  const size_t part = static_cast<size_t>(output.numel());
  if (part == 0) return;
  if (ctx.size() == 1) {
    if (op.kind == ReduceOp::PREMUL_SUM) {
      kernels::scale(output.data_ptr(), input.data_ptr(), part, output.dtype(), op.factor);
    } else {
      std::memcpy(output.data_ptr(), input.data_ptr(), output.nbytes());
    }
    return;  // AVG over one rank is the value itself
  }
  RingReduceScatter(ctx, part, output.dtype(), op).run(output.data_ptr(), input.data_ptr());
  finish_average(output, op, ctx.size());
}

void reduce_scatter(const OpContext& ctx, std::vector<Tensor>& outputs,
                    std::vector<std::vector<Tensor>>& inputs, ReduceOp op) {
  // One ring for the whole list (the outputs share dtype and shape): part r
  // of the packed input is inputs[0][r], inputs[1][r], ... back to back.
  const int64_t part = outputs[0].numel() * static_cast<int64_t>(outputs.size());
  if (part == 0) return;
  const DType dtype = outputs[0].dtype();
  Tensor packed = Tensor::empty({ctx.size() * part}, dtype);
  auto* cursor = static_cast<char*>(packed.data_ptr());
  for (int r = 0; r < ctx.size(); ++r) {
    for (const auto& list : inputs) {
      const Tensor& contribution = list[static_cast<size_t>(r)];
      std::memcpy(cursor, contribution.data_ptr(), contribution.nbytes());
      cursor += contribution.nbytes();
    }
  }
  if (outputs.size() == 1) {
    reduce_scatter_tensor(ctx, outputs[0], packed, op);
    return;
  }
  Tensor reduced = Tensor::empty({part}, dtype);
  reduce_scatter_tensor(ctx, reduced, packed, op);
  cursor = static_cast<char*>(reduced.data_ptr());
  for (auto& output : outputs) {
    std::memcpy(output.data_ptr(), cursor, output.nbytes());
    cursor += output.nbytes();
  }
}

}  // namespace tutti::gloo_backend::algorithms
