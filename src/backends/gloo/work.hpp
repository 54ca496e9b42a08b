// The Work of one gloo operation, and the translation of gloo's exceptions.
#pragma once

#include <chrono>
#include <exception>
#include <functional>
#include <string>

#include "tutti/work.hpp"

namespace tutti::gloo_backend {

// A Work the backend completes through complete(); cancel() runs the hook
// given by the operation (e.g. aborting a pending transfer).
class GlooWork : public Work {
 public:
  GlooWork(OpType op, std::string description, std::vector<Tensor> outputs,
           std::chrono::milliseconds timeout)
      : Work(op, std::move(description), std::move(outputs)), timeout_(timeout) {}

  std::chrono::milliseconds timeout() const { return timeout_; }
  void set_cancel(std::function<void()> hook) { cancel_hook_ = std::move(hook); }
  void set_helper(std::function<void()> hook) { helper_ = std::move(hook); }
  bool complete(std::exception_ptr error = nullptr) { return finish(std::move(error)); }
  void set_result(std::vector<Tensor> outputs) { set_outputs(std::move(outputs)); }
  void set_source(int rank) { set_source_rank(rank); }
  // Completes the work with `error` and stops its transfer.
  void fail_and_cancel(std::exception_ptr error) {
    if (finish(std::move(error))) cancel();
  }

 protected:
  void cancel() override {
    if (cancel_hook_) cancel_hook_();
  }
  void help_on_wait() override {
    if (helper_) helper_();
  }

 private:
  const std::chrono::milliseconds timeout_;
  std::function<void()> cancel_hook_;  // set before the work is shared
  std::function<void()> helper_;       // set before the work is shared
};

// what() of an exception_ptr, for logs.
std::string message_of(const std::exception_ptr& error);

// Wraps the exception in flight (call from a catch block) as a tutti error
// whose message starts with `what` ("allreduce #3 on group 'default' rank
// 1/2"): gloo timeouts become TimeoutError, other gloo I/O failures
// DistNetworkError, tutti errors keep their type, anything else
// DistBackendError.
std::exception_ptr translate_current_exception(const std::string& what,
                                               std::chrono::milliseconds timeout);

}  // namespace tutti::gloo_backend
