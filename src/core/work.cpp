#include "tutti/work.hpp"

#include <fmt/format.h>

#include <array>
#include <thread>

namespace tutti {

const char* to_string(OpType op) {
  static constexpr std::array<const char*, kNumOpTypes> kNames = {
      "broadcast",
      "allreduce",
      "allreduce_sparse",
      "allreduce_coalesced",
      "reduce",
      "allgather",
      "allgather_into_tensor",
      "allgather_coalesced",
      "allgather_into_tensor_coalesced",
      "gather",
      "scatter",
      "reduce_scatter",
      "reduce_scatter_tensor",
      "reduce_scatter_tensor_coalesced",
      "alltoall_base",
      "alltoall",
      "send",
      "recv",
      "recv_anysource",
      "barrier",
      "monitored_barrier",
      "unknown",
  };
  auto index = static_cast<size_t>(op);
  return index < kNames.size() ? kNames[index] : "unknown";
}

bool is_point_to_point(OpType op) {
  return op == OpType::SEND || op == OpType::RECV || op == OpType::RECV_ANYSOURCE;
}

// ------------------------------------------------------------------ Future

void Future::wait() {
  std::unique_lock<std::mutex> lock(mutex_);
  done_cv_.wait(lock, [this] { return completed_; });
  if (error_) std::rethrow_exception(error_);
}

bool Future::wait_for(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mutex_);
  return done_cv_.wait_for(lock, timeout, [this] { return completed_; });
}

bool Future::completed() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return completed_;
}

bool Future::has_error() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return completed_ && error_ != nullptr;
}

std::exception_ptr Future::exception() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return error_;
}

std::vector<Tensor> Future::value() {
  wait();
  std::lock_guard<std::mutex> lock(mutex_);
  return value_;
}

std::shared_ptr<Future> Future::then(std::function<void(Future&)> cb) {
  auto child = std::make_shared<Future>();
  auto chained = [cb = std::move(cb), child](Future& parent) {
    try {
      cb(parent);
    } catch (...) {
      child->set_error(std::current_exception());
      return;
    }
    if (auto error = parent.exception()) {
      child->set_error(error);
    } else {
      std::vector<Tensor> value;
      {
        std::lock_guard<std::mutex> lock(parent.mutex_);
        value = parent.value_;
      }
      child->mark_completed(std::move(value));
    }
  };
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!completed_) {
      callbacks_.push_back(std::move(chained));
      return child;
    }
  }
  chained(*this);
  return child;
}

bool Future::mark_completed(std::vector<Tensor> value) {
  return complete(std::move(value), nullptr);
}

bool Future::set_error(std::exception_ptr error) { return complete({}, std::move(error)); }

bool Future::complete(std::vector<Tensor> value, std::exception_ptr error) {
  std::vector<std::function<void(Future&)>> callbacks;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (completed_) return false;
    completed_ = true;
    value_ = std::move(value);
    error_ = std::move(error);
    callbacks.swap(callbacks_);
  }
  done_cv_.notify_all();
  // Callbacks run outside the lock so they may use this future freely.
  for (auto& cb : callbacks) cb(*this);
  return true;
}

// -------------------------------------------------------------------- Work

Work::Work(OpType op, std::string description, std::vector<Tensor> outputs)
    : op_(op), description_(std::move(description)), outputs_(std::move(outputs)) {}

Work::Work(OpType op, uint64_t sequence, std::shared_ptr<const std::string> where,
           std::vector<Tensor> outputs)
    : op_(op), sequence_(sequence), where_(std::move(where)), outputs_(std::move(outputs)) {}

const std::string& Work::description() const {
  if (where_) {
    std::call_once(described_, [this] {
      description_ = fmt::format("{} #{} on {}", to_string(op_), sequence_, *where_);
    });
  }
  return description_;
}

Work::~Work() = default;

bool Work::is_completed() {
  if (done_.load(std::memory_order_acquire)) return true;
  expedite();  // a caller that polls is not going to run it in wait()
  std::lock_guard<std::mutex> lock(mutex_);
  return completed_;
}

bool Work::is_success() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return completed_ && error_ == nullptr;
}

std::exception_ptr Work::exception() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return error_;
}

int Work::source_rank() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return source_rank_;
}

std::vector<Tensor> Work::result() {
  std::lock_guard<std::mutex> lock(mutex_);
  return outputs_;
}

