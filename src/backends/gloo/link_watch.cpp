#include "backends/gloo/link_watch.hpp"

#include <fmt/format.h>
#include <gloo/transport/tcp/address.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace tutti::gloo_backend {
namespace {

// The kernel's spelling of a local address in /proc/net/tcp{,6}: each
// 32-bit word of the address as a number in host order, then the port.
std::string proc_spelling(const sockaddr_storage& ss) {
  if (ss.ss_family == AF_INET) {
    const auto& in = reinterpret_cast<const sockaddr_in&>(ss);
    uint32_t word = 0;
    std::memcpy(&word, &in.sin_addr, sizeof word);
    return fmt::format("{:08X}:{:04X}", word, ntohs(in.sin_port));
  }
  const auto& in6 = reinterpret_cast<const sockaddr_in6&>(ss);
  std::string spelled;
  for (int i = 0; i < 4; ++i) {
    uint32_t word = 0;
    std::memcpy(&word, reinterpret_cast<const char*>(&in6.sin6_addr) + 4 * i, sizeof word);
    spelled += fmt::format("{:08X}", word);
  }
  return spelled + fmt::format(":{:04X}", ntohs(in6.sin6_port));
}

// Whether `table` lists an established connection (state 01) whose local
// address is `local`. Other lines may share the address: an earlier
// connection in TIME_WAIT (06) on the same port, listed before ours. A
// table that cannot be read says nothing: true.
bool lists_established(const char* table, const std::string& local) {
  std::ifstream in(table);
  if (!in) return true;
  std::string line;
  std::getline(in, line);  // the header
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string slot, local_address, remote_address, state;
    fields >> slot >> local_address >> remote_address >> state;
    if (local_address == local && state == "01") return true;
  }
  return false;
}

}  // namespace

LinkWatch::Wait::Wait(LinkWatch* watch, ::gloo::Context& context, int peer,
                      ::gloo::transport::UnboundBuffer& buffer, bool receiving)
    : watch_(watch),
      context_(context),
      peer_(peer),
      buffer_(buffer),
      receiving_(receiving),
      since_(watch != nullptr ? Clock::now() : Clock::time_point()) {
  if (watch_ == nullptr) return;
  std::lock_guard<std::mutex> lock(watch_->mutex_);
  id_ = ++watch_->next_id_;
  next_ = watch_->waits_;
  if (next_ != nullptr) next_->prev_ = this;
  watch_->waits_ = this;
}

LinkWatch::Wait::~Wait() {
  if (watch_ == nullptr) return;
  std::lock_guard<std::mutex> lock(watch_->mutex_);
  if (prev_ != nullptr) {
    prev_->next_ = next_;
  } else {
    watch_->waits_ = next_;
  }
  if (next_ != nullptr) next_->prev_ = prev_;
}

LinkWatch::LinkWatch() : thread_([this] { run(); }) {}

LinkWatch::~LinkWatch() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

bool LinkWatch::established(::gloo::Context& context, int peer) {
  try {
    const auto& pair = context.getPair(peer);
    if (!pair) return false;
    const auto* address = dynamic_cast<const ::gloo::transport::tcp::Address*>(&pair->address());
    if (address == nullptr) return true;  // not TCP: nothing to say
    const sockaddr_storage& ss = address->getSockaddr();
    const std::string local = proc_spelling(ss);
    return lists_established(ss.ss_family == AF_INET ? "/proc/net/tcp" : "/proc/net/tcp6", local);
  } catch (...) {
    return true;  // unknown: leave the wait to gloo's timeout
  }
}

void LinkWatch::run() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stopping_) {
    wake_.wait_for(lock, kInterval);
    if (!stopping_) look(lock);
  }
}

void LinkWatch::look(std::unique_lock<std::mutex>& lock) {
  struct Slow {
    const Wait* wait;
    uint64_t id;
    ::gloo::Context* context;
    int peer;
  };
  std::vector<Slow> slow;
  const auto quiet_since = Clock::now() - kQuietPeriod;
  for (Wait* wait = waits_; wait != nullptr; wait = wait->next_) {
    if (!wait->aborted_ && wait->since_ <= quiet_since) {
      slow.push_back({wait, wait->id_, &wait->context_, wait->peer_});
    }
  }
  if (slow.empty()) return;
  // The contexts belong to the backend, which outlives this watch; the
  // waits may end meanwhile, so they are looked up again afterwards.
  lock.unlock();
  std::vector<const Wait*> lost;
  for (const Slow& s : slow) {
    if (!established(*s.context, s.peer)) lost.push_back(s.wait);
  }
  lock.lock();
  for (Wait* wait = waits_; wait != nullptr; wait = wait->next_) {
    for (const Slow& s : slow) {
      if (s.wait != wait || s.id != wait->id_) continue;
      if (std::find(lost.begin(), lost.end(), s.wait) == lost.end()) {
        wait->misses_ = 0;
        continue;
      }
      // The table is read in pieces while other sockets come and go, so a
      // line can be missed once: a connection counts as gone only when two
      // looks in a row do not find it.
      if (++wait->misses_ < kLooksToLose) continue;
      // Still registered, so its buffer is alive: the waiter removes the
      // registration (under mutex_) before the buffer can go.
      wait->aborted_ = true;
      if (wait->receiving_) {
        wait->buffer_.abortWaitRecv();
      } else {
        wait->buffer_.abortWaitSend();
      }
    }
  }
}

}  // namespace tutti::gloo_backend
