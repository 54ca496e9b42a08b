// The Work of one MPI operation.
#pragma once

#include <chrono>
#include <exception>
#include <functional>
#include <string>
#include <vector>

#include "tutti/work.hpp"

namespace tutti::mpi_backend {

// Completed by the backend through complete(); cancel() runs the hook the
// operation set (cancelling a posted receive).
class MpiWork : public Work {
 public:
  MpiWork(OpType op, std::string description, std::vector<Tensor> outputs)
      : Work(op, std::move(description), std::move(outputs)) {}

  bool complete(std::exception_ptr error = nullptr) { return finish(std::move(error)); }
  void set_spin(std::chrono::microseconds spin) { set_spin_before_sleep(spin); }
  void set_source(int rank) { set_source_rank(rank); }
  void set_cancel(std::function<void()> hook) { cancel_hook_ = std::move(hook); }
  void set_helper(std::function<void()> hook) { helper_ = std::move(hook); }

 protected:
  void cancel() override {
    if (cancel_hook_) cancel_hook_();
  }
  void help_on_wait() override {
    if (helper_) helper_();
  }

 private:
  std::function<void()> cancel_hook_;  // set before the work is shared
  std::function<void()> helper_;       // set before the work is shared
};

}  // namespace tutti::mpi_backend
