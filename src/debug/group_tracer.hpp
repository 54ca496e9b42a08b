// GroupTracer: what a ProcessGroup does for the flight recorder and the root
// cause. Each operation the group issues (after its argument checks) is
// recorded with the group's collective number (point-to-point ops with a
// counter of their own); the tracer then observes its Work to record when it
// starts, completes or fails, without anyone calling wait().
//
// On a failure, before the Work shows it (Work::finish consults its observer
// first, on the thread that completes it), the tracer
//   1. marks the entry failed with the error's type and message,
//   2. dumps the recorder into TUTTI_TRACE_DIR if set (the first failure of
//      each group only, so a storm of failures writes once), and
//   3. publishes or learns the group's root cause (root_cause.hpp) and, if
//      another rank failed first, appends it to the error.
// So every waiter, exception() and the Future see the decorated error, and
// the dump is on disk before the user sees any error. An operation that
// fails before the backend call even returns is recorded and dumped but not
// decorated.
//
// With TUTTI_TRACE_BUFFER=0 the tracer does nothing (no observer is
// attached, so no root cause either).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "debug/flight_recorder.hpp"
#include "debug/root_cause.hpp"
#include "tutti/store.hpp"
#include "tutti/work.hpp"

namespace tutti::trace {

class GroupTracer : public WorkObserver, public std::enable_shared_from_this<GroupTracer> {
 public:
  // Registers the group with the process's recorder and makes sure SIGUSR1
  // dumps it (when the recorder is on).
  static std::shared_ptr<GroupTracer> create(std::shared_ptr<Store> store, int rank, int size,
                                             std::string group_name,
                                             FlightRecorder& recorder = FlightRecorder::global());

  GroupTracer(std::shared_ptr<Store> store, int rank, std::string group_name,
              FlightRecorder& recorder, uint32_t group_index);

  // The next point-to-point number of this group.
  uint64_t next_p2p() { return ++p2p_issued_; }

  // Records the operation, runs `call` (the backend), and observes the Work
  // it returns. A call that throws is recorded as failed and rethrown.
  template <class Call>
  std::shared_ptr<Work> issue(uint64_t seq, const OpInfo& info, Call&& call) {
    const uint64_t id = recorder_.record(group_index_, seq, info);
    if (id == 0) return call();
    std::shared_ptr<Work> work;
    try {
      work = call();
    } catch (...) {
      failed_to_issue(id, std::current_exception());
      throw;
    }
    if (work) work->set_observer(shared_from_this(), id);
    return work;
  }

  // For blocking operations without a Work (monitored_barrier): records,
  // runs, and rethrows a failure decorated like a Work's.
  void run_blocking(uint64_t seq, const OpInfo& info, const std::function<void()>& call);

  void on_started(uint64_t id) noexcept override;
  std::exception_ptr on_finished(uint64_t id, std::exception_ptr error,
                                 bool can_amend) noexcept override;

 private:
  void failed_to_issue(uint64_t id, const std::exception_ptr& error) noexcept;
  // Steps 1-3 above; returns the error to raise.
  std::exception_ptr handle_failure(uint64_t id, std::exception_ptr error, bool can_amend) noexcept;

  const int rank_;
  const std::string group_name_;
  FlightRecorder& recorder_;
  const uint32_t group_index_;
  std::atomic<uint64_t> p2p_issued_{0};
  std::atomic<bool> dumped_{false};
  RootCause root_cause_;
};

// Dumps the process's recorder when SIGUSR1 arrives (into TUTTI_TRACE_DIR,
// else the working directory) and, while TUTTI_TRACE_DIR is set, when
// SIGTERM arrives (then terminates as SIGTERM would). The handlers only write
// a byte to a pipe; a background thread does the dump. Installed once per
// process, and only for signals that still have their default action (a
// program's own handler is kept).
void install_signal_dumps();

}  // namespace tutti::trace
