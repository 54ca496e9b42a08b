// Threads that wait for point-to-point transfers to finish, so each Work
// completes on its own as soon as its transfer does. Idle threads are reused;
// a new one starts only when all are busy, since one wait may take as long
// as the timeout and must not hold up the completion of another.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace tutti::gloo_backend {

class WaiterPool {
 public:
  WaiterPool() = default;
  ~WaiterPool();
  WaiterPool(const WaiterPool&) = delete;
  WaiterPool& operator=(const WaiterPool&) = delete;

  void run(std::function<void()> task);

 private:
  void loop();

  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;  // GUARDED_BY(mutex_)
  size_t idle_ = 0;                          // GUARDED_BY(mutex_)
  bool stopping_ = false;                    // GUARDED_BY(mutex_)
  std::vector<std::thread> threads_;         // GUARDED_BY(mutex_)
};

}  // namespace tutti::gloo_backend
