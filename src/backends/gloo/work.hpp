// The Work of one gloo operation, and the translation of gloo's exceptions.
#pragma once

#include <chrono>
#include <exception>
#include <memory>
#include <string>

#include "core/engine_work.hpp"

namespace tutti::gloo_backend {

class GlooBackend;

// A Work of the gloo engine, with the timeout its operation runs under.
class GlooWork : public EngineWork {
 public:
  GlooWork(OpType op, std::string description, std::vector<Tensor> outputs,
           std::chrono::milliseconds timeout)
      : EngineWork(op, std::move(description), std::move(outputs)), timeout_(timeout) {}
  // With a description formatted only when asked for (see Work).
  GlooWork(OpType op, uint64_t sequence, std::shared_ptr<const std::string> where,
           std::vector<Tensor> outputs, std::chrono::milliseconds timeout)
      : EngineWork(op, sequence, std::move(where), std::move(outputs)), timeout_(timeout) {}

  std::chrono::milliseconds timeout() const { return timeout_; }

  // A queued collective: wait() may run it on the waiting thread, and
  // is_completed() hands it to the workers at once (backend.cpp). Call
  // before the work is shared.
  void run_on_waiter(std::weak_ptr<GlooBackend> backend) { backend_ = std::move(backend); }

 protected:
  void help_on_wait(std::chrono::milliseconds limit) override;
  void expedite() override;

 private:
  const std::chrono::milliseconds timeout_;
  std::weak_ptr<GlooBackend> backend_;  // empty: only the workers run it
};

// Wraps the exception in flight (call from a catch block) as a tutti error
// whose message starts with `what` ("allreduce #3 on group 'default' rank
// 1/2"): gloo timeouts become TimeoutError, other gloo I/O failures
// DistNetworkError, tutti errors keep their type, anything else
// DistBackendError.
std::exception_ptr translate_current_exception(const std::string& what,
                                               std::chrono::milliseconds timeout);

}  // namespace tutti::gloo_backend
