// Point-to-point transfers on gloo's unbound buffers for the algorithms tutti
// runs itself (ring reduce-scatter, ring and recursive-doubling allreduce):
// one deadline for the whole operation, slots no other operation uses, and
// gloo's errors turned into tutti's, naming the step and the peer.
#pragma once

#include <gloo/transport/unbound_buffer.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backends/gloo/backend.hpp"

namespace tutti::gloo_backend {

// Slot prefixes (the top byte of a slot) of tutti's own algorithms. gloo's
// algorithms use 0x01-0x08 and tutti's send/recv slots have a top byte of 0,
// so concurrent operations on one context never match each other's messages.
enum class SlotPrefix : uint64_t {
  kReduceScatter = 0x0A,
  kAllreduceRing = 0x0B,
  kAllreduceDoubling = 0x0C,
  kAllgatherRing = 0x0D,
  kEager = 0x0E,  // EagerChannel: numbered by message, not by operation
};

class Transfers {
 public:
  using Clock = std::chrono::steady_clock;
  using Buffer = ::gloo::transport::UnboundBuffer;
  // Messages of one operation are numbered 0 .. kMaxMessages-1 (gloo's
  // layout: tag in bits 24-55, message number in the low 24 bits).
  static constexpr uint64_t kMaxMessages = uint64_t{1} << 24;
  // gloo's "to the end of the buffer".
  static constexpr size_t kWhole = Buffer::kUnspecifiedByteCount;

  // `what` names the operation in errors ("ring allreduce"); `steps` is how
  // many steps it has, for "step 2 of 3".
  Transfers(const OpContext& ctx, SlotPrefix prefix, std::string what, size_t steps);

  const Clock::time_point& deadline() const { return deadline_; }

  // One buffer per [offset, offset + bytes) region of memory at `base`.
  std::unique_ptr<Buffer> buffer(void* base, size_t bytes) const;

  // The whole buffer, or `bytes` from `offset` (both sides must agree on the
  // length). REQUIRES: message < kMaxMessages, unique per peer within the
  // operation.
  void post_recv(Buffer& buffer, int peer, uint64_t message, size_t step, size_t offset = 0,
                 size_t bytes = kWhole) const;
  void post_send(Buffer& buffer, int peer, uint64_t message, size_t step, size_t offset = 0,
                 size_t bytes = kWhole) const;

  // Waits for one transfer posted on `buffer` until the operation's deadline.
  // Throws TimeoutError past it, DistNetworkError if the connection broke
  // (also in the middle of this transfer's message: see LinkWatch),
  // DistBackendError if the wait was aborted.
  void wait_recv(Buffer& buffer, int peer, size_t step) const;
  void wait_send(Buffer& buffer, int peer, size_t step) const;

  // Runs `fn`, a step of this operation that moves data some other way (an
  // EagerChannel), with gloo's errors turned into tutti's as above.
  void guard(bool receiving, int peer, size_t step, const std::function<void()>& fn) const;
  // "recursive-doubling allreduce (tag 12)", for errors outside a step.
  std::string describe() const;
  uint32_t tag() const { return ctx_.tag; }

 private:
  uint64_t slot(uint64_t message) const;
  void wait(Buffer& buffer, bool receiving, int peer, size_t step) const;
  // "ring allreduce step 2 of 3, receiving from rank 1"
  std::string where(bool receiving, int peer, size_t step) const;
  template <class Fn>
  void guarded(bool receiving, int peer, size_t step, Fn&& fn) const;

  const OpContext& ctx_;
  const uint64_t prefix_;
  const std::string what_;
  const size_t steps_;
  const Clock::time_point deadline_;
};

}  // namespace tutti::gloo_backend
