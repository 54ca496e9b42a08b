// tutti's own allreduce and allgather schedules on gloo's transport
// (schedules.hpp): recursive doubling for small allreduces, rings for the
// rest.
#include "backends/gloo/schedules.hpp"

#include <algorithm>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#include "backends/gloo/algorithms_common.hpp"
#include "backends/gloo/transfers.hpp"

namespace tutti::gloo_backend::algorithms {
namespace {

using Buffer = Transfers::Buffer;
using Buffers = std::vector<std::unique_ptr<Buffer>>;

// A ring segment: reducing one overlaps receiving the next, and each
// segment moves on to the next rank as soon as it is in. But each message
// costs gloo a ready notice from the receiver and a wake-up, about 30 us
// here, so segments are few and large: two per part, from 256 KiB to 1 MiB
// (gloo's own ring cuts the same way). Measured on 2 ranks (docs/perf.md):
// 64 KiB segments made a 4 MiB allreduce 1.7x slower than 256 KiB ones, and
// 1 MiB segments took 0.74-0.86x the time of 256 KiB ones from 16 to 64 MiB.
constexpr size_t kRingMinSegmentBytes = 256 << 10;
constexpr size_t kRingMaxSegmentBytes = 1 << 20;

size_t ring_segment_bytes(size_t part_bytes) {
  return std::clamp(part_bytes / 2, kRingMinSegmentBytes, kRingMaxSegmentBytes);
}

// Receive slots of scratch the ring reduce-scatter keeps posted ahead.
constexpr size_t kRingWindow = 4;

// What an operation leaves behind for Retired (backend.hpp): gloo's buffer
// destructors must not run now, and the memory under them must outlive them.
struct Leftovers {
  Tensor scratch;
  // After the scratch: destroyed first.
  Buffers buffers;
};

int log2_floor(int n) {
  int k = 0;
  while ((2 << k) <= n) ++k;
  return k;
}

int mod(int i, int p) { return ((i % p) + p) % p; }

// `count` elements at `base` as p parts in rank order (the first count % p
// parts one element longer), each cut into the same number of segments: the
// longest part's. A shorter part's last segment may be empty; both sides of
// a transfer skip it alike. One gloo buffer per segment, made when first
// used, so each transfer can be awaited on its own.
class RingParts {
 public:
  RingParts(const Transfers& transfers, void* base, size_t count, size_t item, int p,
            size_t messages_per_segment, size_t segment_bytes)
      : transfers_(transfers),
        base_(static_cast<char*>(base)),
        item_(item),
        quotient_(count / static_cast<size_t>(p)),
        remainder_(count % static_cast<size_t>(p)) {
    const size_t longest = length(0);
    size_t segments = std::max<size_t>(1, longest * item / segment_bytes);
    segments =
        std::min(segments, static_cast<size_t>(Transfers::kMaxMessages / messages_per_segment));
    seg_elements_ = (longest + segments - 1) / segments;
    segments_ = (longest + seg_elements_ - 1) / seg_elements_;
    buffers_.resize(static_cast<size_t>(p) * segments_);
  }

  size_t segments() const { return segments_; }
  size_t seg_elements() const { return seg_elements_; }
  // Elements in segment j of part i (0 if empty).
  size_t seg_length(int i, size_t j) const {
    const size_t start = j * seg_elements_;
    return start >= length(i) ? 0 : std::min(seg_elements_, length(i) - start);
  }
  size_t seg_bytes(int i, size_t j) const { return seg_length(i, j) * item_; }
  char* seg_data(int i, size_t j) const { return base_ + (begin(i) + j * seg_elements_) * item_; }

  Buffer& region(int i, size_t j) {
    auto& buffer = buffers_[static_cast<size_t>(i) * segments_ + j];
    if (!buffer) buffer = transfers_.buffer(seg_data(i, j), seg_bytes(i, j));
    return *buffer;
  }

  // Buffers over a copy of part i elsewhere (`source`), one per segment.
  Buffers over(const void* source, int i) const {
    Buffers buffers;
    for (size_t j = 0; j < segments_; ++j) {
      const size_t bytes = seg_bytes(i, j);
      auto* at = static_cast<char*>(const_cast<void*>(source)) + j * seg_elements_ * item_;
      buffers.push_back(bytes == 0 ? nullptr : transfers_.buffer(at, bytes));
    }
    return buffers;
  }

  Buffers take() { return std::move(buffers_); }

