// Threads that wait for point-to-point transfers to finish, so each Work
// completes on its own as soon as its transfer does. Idle threads are reused;
// a new one starts only when all are busy, since one wait may take as long
// as the timeout and must not hold up the completion of another. A thread
// idle for idle_linger leaves while kKeptIdle others stay idle, so a burst
// of concurrent transfers does not keep its threads for the group's life
// (the soak saw the thread count ratchet up with each new peak).
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace tutti::gloo_backend {

class WaiterPool {
 public:
  static constexpr size_t kKeptIdle = 2;
  static constexpr std::chrono::milliseconds kDefaultIdleLinger{1000};

  explicit WaiterPool(std::chrono::milliseconds idle_linger = kDefaultIdleLinger)
      : idle_linger_(idle_linger) {}
  ~WaiterPool();
  WaiterPool(const WaiterPool&) = delete;
  WaiterPool& operator=(const WaiterPool&) = delete;

  void run(std::function<void()> task);
  // Lets the queued tasks finish and joins every thread. Idempotent; call
  // run() no more after it.
  void stop();
  // Threads running or idle (not those that left).
  size_t threads() const;

 private:
  void loop();

  const std::chrono::milliseconds idle_linger_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;  // GUARDED_BY(mutex_)
  size_t idle_ = 0;                          // GUARDED_BY(mutex_)
  bool stopping_ = false;                    // GUARDED_BY(mutex_)
  std::vector<std::thread> threads_;         // GUARDED_BY(mutex_)
  std::vector<std::thread> retired_;         // GUARDED_BY(mutex_): left, not joined
};

}  // namespace tutti::gloo_backend
