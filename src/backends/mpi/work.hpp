// The Work of one MPI operation.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>

#include "backends/mpi/backend.hpp"
#include "core/engine_work.hpp"

namespace tutti::mpi_backend {

class MpiWork : public EngineWork {
 public:
  using EngineWork::EngineWork;

  // For an operation its waiter may run (a polled one, or any collective in
  // inline mode): wait() runs it on the waiting thread when it may, and
  // is_completed() or a timed wait() hands it to the worker (engine.cpp).
  // Call before the work is shared.
  void run_on_waiter(std::weak_ptr<MpiBackend::Core> core, uint64_t sequence) {
    core_ = std::move(core);
    queued_sequence_ = sequence;
  }

 protected:
  void help_on_wait(std::chrono::milliseconds limit) override;
  void expedite() override;

 private:
  std::weak_ptr<MpiBackend::Core> core_;  // empty: the worker runs it
  uint64_t queued_sequence_ = 0;
};

}  // namespace tutti::mpi_backend
