// The Work of one MPI operation; MpiJobWork also holds the job that runs a
// collective, so that queueing one costs a single allocation.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

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

  // Runs the collective's job (MpiJobWork); a posted send or receive has
  // none.
  virtual void run_job() {}

 protected:
  void help_on_wait(std::chrono::milliseconds limit) override;
  void expedite() override;

 private:
  std::weak_ptr<MpiBackend::Core> core_;  // empty: the worker runs it
  uint64_t queued_sequence_ = 0;
};

// A collective's Work with its job: blocking (or polled) MPI calls on the
// group's communicator, run once by whichever thread takes it off the queue.
template <class Job>
class MpiJobWork final : public MpiWork {
 public:
  template <class... Args>
  explicit MpiJobWork(Job job, Args&&... args)
      : MpiWork(std::forward<Args>(args)...), job_(std::move(job)) {}

  // Releases what the job holds (tensors) once it ran. A job that takes a
  // std::vector<Tensor>& gets the work's outputs (the tensors it writes),
  // so that it need not hold copies of them.
  void run_job() override {
    struct Release {
      std::optional<Job>& job;
      ~Release() { job.reset(); }
    } release{job_};
    if constexpr (std::is_invocable_v<Job&, std::vector<Tensor>&>) {
      (*job_)(output_tensors());
    } else {
      (*job_)();
    }
  }

 private:
  std::optional<Job> job_;
};

// Defined here, where MpiJobWork is complete: the work is made under the
// queue's lock, once the operation's sequence number is known.
template <class Job>
std::shared_ptr<Work> MpiBackend::enqueue(OpType op, std::chrono::milliseconds timeout,
                                          std::vector<Tensor> outputs, Job job, bool polls) {
  auto make = [&](uint64_t sequence) -> std::shared_ptr<MpiWork> {
    if (op == OpType::UNKNOWN) {
      return std::make_shared<MpiJobWork<Job>>(std::move(job), op, describe_internal(sequence),
                                               std::move(outputs));
    }
    return std::make_shared<MpiJobWork<Job>>(std::move(job), op, sequence, where_,
                                             std::move(outputs));
  };
  return submit(
      op, timeout, polls,
      [](void* maker, uint64_t sequence) {
        return (*static_cast<decltype(make)*>(maker))(sequence);
      },
      &make);
}

}  // namespace tutti::mpi_backend
