// Wakes a transfer whose connection died in the middle of a message.
//
// gloo fails the transfers waiting on a connection that breaks, except the
// two it is working on at that moment: the message it is reading into an
// unbound buffer and the one it is writing from one. A rank killed while a
// large message moves between it and a peer therefore left that peer
// waiting for its whole timeout (a minute by default) instead of failing
// within seconds (seen in GlooFaults.KilledPeerIsANetworkErrorWithinSeconds,
// about one run in five).
//
// Each tutti transfer wait (Transfers::wait) registers here for its
// duration. A thread of this watch looks, a few times a second, at waits
// older than kQuietPeriod; if the TCP connection to the wait's peer is no
// longer established, it aborts the wait (UnboundBuffer::abortWaitRecv or
// abortWaitSend) and the waiter raises DistNetworkError. A connection is
// found by the local address of its gloo pair in /proc/net/tcp and
// /proc/net/tcp6: read only, and only for waits that are already slow.
#pragma once

#include <gloo/context.h>
#include <gloo/transport/unbound_buffer.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

namespace tutti::gloo_backend {

class LinkWatch {
 public:
  using Clock = std::chrono::steady_clock;
  // A wait younger than this is not looked at.
  static constexpr std::chrono::milliseconds kQuietPeriod{1000};
  // How often the watch looks.
  static constexpr std::chrono::milliseconds kInterval{250};
  // How many looks in a row must find a connection gone.
  static constexpr int kLooksToLose = 2;

  // One wait of one transfer, registered for its lifetime (RAII). Lives on
  // the waiting thread's stack: registering allocates nothing.
  class Wait {
   public:
    // Registers with `watch` unless it is null.
    Wait(LinkWatch* watch, ::gloo::Context& context, int peer,
         ::gloo::transport::UnboundBuffer& buffer, bool receiving);
    ~Wait();
    // After the wait returned false (aborted): whether that was for a lost
    // connection (the watch, or the connection already gone), rather than
    // an abort of the caller's. False when not registered.
    bool lost() const { return watch_ != nullptr && !established(context_, peer_); }
    Wait(const Wait&) = delete;
    Wait& operator=(const Wait&) = delete;

   private:
    friend class LinkWatch;
    LinkWatch* const watch_;
    ::gloo::Context& context_;
    const int peer_;
    ::gloo::transport::UnboundBuffer& buffer_;
    const bool receiving_;
    const Clock::time_point since_;
    uint64_t id_ = 0;       // GUARDED_BY(watch_->mutex_): unique per registration
    bool aborted_ = false;  // GUARDED_BY(watch_->mutex_)
    int misses_ = 0;        // GUARDED_BY(watch_->mutex_): looks in a row that found it gone
    Wait* prev_ = nullptr;  // GUARDED_BY(watch_->mutex_)
    Wait* next_ = nullptr;  // GUARDED_BY(watch_->mutex_)
  };

  LinkWatch();
  ~LinkWatch();  // stops and joins the thread
  LinkWatch(const LinkWatch&) = delete;
  LinkWatch& operator=(const LinkWatch&) = delete;

  // Whether the connection of `context` to `peer` is still established
  // (false also when gloo has already closed it).
  static bool established(::gloo::Context& context, int peer);

 private:
  void run();
  // Aborts the slow waits whose connection is gone. REQUIRES: `lock` holds
  // mutex_; releases it while it reads the connection tables.
  void look(std::unique_lock<std::mutex>& lock);

  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;  // GUARDED_BY(mutex_)
  Wait* waits_ = nullptr;  // GUARDED_BY(mutex_): an intrusive list
  uint64_t next_id_ = 0;   // GUARDED_BY(mutex_)
  std::thread thread_;     // last: started once the rest is ready
};

}  // namespace tutti::gloo_backend
