#include "backends/gloo/eager.hpp"

#include <fmt/format.h>
#include <gloo/transport/unbound_buffer.h>

#include <cstring>
#include <new>

#include "backends/gloo/transfers.hpp"
#include "tutti/errors.hpp"

namespace tutti::gloo_backend {
namespace {

// What leads each message: checked against what the receiver expects.
struct Header {
  uint32_t tag;
  uint32_t step;
  uint64_t bytes;
};
// The payload starts a cache line in, aligned for the reduction kernels.
constexpr size_t kHeaderBytes = 64;
static_assert(sizeof(Header) <= kHeaderBytes);
constexpr size_t kRegionBytes = kHeaderBytes + EagerChannel::kMaxBytes;

// Message n between two ranks, in either direction: gloo matches slots per
// connection and direction.
uint64_t slot(uint64_t n) {
  return (static_cast<uint64_t>(SlotPrefix::kEager) << 56) | (n & ((uint64_t{1} << 56) - 1));
}

struct AlignedFree {
  void operator()(std::byte* p) const { ::operator delete[](p, std::align_val_t{64}); }
};

}  // namespace

struct EagerChannel::Link {
  using Buffer = ::gloo::transport::UnboundBuffer;
  int peer = -1;
  std::unique_ptr<std::byte[], AlignedFree> memory;  // inbox 0, inbox 1, outbox 0, outbox 1
  std::unique_ptr<Buffer> inboxes[2];
  std::unique_ptr<Buffer> outboxes[2];
  uint64_t sent = 0;       // messages sent to the peer and seen leave
  uint64_t received = 0;   // messages from the peer used up
  bool in_flight = false;  // message `sent` is on its way
  // Whether each inbox has its receive posted. A post can fail after a
  // message was used (the peer has since left); the next wait on that
  // inbox posts again and reports the failure there.
  bool posted[2] = {true, true};

  std::byte* region(int i) const { return memory.get() + static_cast<size_t>(i) * kRegionBytes; }
  // Message n's inbox and outbox.
  Buffer& inbox(uint64_t n) const { return *inboxes[n % 2]; }
  Buffer& outbox(uint64_t n) const { return *outboxes[n % 2]; }
  std::byte* inbox_region(uint64_t n) const { return region(static_cast<int>(n % 2)); }
  std::byte* outbox_region(uint64_t n) const { return region(2 + static_cast<int>(n % 2)); }
};

EagerChannel::EagerChannel(std::shared_ptr<::gloo::Context> context)
    : context_(std::move(context)) {}

EagerChannel::~EagerChannel() = default;

std::unique_ptr<EagerChannel> EagerChannel::create(std::shared_ptr<::gloo::Context> context,
                                                   const std::vector<int>& peers) {
  if (peers.empty()) return nullptr;
  std::unique_ptr<EagerChannel> channel(new EagerChannel(std::move(context)));
  for (const int peer : peers) {
    auto link = std::make_unique<Link>();
    link->peer = peer;
    link->memory.reset(
        static_cast<std::byte*>(::operator new[](4 * kRegionBytes, std::align_val_t{64})));
    for (int k = 0; k < 2; ++k) {
      link->inboxes[k] = channel->context_->createUnboundBuffer(link->region(k), kRegionBytes);
      link->outboxes[k] = channel->context_->createUnboundBuffer(link->region(2 + k), kRegionBytes);
      link->inboxes[k]->recv(peer, slot(static_cast<uint64_t>(k)));
    }
    channel->links_.emplace(peer, std::move(link));
  }
  return channel;
}

EagerChannel::Link& EagerChannel::link(int peer) {
  auto it = links_.find(peer);
  if (it == links_.end()) {
    throw DistBackendError(fmt::format("gloo: no small-message channel to rank {}", peer));
  }
  return *it->second;
}

uint64_t EagerChannel::take_ticket() {
  std::lock_guard<std::mutex> lock(mutex_);
  return next_ticket_++;
}

void EagerChannel::settle(uint64_t ticket) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (ticket < turn_ || !settled_.insert(ticket).second) return;
    while (!settled_.empty() && *settled_.begin() == turn_) {
      settled_.erase(settled_.begin());
      ++turn_;
    }
  }
  turn_cv_.notify_all();
}

