// tutti's own allreduce schedules on gloo's transport: recursive doubling
// for small buffers and a pipelined ring for large ones. Both run in place,
// take their scratch from tutti's tensor storage (so no per-call new[] of
// gloo's grows the malloc arenas; docs/soak-and-netns.md), and leave the
// same bits on every rank.
#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "backends/gloo/algorithms_common.hpp"
#include "backends/gloo/allreduce_schedules.hpp"
#include "backends/gloo/transfers.hpp"

namespace tutti::gloo_backend::algorithms {
namespace {

using Buffer = Transfers::Buffer;
using Buffers = std::vector<std::unique_ptr<Buffer>>;

// A ring segment: reducing one overlaps receiving the next, and each
// reduced segment moves on to the next rank at once.
constexpr size_t kRingSegmentBytes = 256 << 10;
// Receive slots of scratch the ring keeps posted ahead.
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

}  // namespace

// Recursive doubling: log2(p') rounds, each an exchange of the whole buffer
// with the rank whose (virtual) number differs in one bit, where p' is the
// largest power of two <= p. The first 2(p - p') ranks pair up first: even
// ones hand their buffer to the odd neighbour, which stands for both and
// hands the result back at the end. Each rank combines the lower rank's
// partial sum first, so partners compute the same bits.
void doubling_allreduce(const OpContext& ctx, void* data, size_t count, DType dtype,
                        ReduceOp::Kind kind) {
  const int p = ctx.size();
  const int r = ctx.rank();
  const size_t bytes = count * itemsize(dtype);
  const int rounds = log2_floor(p);
  const int extra = p - (1 << rounds);
  // Message (and step) numbers: 0 folds in, 1..rounds exchange, then the
  // fold-out.
  const size_t fold_out = static_cast<size_t>(rounds) + 1;
  Transfers transfers(ctx, SlotPrefix::kAllreduceDoubling, "recursive-doubling allreduce",
                      fold_out + 1);

  auto leftovers = std::make_shared<Leftovers>();
  leftovers->scratch = Tensor::empty({static_cast<int64_t>(count)}, dtype);
  void* incoming = leftovers->scratch.data_ptr();
  leftovers->buffers.push_back(transfers.buffer(data, bytes));
  leftovers->buffers.push_back(transfers.buffer(incoming, bytes));
  Buffer& mine = *leftovers->buffers[0];
  Buffer& theirs = *leftovers->buffers[1];

  auto finish = [&] { ctx.retire(std::move(leftovers)); };

  int virtual_rank = r - extra;
  if (r < 2 * extra) {
    if (r % 2 == 0) {
      transfers.post_send(mine, r + 1, 0, 0);
      transfers.wait_send(mine, r + 1, 0);
      transfers.post_recv(mine, r + 1, fold_out, fold_out);
      transfers.wait_recv(mine, r + 1, fold_out);
      finish();
      return;
    }
    transfers.post_recv(theirs, r - 1, 0, 0);
    transfers.wait_recv(theirs, r - 1, 0);
    kernels::combine(data, incoming, data, count, dtype, kind);
    virtual_rank = r / 2;
  }

  auto real_rank = [extra](int v) { return v < extra ? 2 * v + 1 : v + extra; };
  for (int round = 0; round < rounds; ++round) {
    const int partner_virtual = virtual_rank ^ (1 << round);
    const int partner = real_rank(partner_virtual);
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
  finish();
}

// The ring: the buffer is cut into p parts, each into segments. Reduce-
// scatter: in step s (0..p-2) rank r sends part (r-s) to r+1 and receives
// part (r-s-1) from r-1, which it reduces into its own copy and sends on in
// step s+1; after p-1 steps part (r+1) is reduced over every rank. Allgather:
// in step s rank r sends part (r+1-s) and receives part (r-s) into place,
// which it sends on in step s+1. Each part is reduced once, on one chain of
// ranks, and then copied, so every rank holds the same bits.
void ring_allreduce(const OpContext& ctx, void* data, size_t count, DType dtype,
                    ReduceOp::Kind kind) {
  const int p = ctx.size();
  const int r = ctx.rank();
  const size_t item = itemsize(dtype);
  const int left = (r + p - 1) % p;
  const int right = (r + 1) % p;
  const size_t steps = static_cast<size_t>(p - 1);

  // Part i: elements [begin(i), begin(i) + length(i)); the first count % p
  // parts have one element more.
  const size_t base = count / static_cast<size_t>(p);
  const size_t rem = count % static_cast<size_t>(p);
  auto part_begin = [&](int i) {
    const auto u = static_cast<size_t>(i);
    return u * base + std::min(u, rem);
  };
  auto part_length = [&](int i) { return base + (static_cast<size_t>(i) < rem ? 1 : 0); };
  auto part_at = [p](int i) { return ((i % p) + p) % p; };

  // Every part has the same number of segments; the last ones of a shorter
  // part may be empty and are skipped on both sides alike.
  const size_t longest = part_length(0);
  size_t segments = std::max<size_t>(1, longest * item / kRingSegmentBytes);
  segments = std::min(segments, static_cast<size_t>(Transfers::kMaxMessages / (2 * steps)));
  const size_t seg_elements = (longest + segments - 1) / segments;
  segments = (longest + seg_elements - 1) / seg_elements;
  auto seg_offset = [&](int part, size_t j) { return part_begin(part) + j * seg_elements; };
  auto seg_length = [&](int part, size_t j) {
    const size_t start = j * seg_elements;
    const size_t length = part_length(part);
    return start >= length ? 0 : std::min(seg_elements, length - start);
  };

  Transfers transfers(ctx, SlotPrefix::kAllreduceRing, "ring allreduce", 2 * steps);
  auto* bytes = static_cast<char*>(data);

  // One buffer per non-empty segment of the data, and kRingWindow receive
  // slots of scratch for the reduce-scatter.
  auto leftovers = std::make_shared<Leftovers>();
  Buffers& buffers = leftovers->buffers;
  buffers.resize(static_cast<size_t>(p) * segments);
  auto region = [&](int part, size_t j) -> Buffer& {
    auto& slot = buffers[static_cast<size_t>(part) * segments + j];
    if (!slot) {
      slot = transfers.buffer(bytes + seg_offset(part, j) * item, seg_length(part, j) * item);
    }
    return *slot;
  };
  const size_t rs_messages = steps * segments;
  const size_t window = std::min(kRingWindow, rs_messages);
  leftovers->scratch = Tensor::empty({static_cast<int64_t>(window * seg_elements)}, dtype);
  auto* scratch = static_cast<char*>(leftovers->scratch.data_ptr());
  Buffers slots;
  for (size_t w = 0; w < window; ++w) {
    slots.push_back(transfers.buffer(scratch + w * seg_elements * item, seg_elements * item));
  }

  // Reduce-scatter message m = s * segments + j carries segment j of the
  // part sent in step s.
  auto rs_part_in = [&](size_t s) { return part_at(r - static_cast<int>(s) - 1); };
  auto post_rs_recv = [&](size_t m) {
    const size_t s = m / segments;
    const size_t j = m % segments;
    const size_t length = seg_length(rs_part_in(s), j);
    if (length > 0) {
      transfers.post_recv(*slots[m % window], left, m, s, 0, length * item);
    }
  };
  for (size_t m = 0; m < window; ++m) post_rs_recv(m);
  for (size_t j = 0; j < segments; ++j) {
    if (seg_length(r, j) > 0) transfers.post_send(region(r, j), right, j, 0);
  }
  for (size_t s = 0; s < steps; ++s) {
    const int part = rs_part_in(s);
    for (size_t j = 0; j < segments; ++j) {
      const size_t m = s * segments + j;
      const size_t length = seg_length(part, j);
      if (length > 0) {
        Buffer& slot = *slots[m % window];
        transfers.wait_recv(slot, left, s);
        char* mine = bytes + seg_offset(part, j) * item;
        kernels::combine_into(mine, slot.ptr, length, dtype, kind);
        if (s + 1 < steps) transfers.post_send(region(part, j), right, m + segments, s + 1);
      }
      if (m + window < rs_messages) post_rs_recv(m + window);
    }
  }

  // Every reduce-scatter send must have left before the allgather receives
  // over the same memory: part (r-s) went in step s.
  for (size_t s = 0; s < steps; ++s) {
    const int part = part_at(r - static_cast<int>(s));
    for (size_t j = 0; j < segments; ++j) {
      if (seg_length(part, j) > 0) transfers.wait_send(region(part, j), right, s);
    }
  }

  // Allgather message rs_messages + s * segments + j carries segment j of
  // the part sent in allgather step s.
  auto ag_part_in = [&](size_t s) { return part_at(r - static_cast<int>(s)); };
  for (size_t s = 0; s < steps; ++s) {
    const int part = ag_part_in(s);
    for (size_t j = 0; j < segments; ++j) {
      if (seg_length(part, j) > 0) {
        transfers.post_recv(region(part, j), left, rs_messages + s * segments + j, steps + s);
      }
    }
  }
  const int first = part_at(r + 1);
  for (size_t j = 0; j < segments; ++j) {
    if (seg_length(first, j) > 0)
      transfers.post_send(region(first, j), right, rs_messages + j, steps);
  }
  for (size_t s = 0; s < steps; ++s) {
    const int part = ag_part_in(s);
    for (size_t j = 0; j < segments; ++j) {
      if (seg_length(part, j) == 0) continue;
      transfers.wait_recv(region(part, j), left, steps + s);
      if (s + 1 < steps) {
        transfers.post_send(region(part, j), right, rs_messages + (s + 1) * segments + j,
                            steps + s + 1);
      }
    }
  }
  // The last sends must leave before the buffers go: part (r+1) in step 0,
  // and part (r-s) in step s+1.
  for (size_t j = 0; j < segments; ++j) {
    if (seg_length(first, j) > 0) transfers.wait_send(region(first, j), right, steps);
  }
  for (size_t s = 0; s + 1 < steps; ++s) {
    const int part = ag_part_in(s);
    for (size_t j = 0; j < segments; ++j) {
      if (seg_length(part, j) > 0) transfers.wait_send(region(part, j), right, steps + s + 1);
    }
  }
  for (auto& slot : slots) buffers.push_back(std::move(slot));
  ctx.retire(std::move(leftovers));
}

}  // namespace tutti::gloo_backend::algorithms