 private:
  size_t begin(int i) const {
    const auto u = static_cast<size_t>(i);
    return u * quotient_ + std::min(u, remainder_);
  }
  size_t length(int i) const { return quotient_ + (static_cast<size_t>(i) < remainder_ ? 1 : 0); }

  const Transfers& transfers_;
  char* const base_;
  const size_t item_;
  const size_t quotient_;
  const size_t remainder_;
  size_t seg_elements_ = 0;
  size_t segments_ = 0;
  Buffers buffers_;
};

// The allgather half of a ring. This rank holds part (r + shift) complete;
// in step s it sends part (r + shift - s) to the right and receives part
// (r + shift - s - 1) from the left into place, which it sends on in step
// s + 1. Messages first_message + s * segments + j, steps first_step + s.
// Step 0 sends from `own` (buffers over a copy of the part) if given;
// `while_sending` runs once those sends are posted.
void ring_allgather_phase(const Transfers& transfers, RingParts& parts, int r, int p, int shift,
                          uint64_t first_message, size_t first_step, Buffers* own,
                          const std::function<void()>& while_sending = {}) {
  const int left = mod(r - 1, p);
  const int right = mod(r + 1, p);
  const size_t steps = static_cast<size_t>(p - 1);
  const size_t segments = parts.segments();
  auto message = [&](size_t s, size_t j) { return first_message + s * segments + j; };
  auto part_in = [&](size_t s) { return mod(r + shift - static_cast<int>(s) - 1, p); };

  const int first = mod(r + shift, p);
  auto first_buffer = [&](size_t j) -> Buffer& {
    return own != nullptr ? *(*own)[j] : parts.region(first, j);
  };
  // The first step's receives and sends alternate, as in gloo's own ring:
  // posting every receive first was measured slower on 2 ranks (docs/perf.md,
  // session 9: 1.31x raw gloo's ring at 1 MiB against 1.04x).
  for (size_t j = 0; j < segments; ++j) {
    if (parts.seg_bytes(part_in(0), j) > 0) {
      transfers.post_recv(parts.region(part_in(0), j), left, message(0, j), first_step);
    }
    if (parts.seg_bytes(first, j) > 0) {
      transfers.post_send(first_buffer(j), right, message(0, j), first_step);
    }
  }
  for (size_t s = 1; s < steps; ++s) {
    for (size_t j = 0; j < segments; ++j) {
      if (parts.seg_bytes(part_in(s), j) > 0) {
        transfers.post_recv(parts.region(part_in(s), j), left, message(s, j), first_step + s);
      }
    }
  }
  if (while_sending) while_sending();
  for (size_t s = 0; s < steps; ++s) {
    for (size_t j = 0; j < segments; ++j) {
      if (parts.seg_bytes(part_in(s), j) == 0) continue;
      Buffer& region = parts.region(part_in(s), j);
      transfers.wait_recv(region, left, first_step + s);
      if (s + 1 < steps) transfers.post_send(region, right, message(s + 1, j), first_step + s + 1);
    }
  }
  // The sends must have left before their buffers go.
  for (size_t j = 0; j < segments; ++j) {
    if (parts.seg_bytes(first, j) > 0) transfers.wait_send(first_buffer(j), right, first_step);
  }
  for (size_t s = 0; s + 1 < steps; ++s) {
    for (size_t j = 0; j < segments; ++j) {
      if (parts.seg_bytes(part_in(s), j) > 0) {
        transfers.wait_send(parts.region(part_in(s), j), right, first_step + s + 1);
      }
    }
  }
}

// Which real rank holds virtual rank v of doubling's power-of-two group:
// of the first 2*extra ranks only the odd ones take part.
int doubling_real_rank(int v, int extra) { return v < extra ? 2 * v + 1 : v + extra; }

// doubling_allreduce through the eager channel: the same messages, in the
// same order, combined in the same order, so the bits are the same.
void doubling_allreduce_eager(const OpContext& ctx, void* data, size_t count, DType dtype,
                              ReduceOp::Kind kind) {
  const int p = ctx.size();
  const int r = ctx.rank();
  const size_t bytes = count * itemsize(dtype);
  const int rounds = log2_floor(p);
  const int extra = p - (1 << rounds);
  const size_t fold_out = static_cast<size_t>(rounds) + 1;
  const Transfers transfers(ctx, SlotPrefix::kAllreduceDoubling, "recursive-doubling allreduce",
                            fold_out + 1);
  EagerChannel::Turn turn(*ctx.eager, ctx.eager_ticket, transfers);
  try {
    int virtual_rank = r - extra;
    if (r < 2 * extra) {
      if (r % 2 == 0) {
        turn.send(r + 1, 0, data, bytes);
        turn.wait_sent(r + 1, 0);
        turn.receive(r + 1, fold_out, bytes,
                     [&](const void* result) { std::memcpy(data, result, bytes); });
        return;
      }
      turn.receive(r - 1, 0, bytes, [&](const void* incoming) {
        kernels::combine(data, incoming, data, count, dtype, kind);
      });
      virtual_rank = r / 2;
    }
    for (int round = 0; round < rounds; ++round) {
      const int partner_virtual = virtual_rank ^ (1 << round);
      const int partner = doubling_real_rank(partner_virtual, extra);
      const size_t step = static_cast<size_t>(round) + 1;
      // Both ranks of the pair send at once; the outbox holds a copy while
      // `data` changes.
      turn.send(partner, step, data, bytes);
      turn.receive(partner, step, bytes, [&](const void* incoming) {
        if (partner_virtual < virtual_rank) {
          kernels::combine(data, incoming, data, count, dtype, kind);
        } else {
          kernels::combine(data, data, incoming, count, dtype, kind);
        }
      });
      turn.wait_sent(partner, step);
    }
    if (r < 2 * extra) {
      turn.send(r - 1, fold_out, data, bytes);
      turn.wait_sent(r - 1, fold_out);
    }
  } catch (const std::exception& e) {
    turn.fail(e.what());
    throw;
  }
}

// ring_allgather through the eager channel: in step s (0..p-2) this rank
// sends part (r - s) to the right and receives part (r - s - 1) from the
// left, each part one message.
void ring_allgather_eager(const OpContext& ctx, const void* input, void* output, size_t bytes) {
  const int p = ctx.size();
  const int r = ctx.rank();
  const int left = mod(r - 1, p);
  const int right = mod(r + 1, p);
  const size_t steps = static_cast<size_t>(p - 1);
  const Transfers transfers(ctx, SlotPrefix::kAllgatherRing, "ring allgather", steps);
  EagerChannel::Turn turn(*ctx.eager, ctx.eager_ticket, transfers);
  char* out = static_cast<char*>(output);
  auto block = [&](int part) { return out + static_cast<size_t>(part) * bytes; };
  try {
    // The outbox takes a copy, so the input can move into place after.
    turn.send(right, 0, input, bytes);
    if (input != block(r)) std::memcpy(block(r), input, bytes);
    for (size_t s = 0; s < steps; ++s) {
      const int part_in = mod(r - static_cast<int>(s) - 1, p);
      turn.receive(left, s, bytes,
                   [&](const void* incoming) { std::memcpy(block(part_in), incoming, bytes); });
      if (s + 1 < steps) turn.send(right, s + 1, block(part_in), bytes);
    }
    turn.wait_sent(right, steps - 1);
  } catch (const std::exception& e) {
    turn.fail(e.what());
    throw;
  }
}

}  // namespace

// Recursive doubling: log2(p') rounds, each an exchange of the whole buffer
// with the rank whose (virtual) number differs in one bit, where p' is the
// largest power of two <= p. The first 2(p - p') ranks pair up first: even
// ones hand their buffer to the odd neighbour, which stands for both and
// hands the result back at the end. Each rank combines the lower rank's
// partial sum first, so partners compute the same bits.
void doubling_allreduce(const OpContext& ctx, void* data, size_t count, DType dtype,
                        ReduceOp::Kind kind) {
  if (ctx.eager != nullptr && count * itemsize(dtype) <= EagerChannel::kMaxBytes) {
    doubling_allreduce_eager(ctx, data, count, dtype, kind);
    return;
  }
  ctx.skip_eager_turn();
  const int p = ctx.size();
  const int r = ctx.rank();
  const size_t bytes = count * itemsize(dtype);
  const int rounds = log2_floor(p);
  const int extra = p - (1 << rounds);
  // Message (and step) numbers: 0 folds in, 1..rounds exchange, then the
  // fold-out.
  const size_t fold_out = static_cast<size_t>(rounds) + 1;
  const Transfers transfers(ctx, SlotPrefix::kAllreduceDoubling, "recursive-doubling allreduce",
                            fold_out + 1);

  auto leftovers = std::make_shared<Leftovers>();
  leftovers->scratch = ctx.take_scratch(bytes);
  void* incoming = leftovers->scratch.data_ptr();
  leftovers->buffers.push_back(transfers.buffer(data, bytes));
  leftovers->buffers.push_back(transfers.buffer(incoming, bytes));
  Buffer& mine = *leftovers->buffers[0];
  Buffer& theirs = *leftovers->buffers[1];

  int virtual_rank = r - extra;
  if (r < 2 * extra) {
    if (r % 2 == 0) {
      transfers.post_send(mine, r + 1, 0, 0);
      transfers.wait_send(mine, r + 1, 0);
      transfers.post_recv(mine, r + 1, fold_out, fold_out);
      transfers.wait_recv(mine, r + 1, fold_out);
      ctx.reuse_scratch(std::move(leftovers->scratch));
      ctx.retire(std::move(leftovers));
      return;
    }
    transfers.post_recv(theirs, r - 1, 0, 0);
    transfers.wait_recv(theirs, r - 1, 0);
    kernels::combine(data, incoming, data, count, dtype, kind);
    virtual_rank = r / 2;
  }

  for (int round = 0; round < rounds; ++round) {
    const int partner_virtual = virtual_rank ^ (1 << round);
    const int partner = doubling_real_rank(partner_virtual, extra);
    const size_t step = static_cast<size_t>(round) + 1;
    transfers.post_recv(theirs, partner, step, step);
    transfers.post_send(mine, partner, step, step);
    transfers.wait_recv(theirs, partner, step);
    transfers.wait_send(mine, partner, step);
    if (partner_virtual < virtual_rank) {
      kernels::combine(data, incoming, data, count, dtype, kind);
    } else {
      kernels::combine(data, data, incoming, count, dtype, kind);
    }
  }

  if (r < 2 * extra) {
    transfers.post_send(mine, r - 1, fold_out, fold_out);
    transfers.wait_send(mine, r - 1, fold_out);
  }
  ctx.reuse_scratch(std::move(leftovers->scratch));
  ctx.retire(std::move(leftovers));
}

std::vector<int> doubling_partners(int rank, int size) {
  std::vector<int> partners;
  if (size < 2) return partners;
  const int rounds = log2_floor(size);
  const int extra = size - (1 << rounds);
  int virtual_rank = rank - extra;
  if (rank < 2 * extra) {
    if (rank % 2 == 0) return {rank + 1};
    partners.push_back(rank - 1);
    virtual_rank = rank / 2;
  }
  for (int round = 0; round < rounds; ++round) {
    partners.push_back(doubling_real_rank(virtual_rank ^ (1 << round), extra));
  }
  return partners;
}

std::vector<int> eager_partners(int rank, int size) {
  std::vector<int> partners = doubling_partners(rank, size);
  if (size >= 2) {
    partners.push_back(mod(rank - 1, size));
    partners.push_back(mod(rank + 1, size));
  }
  std::sort(partners.begin(), partners.end());
  partners.erase(std::unique(partners.begin(), partners.end()), partners.end());
  return partners;
}

// Reduce-scatter, then allgather. In reduce-scatter step s (0..p-2) rank r
// sends part (r-s) to r+1 and receives part (r-s-1) from r-1, which it
// reduces into its own copy and sends on in step s+1; after p-1 steps part
// (r+1) is reduced over every rank, and the allgather half (shift 1) spreads
// it. Each part is reduced once, along one chain of ranks, and then copied,
// so every rank holds the same bits.
void ring_allreduce(const OpContext& ctx, void* data, size_t count, DType dtype,
                    ReduceOp::Kind kind) {
  const int p = ctx.size();
  const int r = ctx.rank();
  const size_t item = itemsize(dtype);
  const int left = mod(r - 1, p);
  const int right = mod(r + 1, p);
  const size_t steps = static_cast<size_t>(p - 1);
  const Transfers transfers(ctx, SlotPrefix::kAllreduceRing, "ring allreduce", 2 * steps);
  const size_t part_bytes = (count + static_cast<size_t>(p) - 1) / static_cast<size_t>(p) * item;
  RingParts parts(transfers, data, count, item, p, 2 * steps, ring_segment_bytes(part_bytes));
  const size_t segments = parts.segments();

  // Reduce-scatter message m = s * segments + j is segment j of the part
  // sent in step s. It arrives in one of `window` slots of scratch.
  const size_t rs_messages = steps * segments;
  const size_t window = std::min(kRingWindow, rs_messages);
  auto leftovers = std::make_shared<Leftovers>();
  const size_t slot_bytes = parts.seg_elements() * item;
  leftovers->scratch = ctx.take_scratch(window * slot_bytes);
  auto* scratch = static_cast<char*>(leftovers->scratch.data_ptr());
  Buffers slots;
  for (size_t w = 0; w < window; ++w) {
    slots.push_back(transfers.buffer(scratch + w * slot_bytes, slot_bytes));
  }
  auto part_in = [&](size_t s) { return mod(r - static_cast<int>(s) - 1, p); };
  auto post_recv = [&](size_t m) {
    const size_t s = m / segments;
    const size_t bytes = parts.seg_bytes(part_in(s), m % segments);
    if (bytes > 0) transfers.post_recv(*slots[m % window], left, m, s, 0, bytes);
  };

  // Each receive is posted just before the send of the same message number
  // (see ring_allgather_phase).
  for (size_t j = 0; j < segments; ++j) {
    if (j < window) post_recv(j);
    if (parts.seg_bytes(r, j) > 0) transfers.post_send(parts.region(r, j), right, j, 0);
  }
  for (size_t m = segments; m < window; ++m) post_recv(m);
  for (size_t s = 0; s < steps; ++s) {
    const int part = part_in(s);
    for (size_t j = 0; j < segments; ++j) {
      const size_t m = s * segments + j;
      if (const size_t length = parts.seg_length(part, j); length > 0) {
        Buffer& slot = *slots[m % window];
        transfers.wait_recv(slot, left, s);
        kernels::combine_into(parts.seg_data(part, j), slot.ptr, length, dtype, kind);
        if (s + 1 < steps) transfers.post_send(parts.region(part, j), right, m + segments, s + 1);
      }
      if (m + window < rs_messages) post_recv(m + window);
    }
  }
  // Every send must have left before the allgather receives over the same
  // memory: part (r-s) went in step s.
  for (size_t s = 0; s < steps; ++s) {
    const int part = mod(r - static_cast<int>(s), p);
    for (size_t j = 0; j < segments; ++j) {
      if (parts.seg_bytes(part, j) > 0) transfers.wait_send(parts.region(part, j), right, s);
    }
  }

  ring_allgather_phase(transfers, parts, r, p, /*shift=*/1, rs_messages, steps, nullptr);

  leftovers->buffers = parts.take();
  for (auto& slot : slots) leftovers->buffers.push_back(std::move(slot));
  ctx.reuse_scratch(std::move(leftovers->scratch));
  ctx.retire(std::move(leftovers));
}

void ring_allgather(const OpContext& ctx, const void* input, void* output, size_t bytes) {
  if (ctx.eager != nullptr && bytes <= EagerChannel::kMaxBytes) {
    ring_allgather_eager(ctx, input, output, bytes);
    return;
  }
  ctx.skip_eager_turn();
  const int p = ctx.size();
  const int r = ctx.rank();
  const size_t steps = static_cast<size_t>(p - 1);
  const Transfers transfers(ctx, SlotPrefix::kAllgatherRing, "ring allgather", steps);
  // Segments pay off only where a rank forwards what it receives: on 2
  // ranks each part is one message.
  const size_t segment_bytes = p == 2 ? bytes : ring_segment_bytes(bytes);
  RingParts parts(transfers, output, bytes * static_cast<size_t>(p), 1, p, steps, segment_bytes);
  char* own_block = static_cast<char*>(output) + static_cast<size_t>(r) * bytes;
  // This rank's block is sent straight from the input while it is copied
  // into place (gloo only reads a buffer it sends).
  Buffers own;
  if (input == own_block) {
    ring_allgather_phase(transfers, parts, r, p, /*shift=*/0, 0, 0, nullptr);
  } else {
    own = parts.over(input, r);
    ring_allgather_phase(transfers, parts, r, p, /*shift=*/0, 0, 0, &own,
                         [&] { std::memcpy(own_block, input, bytes); });
  }

  auto leftovers = std::make_shared<Leftovers>();
  leftovers->buffers = parts.take();
  for (auto& buffer : own) leftovers->buffers.push_back(std::move(buffer));
  ctx.retire(std::move(leftovers));
}

}  // namespace tutti::gloo_backend::algorithms