EagerChannel::Turn::Turn(EagerChannel& channel, uint64_t ticket, const Transfers& transfers)
    : channel_(channel), ticket_(ticket), transfers_(transfers) {
  std::string broken;
  bool ready = false;
  {
    std::unique_lock<std::mutex> lock(channel_.mutex_);
    ready = channel_.turn_cv_.wait_until(lock, transfers_.deadline(), [&] {
      return channel_.turn_ >= ticket_ || !channel_.broken_.empty();
    });
    broken = channel_.broken_;
    if (ready && broken.empty() && channel_.turn_ > ticket_) {
      // A second turn on one ticket: the peers' message counts would differ.
      broken = fmt::format("{} took a second turn on ticket {}", transfers_.describe(), ticket_);
      channel_.broken_ = broken;
    }
  }
  if (!broken.empty()) {
    channel_.settle(ticket_);
    throw DistBackendError(fmt::format(
        "{}: the group's small-message channel is out of step since an earlier operation failed "
        "in it ({}); create a new group",
        transfers_.describe(), broken));
  }
  if (!ready) {
    // The peers may have gone ahead with this operation: out of step now.
    fail(fmt::format("{} timed out waiting for an earlier operation", transfers_.describe()));
    channel_.settle(ticket_);
    throw TimeoutError(
        fmt::format("{}: no progress within the operation's timeout; an earlier operation of "
                    "this group still holds the connection",
                    transfers_.describe()));
  }
}

EagerChannel::Turn::~Turn() { channel_.settle(ticket_); }

void EagerChannel::Turn::fail(const std::string& reason) {
  std::lock_guard<std::mutex> lock(channel_.mutex_);
  if (channel_.broken_.empty()) channel_.broken_ = reason;
  channel_.turn_cv_.notify_all();
}

void EagerChannel::Turn::send(int peer, size_t step, const void* data, size_t bytes) {
  Link& link = channel_.link(peer);
  if (link.in_flight) wait_sent(peer, step);
  std::byte* region = link.outbox_region(link.sent);
  const Header header{transfers_.tag(), static_cast<uint32_t>(step), bytes};
  std::memcpy(region, &header, sizeof header);
  if (bytes > 0) std::memcpy(region + kHeaderBytes, data, bytes);
  transfers_.guard(/*receiving=*/false, peer, step, [&] {
    link.outbox(link.sent).send(peer, slot(link.sent), 0, kHeaderBytes + bytes);
  });
  link.in_flight = true;
}

void EagerChannel::Turn::wait_sent(int peer, size_t step) {
  Link& link = channel_.link(peer);
  if (!link.in_flight) return;
  transfers_.wait_send(link.outbox(link.sent), peer, step);
  link.in_flight = false;
  ++link.sent;
}

void EagerChannel::Turn::receive(int peer, size_t step, size_t bytes,
                                 const std::function<void(const void*)>& use) {
  Link& link = channel_.link(peer);
  const uint64_t n = link.received;
  if (!link.posted[n % 2]) {
    transfers_.guard(/*receiving=*/true, peer, step, [&] { link.inbox(n).recv(peer, slot(n)); });
    link.posted[n % 2] = true;
  }
  transfers_.wait_recv(link.inbox(n), peer, step);
  const std::byte* region = link.inbox_region(n);
  Header header{};
  std::memcpy(&header, region, sizeof header);
  if (header.tag != transfers_.tag() || header.step != step || header.bytes != bytes) {
    throw DistBackendError(fmt::format(
        "{}: rank {} sent a small message for tag {} step {} ({} bytes) where tag {} step {} ({} "
        "bytes) was due; the ranks did not run the same collectives in the same order",
        transfers_.describe(), peer, header.tag, header.step + 1, header.bytes, transfers_.tag(),
        step + 1, bytes));
  }
  use(region + kHeaderBytes);
  ++link.received;
  // The inbox is free again: ready it for the message two on. This
  // operation has its data, so a failure here is left to the next one.
  try {
    link.inbox(n).recv(peer, slot(n + 2));
  } catch (const std::exception&) {
    link.posted[n % 2] = false;
  }
}

}  // namespace tutti::gloo_backend
