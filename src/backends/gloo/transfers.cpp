#include "backends/gloo/transfers.hpp"

#include <fmt/format.h>
#include <gloo/common/error.h>

#include <algorithm>

#include "backends/gloo/link_watch.hpp"
#include "tutti/errors.hpp"

namespace tutti::gloo_backend {

Transfers::Transfers(const OpContext& ctx, SlotPrefix prefix, std::string what, size_t steps)
    : ctx_(ctx),
      prefix_(static_cast<uint64_t>(prefix)),
      what_(std::move(what)),
      steps_(steps),
      deadline_(Clock::now() + ctx.timeout) {}

std::unique_ptr<Transfers::Buffer> Transfers::buffer(void* base, size_t bytes) const {
  return ctx_.context->createUnboundBuffer(base, bytes);
}

uint64_t Transfers::slot(uint64_t message) const {
  return (prefix_ << 56) | (uint64_t{ctx_.tag} << 24) | message;
}

void Transfers::post_recv(Buffer& buffer, int peer, uint64_t message, size_t step, size_t offset,
                          size_t bytes) const {
  guarded(/*receiving=*/true, peer, step, [&] { buffer.recv(peer, slot(message), offset, bytes); });
}

void Transfers::post_send(Buffer& buffer, int peer, uint64_t message, size_t step, size_t offset,
                          size_t bytes) const {
  guarded(/*receiving=*/false, peer, step,
          [&] { buffer.send(peer, slot(message), offset, bytes); });
}

void Transfers::wait_recv(Buffer& buffer, int peer, size_t step) const {
  wait(buffer, /*receiving=*/true, peer, step);
}

void Transfers::wait_send(Buffer& buffer, int peer, size_t step) const {
  wait(buffer, /*receiving=*/false, peer, step);
}

void Transfers::wait(Buffer& buffer, bool receiving, int peer, size_t step) const {
  // Rounded up: gloo must not give up before the deadline, which is what
  // tells its timeout from a broken connection (guarded()).
  const auto remaining =
      std::max(std::chrono::ceil<std::chrono::milliseconds>(deadline_ - Clock::now()),
               std::chrono::milliseconds(0));
  bool done = false;
  const LinkWatch::Wait watched(ctx_.link_watch, *ctx_.context, peer, buffer, receiving);
  guarded(receiving, peer, step,
          [&] { done = receiving ? buffer.waitRecv(remaining) : buffer.waitSend(remaining); });
  if (done) return;
  if (watched.lost()) {
    throw DistNetworkError(fmt::format(
        "{}: the connection closed in the middle of a message; that rank may have exited or "
        "crashed",
        where(receiving, peer, step)));
  }
  throw DistBackendError(fmt::format("{} step {} of {} was aborted", what_, step + 1, steps_));
}

void Transfers::guard(bool receiving, int peer, size_t step,
                      const std::function<void()>& fn) const {
  guarded(receiving, peer, step, fn);
}

std::string Transfers::describe() const { return fmt::format("{} (tag {})", what_, ctx_.tag); }

std::string Transfers::where(bool receiving, int peer, size_t step) const {
  return fmt::format("{} step {} of {}, {} rank {}", what_, step + 1, steps_,
                     receiving ? "receiving from" : "sending to", peer);
}

// gloo reports a timeout and a broken connection with the same exception
// type, so the deadline tells them apart.
template <class Fn>
void Transfers::guarded(bool receiving, int peer, size_t step, Fn&& fn) const {
  try {
    fn();
  } catch (const ::gloo::IoException& e) {
    const std::string where = this->where(receiving, peer, step);
    if (Clock::now() >= deadline_) {
      throw TimeoutError(
          fmt::format("{}: no progress within the operation's timeout of {} ms; that rank may be "
                      "stuck, slower, or not calling this collective ({})",
                      where, ctx_.timeout.count(), e.what()));
    }
    throw DistNetworkError(fmt::format(
        "{}: the connection broke; that rank may have exited or crashed ({})", where, e.what()));
  }
}

}  // namespace tutti::gloo_backend
