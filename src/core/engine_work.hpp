// EngineWork: the Work a backend's engine completes from its own threads,
// with the hook an engine sets before it shares the work: what abort() and
// a timed-out wait() should stop (cancel). An engine whose waiting thread
// may run the operation itself overrides Work::help_on_wait and
// Work::expedite in a subclass (GlooWork, MpiWork): no closure per
// operation.
#pragma once

#include <chrono>
#include <exception>
#include <functional>
#include <string>
#include <vector>

#include "tutti/work.hpp"

namespace tutti {

class EngineWork : public Work {
 public:
  using Work::Work;

  bool complete(std::exception_ptr error = nullptr) { return finish(std::move(error)); }
  // Completes the work with `error` and stops its transfer.
  void fail_and_cancel(std::exception_ptr error) {
    if (finish(std::move(error))) cancel();
  }
  void set_result(std::vector<Tensor> outputs) { set_outputs(std::move(outputs)); }
  void set_source(int rank) { set_source_rank(rank); }
  void started() { mark_started(); }
  void set_spin(std::chrono::microseconds spin) { set_spin_before_sleep(spin); }
  void set_cancel(std::function<void()> hook) { cancel_hook_ = std::move(hook); }

 protected:
  void cancel() override {
    if (cancel_hook_) cancel_hook_();
  }

 private:
  std::function<void()> cancel_hook_;  // set before the work is shared
};

}  // namespace tutti
