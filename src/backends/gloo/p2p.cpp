// Point-to-point transfers and the monitored barrier. These do not go through
// the collective queue: a send or recv is posted at once on gloo's unbound
// buffers and a waiter thread completes its Work when the transfer is done,
// so Work::abort() can cancel it.
#include <fmt/format.h>
#include <gloo/transport/unbound_buffer.h>

#include "backends/gloo/backend.hpp"
#include "backends/gloo/link_watch.hpp"
#include "backends/gloo/work.hpp"
#include "core/logging.hpp"

namespace tutti::gloo_backend {
namespace {

// gloo slots are 64-bit; the top bits keep user tags apart from the slots
// gloo's own algorithms derive from collective tags.
constexpr uint64_t kSendRecvSlotPrefix = 0x8;
constexpr uint64_t kMonitoredBarrierSlotPrefix = 0x9;

uint64_t slot(uint64_t prefix, uint32_t tag) { return (prefix << 32) | tag; }

}  // namespace

std::shared_ptr<Work> GlooBackend::post_p2p(OpType op, Tensor tensor, int peer, int tag) {
  auto& context = contexts_[static_cast<size_t>(tag) % contexts_.size()];
  std::shared_ptr<::gloo::transport::UnboundBuffer> buffer =
      context->createUnboundBuffer(tensor.data_ptr(), tensor.nbytes());
  // The buffer goes when the work and this keep have both let go of it, some
  // operations from now, rather than on the thread that drops the work.
  retired_.next_operation();
  retired_.keep(buffer);
  const std::string description =
      peer >= 0 ? fmt::format("{} (peer rank {}, tag {}) on group '{}' rank {}/{} (gloo)",
                              to_string(op), peer, tag, group_name_, rank(), size())
                : fmt::format("{} (tag {}) on group '{}' rank {}/{} (gloo)", to_string(op), tag,
                              group_name_, rank(), size());
  auto work =
      std::make_shared<GlooWork>(op, description, std::vector<Tensor>{tensor}, options_.timeout);
  const bool sending = op == OpType::SEND;
  work->set_cancel([buffer, sending] {
    if (sending) {
      buffer->abortWaitSend();
    } else {
      buffer->abortWaitRecv();
    }
  });
  const uint64_t s = slot(kSendRecvSlotPrefix, static_cast<uint32_t>(tag));
  // The byte count is explicit: left to gloo, a receive from any rank into
  // an empty tensor fails gloo's check that offset 0 lies inside the buffer
  // (GLOO_ENFORCE_LT where its single-peer receive has LE), found by the soak.
  const size_t nbytes = tensor.nbytes();
  try {
    if (op == OpType::SEND) {
      buffer->send(peer, s, 0, nbytes);
    } else if (op == OpType::RECV) {
      buffer->recv(peer, s, 0, nbytes);
    } else {
      std::vector<int> sources;
      for (int r = 0; r < size(); ++r) {
        if (r != rank()) sources.push_back(r);
      }
      buffer->recv(sources, s, 0, nbytes);
    }
  } catch (...) {
    // A connection that already broke (the peer exited) fails the work, as
    // a break during the transfer would.
    work->complete(fail_current(work->description(), work->timeout()));
    return work;
  }
  work->started();
  {
    std::lock_guard<std::mutex> lock(p2p_mutex_);
    // Forget finished ones, so the list is only as long as what is pending.
    std::erase_if(p2p_pending_, [](const std::weak_ptr<GlooWork>& w) {
      auto alive = w.lock();
      return !alive || alive->is_completed();
    });
    p2p_pending_.push_back(work);
  }
  waiters_.run([this, work, buffer, sending, tensor, context, peer] {
    try {
      int source = -1;
      // A receive from any rank has no one connection to watch.
      const LinkWatch::Wait watched(peer >= 0 ? link_watch_.get() : nullptr, *context, peer,
                                    *buffer, !sending);
      const bool done = sending ? buffer->waitSend(&source, work->timeout())
                                : buffer->waitRecv(&source, work->timeout());
      if (!done && watched.lost()) {
        throw DistNetworkError(fmt::format(
            "the connection to rank {} closed in the middle of the message; that rank may have "
            "exited or crashed",
            peer));
      }
      if (!done) {
        work->complete(std::make_exception_ptr(
            DistBackendError(fmt::format("{} was aborted", work->description()))));
        return;
      }
      if (!sending) work->set_source(source);
      work->complete();
    } catch (...) {
      work->complete(fail_current(work->description(), work->timeout()));
    }
  });
  return work;
}

std::shared_ptr<Work> GlooBackend::send(std::vector<Tensor>& tensors, int dst_rank, int tag) {
  return post_p2p(OpType::SEND, tensors[0], dst_rank, tag);
}

std::shared_ptr<Work> GlooBackend::recv(std::vector<Tensor>& tensors, int src_rank, int tag) {
  return post_p2p(OpType::RECV, tensors[0], src_rank, tag);
}

std::shared_ptr<Work> GlooBackend::recv_anysource(std::vector<Tensor>& tensors, int tag) {
  return post_p2p(OpType::RECV_ANYSOURCE, tensors[0], -1, tag);
}

void GlooBackend::monitored_barrier(const BarrierOptions& opts, bool wait_all_ranks) {
  using Clock = std::chrono::steady_clock;
  const auto timeout = resolve(opts.timeout);
  const auto deadline = Clock::now() + timeout;
  const uint32_t round = static_cast<uint32_t>(++monitored_barriers_);
  const uint64_t s = slot(kMonitoredBarrierSlotPrefix, round);
  const std::string what = fmt::format("monitored_barrier #{} on group '{}' rank {}/{}", round,
                                       group_name_, rank(), size());
  auto& context = contexts_[0];
  auto remaining = [&] {
    return std::max(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()),
                    std::chrono::milliseconds(1));
  };
  if (size() == 1) return;
  uint8_t token = 1;
  if (rank() != 0) {
    // Tell rank 0 we arrived, then wait for its release.
    auto out = context->createUnboundBuffer(&token, 1);
    auto in = context->createUnboundBuffer(&token, 1);
    try {
      out->send(0, s);
      in->recv(0, s);
      out->waitSend(remaining());
      in->waitRecv(remaining());
    } catch (...) {
      std::rethrow_exception(translate_current_exception(
          fmt::format("{}: waiting for rank 0 to release the barrier", what), timeout));
    }
    return;
  }
  std::vector<uint8_t> arrivals(static_cast<size_t>(size()), 0);
  std::vector<std::unique_ptr<::gloo::transport::UnboundBuffer>> inbound;
  for (int r = 1; r < size(); ++r) {
    inbound.push_back(context->createUnboundBuffer(&arrivals[static_cast<size_t>(r)], 1));
    inbound.back()->recv(r, s);
  }
  std::vector<int> missing;
  for (int r = 1; r < size(); ++r) {
    auto& buffer = inbound[static_cast<size_t>(r - 1)];
    try {
      buffer->waitRecv(remaining());
    } catch (...) {
      missing.push_back(r);
      buffer->abortWaitRecv();
      if (!wait_all_ranks) break;
    }
  }
  if (!missing.empty()) {
    const std::string ranks = fmt::format("{}", fmt::join(missing, ", "));
    throw DistBackendError(fmt::format(
        "{}: rank{} {} failed to pass monitored_barrier within {} ms{}", what,
        missing.size() > 1 ? "s" : "", ranks, timeout.count(),
        wait_all_ranks ? "" : " (wait_all_ranks=false stops at the first missing rank)"));
  }
  std::vector<std::unique_ptr<::gloo::transport::UnboundBuffer>> outbound;
  for (int r = 1; r < size(); ++r) {
    outbound.push_back(context->createUnboundBuffer(&token, 1));
    outbound.back()->send(r, s);
  }
  try {
    for (auto& buffer : outbound) buffer->waitSend(remaining());
  } catch (...) {
    std::rethrow_exception(
        translate_current_exception(fmt::format("{}: releasing the ranks", what), timeout));
  }
}

}  // namespace tutti::gloo_backend
