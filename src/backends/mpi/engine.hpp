// MpiBackend's engine, shared by backend.cpp (the group: communicators,
// enqueue, posted sends and receives) and engine.cpp (the threads: the
// worker that runs collectives, the waiter that may run them itself, and
// the watchdog that enforces deadlines).
#pragma once

#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "backends/mpi/backend.hpp"
#include "backends/mpi/health.hpp"
#include "backends/mpi/work.hpp"

namespace tutti::mpi_backend {

// Handing an operation between threads through a sleep and a wake-up costs
// more than a small MPI collective, so a waiter polls for its operation's
// end this long (yielding) before it sleeps (the worker polls for the next
// operation likewise, engine.cpp).
inline constexpr std::chrono::microseconds kWaiterSpin{200};

struct MpiBackend::Core {
  using Clock = std::chrono::steady_clock;
  using milliseconds = std::chrono::milliseconds;

  struct Entry {
    std::shared_ptr<MpiWork> work;  // holds the job
    milliseconds timeout{0};
    bool polls = false;      // nonblocking, enforces its own deadline
    bool on_waiter = false;  // may run on its waiter's thread (see enqueue)
    // When it may run on its waiter: in the default mode the time (for its
    // grace), in inline mode the watchdog's tick (a clock read fewer).
    Clock::time_point enqueued_at;
    uint64_t enqueued_tick = 0;
    uint64_t sequence = 0;
    OpType op = OpType::UNKNOWN;
  };
  // A send or receive MPI is carrying out. Only the worker touches
  // `request` after it was posted.
  struct Posted {
    std::shared_ptr<MpiWork> work;
    MPI_Request request = MPI_REQUEST_NULL;
    bool is_recv = false;
    int peer = MPI_ANY_SOURCE;
    milliseconds timeout{0};
    int64_t expected_count = 0;
    Clock::time_point deadline;
    bool abandoned = false;                  // GUARDED_BY(mutex): the work already failed
    std::atomic<bool> cancel_wanted{false};  // a receive to MPI_Cancel
  };
  using Failure = std::pair<std::shared_ptr<MpiWork>, std::exception_ptr>;

  std::mutex mutex;
  std::condition_variable worker_cv;
  std::condition_variable idle_cv;
  std::condition_variable watchdog_cv;
  std::deque<Entry> queue;                      // GUARDED_BY(mutex)
  std::atomic<size_t> queued{0};                // queue.size(), read without the lock
  std::shared_ptr<MpiWork> running;             // GUARDED_BY(mutex)
  Clock::time_point running_deadline;           // GUARDED_BY(mutex)
  milliseconds running_timeout{0};              // GUARDED_BY(mutex)
  bool running_polls = false;                   // GUARDED_BY(mutex): enforces its own deadline
  bool running_on_waiter = false;               // GUARDED_BY(mutex): blocking, on a waiter
  uint64_t running_sequence = 0;                // GUARDED_BY(mutex): also the last one run
  OpType running_op = OpType::UNKNOWN;          // GUARDED_BY(mutex)
  Clock::time_point running_since;              // GUARDED_BY(mutex)
  bool running_stuck = false;                   // GUARDED_BY(mutex): counted by stuck_call_began
  std::vector<std::shared_ptr<Posted>> posted;  // GUARDED_BY(mutex)
  // Collectives and point-to-point calls are numbered apart, so that a
  // collective has the same number on every rank whatever sends it saw.
  uint64_t next_sequence = 0;  // GUARDED_BY(mutex)
  uint64_t next_p2p = 0;       // GUARDED_BY(mutex)
  // Entries up to this sequence number are the worker's at once: their
  // waiter gave up on running them, or a caller wants them started.
  uint64_t handed_through = 0;        // GUARDED_BY(mutex)
  uint64_t watchdog_ticks = 0;        // GUARDED_BY(mutex)
  std::optional<std::string> broken;  // GUARDED_BY(mutex)
  bool stopping = false;              // GUARDED_BY(mutex)
  bool worker_waiting = false;        // GUARDED_BY(mutex): in any wait
  bool worker_idle = false;           // GUARDED_BY(mutex): waiting for work
  bool worker_done = false;           // GUARDED_BY(mutex)
  bool watchdog_stop = false;         // GUARDED_BY(mutex)
  std::thread worker;
  std::thread watchdog;
  // TUTTI_MPI_INLINE: blocking collectives run on their waiter too (see
  // docs/mpi.md, "Inline mode").
  bool inline_mode = false;       // set before the threads start
  MPI_Comm comm = MPI_COMM_NULL;  // the group's, for MPI_Abort
  // Answers the peers' status requests and asks them after a timeout.
  std::unique_ptr<Health> health;

  // What this rank answers a status request with. REQUIRES: lock held.
  RankStatus status_locked() const {
    RankStatus status;
    status.sequence = running_sequence;
    if (broken) {
      status.state = RankStatus::kBroken;
      status.op = running_op;
    } else if (running) {
      status.state = RankStatus::kRunning;
      status.op = running_op;
      status.running_for_ms =
          std::chrono::duration_cast<milliseconds>(Clock::now() - running_since).count();
    }
    return status;
  }

  std::exception_ptr unusable_error(const std::string& what) const {
    return std::make_exception_ptr(DistBackendError(
        fmt::format("{} was not run: the group can no longer be used because {}", what, *broken)));
  }

  static void fail_all(std::vector<Failure>& failures) {
    for (auto& [work, error] : failures) work->complete(error);
    failures.clear();
  }

  // Whether the queue's head is left to its waiter for now. REQUIRES: lock
  // held, queue not empty.
  bool front_left_to_waiter() const {
    const Entry& front = queue.front();
    return front.on_waiter && front.sequence > handed_through && !stopping && !broken;
  }

  // Makes the entries up to `sequence` the worker's. REQUIRES: lock held.
  void hand_over_locked(uint64_t sequence) {
    handed_through = std::max(handed_through, sequence);
    if (worker_waiting) worker_cv.notify_one();
  }

  // Runs `entry` (already taken off the queue) on this thread, the worker or
  // (`on_waiter`) a thread waiting for it. REQUIRES: lock held and nothing
  // running; returns with the lock released.
  void run_locked(Entry& entry, std::unique_lock<std::mutex>& lock, bool on_waiter);

  // On the thread waiting for `target`: runs the queue's head while it may
  // run here, up to and including `target`.
  void help(const MpiWork* target);

  // Whether the worker has an entry to run now. REQUIRES: lock held.
  bool worker_may_run() const {
    return !queue.empty() && !running && (!inline_mode || !front_left_to_waiter());
  }

  void worker_loop();

  // Tests every posted transfer once; completes the finished ones.
  bool poll_p2p();

  void watchdog_loop();
};

}  // namespace tutti::mpi_backend