bool Work::wait(std::chrono::milliseconds timeout) {
  // The engine decides whether the operation can run here within `timeout`.
  if (!done_.load(std::memory_order_acquire)) help_on_wait(timeout);
  if (spin_.count() > 0 && !done_.load(std::memory_order_acquire)) {
    const auto until = std::chrono::steady_clock::now() + spin_;
    while (!done_.load(std::memory_order_acquire) && std::chrono::steady_clock::now() < until) {
      std::this_thread::yield();
    }
  }
  if (done_.load(std::memory_order_acquire)) {
    // error_ was set before done_ and never changes after.
    if (error_) std::rethrow_exception(error_);
    return true;
  }
  std::unique_lock<std::mutex> lock(mutex_);
  auto done = [this] { return completed_; };
  if (timeout > kNoTimeout) {
    if (!done_cv_.wait_for(lock, timeout, done)) {
      lock.unlock();
      // Finish first, so the engine's reaction to cancel() (an "aborted"
      // completion) cannot win over the timeout the caller is owed.
      if (finish(std::make_exception_ptr(TimeoutError(
              fmt::format("{} timed out after {} ms in Work::wait; the operation was aborted",
                          description(), timeout.count()))))) {
        cancel();
      }
      lock.lock();
      // Another thread may be finishing it (its observer runs first).
      done_cv_.wait(lock, done);
    }
  } else {
    done_cv_.wait(lock, done);
  }
  if (error_) std::rethrow_exception(error_);
  return true;
}

void Work::abort() {
  if (finish(std::make_exception_ptr(
          DistBackendError(fmt::format("{} was aborted by Work::abort()", description()))))) {
    cancel();
  }
}

std::shared_ptr<Future> Work::get_future() {
  std::shared_ptr<Future> future;
  std::vector<Tensor> outputs;
  std::exception_ptr error;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (future_) return future_;
    future_ = std::make_shared<Future>();
    if (!completed_) return future_;
    future = future_;
    outputs = outputs_;
    error = error_;
  }
  if (error) {
    future->set_error(error);
  } else {
    future->mark_completed(std::move(outputs));
  }
  return future;
}

// The observer is set once and kept as long as the work, so a raw pointer
// read under the lock stays good (no reference count traffic per call).
bool Work::finish(std::exception_ptr error) {
  WorkObserver* observer = nullptr;
  uint64_t token = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (completed_ || finishing_) return false;
    finishing_ = true;
    if (observer_ && !observer_notified_) {
      observer_notified_ = true;
      observer = observer_.get();
      token = observer_token_;
    }
  }
  // Before anyone can see the work complete, so that the observer may amend
  // the error (the flight recorder adds the group's root cause).
  if (observer) error = observer->on_finished(token, std::move(error), true);
  std::shared_ptr<Future> future;
  std::vector<Tensor> outputs;
  WorkObserver* late = nullptr;  // attached while this call ran
  {
    std::lock_guard<std::mutex> lock(mutex_);
    completed_ = true;
    error_ = error;
    future = future_;
    if (future) outputs = outputs_;
    if (observer_ && !observer_notified_) {
      observer_notified_ = true;
      late = observer_.get();
      token = observer_token_;
    }
  }
  done_.store(true, std::memory_order_release);
  done_cv_.notify_all();
  if (late) late->on_finished(token, error, false);
  if (future) {
    if (error) {
      future->set_error(std::move(error));
    } else {
      future->mark_completed(std::move(outputs));
    }
  }
  return true;
}

void Work::set_outputs(std::vector<Tensor> outputs) {
  std::lock_guard<std::mutex> lock(mutex_);
  outputs_ = std::move(outputs);
}

// Without the lock: started_ and observer_ptr_ are each written before the
// other is read (sequentially consistent), so at least one of mark_started
// and set_observer sees both and reports the start, and started_reported_
// lets only one of them do it.
void Work::mark_started() {
  if (started_.exchange(true)) return;
  WorkObserver* observer = observer_ptr_.load();
  if (observer && !started_reported_.exchange(true)) observer->on_started(observer_token_);
}

void Work::set_observer(std::shared_ptr<WorkObserver> observer, uint64_t token) {
  if (!observer) return;
  WorkObserver* const raw = observer.get();
  bool started = false;
  bool completed = false;
  std::exception_ptr error;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (observer_) return;
    observer_ = std::move(observer);
    observer_token_ = token;
    observer_ptr_.store(raw);
    started = started_.load();
    // A finish() in progress reports to the observer when it completes.
    if (completed_) {
      observer_notified_ = true;
      completed = true;
      error = error_;
    }
  }
  if (started && !started_reported_.exchange(true)) raw->on_started(token);
  if (completed) raw->on_finished(token, std::move(error), false);
}

void Work::set_source_rank(int rank) {
  std::lock_guard<std::mutex> lock(mutex_);
  source_rank_ = rank;
}

}  // namespace tutti
