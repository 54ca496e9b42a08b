#include "backends/gloo/waiter_pool.hpp"

#include <algorithm>

namespace tutti::gloo_backend {

WaiterPool::~WaiterPool() { stop(); }

void WaiterPool::stop() {
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    threads.swap(threads_);
    for (auto& t : retired_) threads.push_back(std::move(t));
    retired_.clear();
  }
  cv_.notify_all();
  for (auto& t : threads) t.join();
}

void WaiterPool::run(std::function<void()> task) {
  std::vector<std::thread> retired;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    retired.swap(retired_);
    tasks_.push_back(std::move(task));
    if (idle_ >= tasks_.size()) {
      cv_.notify_one();
    } else {
      threads_.emplace_back([this] { loop(); });
    }
  }
  // They have left loop() or are about to: joining takes no time.
  for (auto& t : retired) t.join();
}

size_t WaiterPool::threads() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return threads_.size();
}

void WaiterPool::loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    ++idle_;
    const bool woken =
        cv_.wait_for(lock, idle_linger_, [this] { return stopping_ || !tasks_.empty(); });
    --idle_;
    if (!woken) {
      if (idle_ < kKeptIdle) continue;
      // Enough others are idle: leave, to be joined by the next run() or
      // the destructor.
      auto self = std::find_if(threads_.begin(), threads_.end(), [](const std::thread& t) {
        return t.get_id() == std::this_thread::get_id();
      });
      retired_.push_back(std::move(*self));
      threads_.erase(self);
      return;
    }
    if (tasks_.empty()) return;  // stopping
    auto task = std::move(tasks_.front());
    tasks_.pop_front();
    lock.unlock();
    task();
    lock.lock();
  }
}

}  // namespace tutti::gloo_backend
