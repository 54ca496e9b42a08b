// MpiBackend's threads (engine.hpp): the worker that runs collectives, the
// waiting thread that may run them itself, the watchdog that enforces
// deadlines, and the polling of posted sends and receives.
#include "backends/mpi/engine.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstdlib>
#include <ctime>

#include "backends/mpi/runtime.hpp"
#include "core/error_context.hpp"
#include "core/logging.hpp"
#include "tutti/errors.hpp"

namespace tutti::mpi_backend {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// How often the watchdog looks at deadlines: an operation fails at most this
// much after its timeout.
constexpr milliseconds kWatchdogTick{20};
// While sends or receives are posted, the worker tests them back to back for
// this long after the last one completed, then every kPollInterval.
constexpr std::chrono::microseconds kBusyPoll{2000};
constexpr std::chrono::microseconds kPollInterval{200};
// After running an operation, the worker polls this long for the next one
// before it sleeps (see kWaiterSpin for the other side).
constexpr std::chrono::microseconds kWorkerSpin{200};
// An operation that can run on the waiting thread is left this long for its
// waiter before the worker runs it.
constexpr std::chrono::microseconds kInlineGrace{1000};
// The exit code of a job that inline mode ends at a collective's deadline.
constexpr int kInlineTimeoutExitCode = 124;  // as timeout(1)

// steady_clock's time read from the kernel's coarse clock (Linux's
// steady_clock is CLOCK_MONOTONIC, the same epoch): ~6 ns where a precise
// read costs ~27 on a VM, but up to one kernel tick (1-4 ms) behind, so a
// deadline from it adds that tick to be never early. For an operation's
// start, read on every call.
Clock::time_point coarse_now() {
#ifdef CLOCK_MONOTONIC_COARSE
  timespec now{};
  if (clock_gettime(CLOCK_MONOTONIC_COARSE, &now) == 0) {
    return Clock::time_point(std::chrono::seconds(now.tv_sec) +
                             std::chrono::nanoseconds(now.tv_nsec));
  }
#endif
  return Clock::now();
}

// The coarse clock's resolution (one kernel tick), read once.
Clock::duration coarse_tick() {
  static const Clock::duration tick = [] {
#ifdef CLOCK_MONOTONIC_COARSE
    timespec res{};
    if (clock_getres(CLOCK_MONOTONIC_COARSE, &res) == 0) {
      return Clock::duration(std::chrono::seconds(res.tv_sec) +
                             std::chrono::nanoseconds(res.tv_nsec));
    }
#endif
    return Clock::duration::zero();
  }();
  return tick;
}

// The operation the current thread is running, for await_request().
struct Running {
  Clock::time_point deadline;
  milliseconds timeout{0};
};
thread_local Running t_running;

// The exception in flight as a tutti error that starts with `what`.
std::exception_ptr translate_current(const std::string& what) {
  if (auto tutti_error = with_context(what)) return tutti_error;
  try {
    throw;
  } catch (const std::exception& e) {
    return std::make_exception_ptr(DistBackendError(fmt::format("{}: {}", what, e.what())));
  } catch (...) {
    return std::make_exception_ptr(DistBackendError(fmt::format("{}: unknown error", what)));
  }
}

// The TimeoutError text of a collective past its deadline, with what the
// status requests found.
std::string collective_timeout(const std::string& what, milliseconds timeout,
                               const Health::Diagnosis& found) {
  const std::string cause =
      !found.silent.empty()
          ? found.text
          : fmt::format(
                "not every rank of the group reached it, yet every rank answered a status "
                "request ({}): ranks issued collectives in different orders, or one "
                "skipped it",
                found.text.empty() ? "no rank was asked" : found.text);
  return fmt::format(
      "{} timed out after {} ms: {}; MPI cannot cancel a collective, so this group can no "
      "longer be used",
      what, timeout.count(), cause);
}

// Why a group is unusable, for the errors of later operations.
std::string broken_reason(const std::string& what, milliseconds timeout,
                          const Health::Diagnosis& found) {
  if (found.silent.empty()) return fmt::format("{} timed out after {} ms", what, timeout.count());
  return fmt::format("{} timed out after {} ms (rank{} {} did not answer)", what, timeout.count(),
                     found.silent.size() > 1 ? "s" : "", fmt::join(found.silent, ", "));
}

}  // namespace

void MpiBackend::Core::run_locked(Entry& entry, std::unique_lock<std::mutex>& lock,
                                  bool on_waiter) {
  if (broken) {
    auto error = unusable_error(entry.work->description());
    lock.unlock();
    entry.work->complete(error);
    entry = {};
    return;
  }
  // `running` holds the work while it runs (moved, not copied: no reference
  // count traffic); it is alive until moved back below.
  MpiWork* const work = entry.work.get();
  running = std::move(entry.work);
  running_timeout = entry.timeout;
  running_since = coarse_now();
  running_deadline = running_since + coarse_tick() + entry.timeout;
  running_polls = entry.polls;
  running_on_waiter = on_waiter && !entry.polls;
  running_sequence = entry.sequence;
  running_op = entry.op;
  t_running = {running_deadline, entry.timeout};
  lock.unlock();
  work->started();
  std::exception_ptr error;
  bool timed_out = false;
  try {
    work->run_job();
  } catch (const TimeoutError&) {
    timed_out = true;
  } catch (...) {
    error = translate_current(work->description());
  }
  Health::Diagnosis found;
  if (timed_out) {
    // Only here, past the deadline: ask the other ranks what they do.
    RankStatus mine{RankStatus::kBroken, entry.sequence, entry.op, entry.timeout.count()};
    found = health->diagnose(mine, {}, diagnosis_grace(entry.timeout));
    error = std::make_exception_ptr(
        TimeoutError(collective_timeout(work->description(), entry.timeout, found)));
  }
  std::vector<Failure> failures;
  lock.lock();
  entry.work = std::move(running);
  if (running_stuck) {
    running_stuck = false;
    stuck_call_ended();
  }
  if (timed_out && !broken) {
    // The request is still active and MPI cannot cancel it.
    broken = broken_reason(work->description(), entry.timeout, found);
    for (auto& queued_entry : queue) {
      failures.emplace_back(queued_entry.work, unusable_error(queued_entry.work->description()));
    }
  }
  // Decided now, in the same section: one lock per operation fewer. A
  // destructor that starts waiting after this sees the group idle.
  const bool wake_worker = !queue.empty() && worker_waiting;
  const bool wake_destructor = stopping;
  lock.unlock();
  if (wake_worker) worker_cv.notify_one();
  // A no-op when the watchdog failed it first.
  work->complete(error);
  entry = {};
  fail_all(failures);
  if (wake_destructor) {
    // Only once the work is complete: the destructor's caller may look.
    std::lock_guard<std::mutex> hold(mutex);
    idle_cv.notify_all();
  }
}

void MpiBackend::Core::help(const MpiWork* target) {
  std::unique_lock<std::mutex> lock(mutex);
  for (;;) {
    auto it = std::find_if(queue.begin(), queue.end(),
                           [&](const Entry& e) { return e.work.get() == target; });
    if (it == queue.end()) return;  // already run, or running elsewhere
    if (running || !queue.front().on_waiter) {
      // Something ahead runs on the worker; it must not wait for us.
      hand_over_locked(it->sequence);
      return;
    }
    Entry entry = std::move(queue.front());
    queue.pop_front();
    queued.fetch_sub(1, std::memory_order_relaxed);
    const bool mine = entry.work.get() == target;
    run_locked(entry, lock, /*on_waiter=*/true);
    if (mine) return;
    lock.lock();
  }
}

// A timed wait hands the operation to the worker: the queue ahead of it may
// hold blocking collectives, which cannot be bounded.
void MpiWork::help_on_wait(std::chrono::milliseconds limit) {
  auto core = core_.lock();
  if (!core) return;
  if (limit <= kNoTimeout) return core->help(this);
  std::lock_guard<std::mutex> hold(core->mutex);
  core->hand_over_locked(queued_sequence_);
}

void MpiWork::expedite() {
  if (auto core = core_.lock()) {
    std::lock_guard<std::mutex> hold(core->mutex);
    core->hand_over_locked(queued_sequence_);
  }
}

void MpiBackend::Core::worker_loop() {
  std::unique_lock<std::mutex> lock(mutex);
  Clock::time_point last_progress = Clock::now();
  bool ran = false;  // the last thing this thread did was run an entry
  for (;;) {
    if (worker_may_run()) {
      if (front_left_to_waiter()) {
        // Leave it to its waiter for a moment (in inline mode, the
        // watchdog hands it over instead: no timed wait per operation).
        const auto ready = queue.front().enqueued_at + kInlineGrace;
        if (Clock::now() < ready) {
          worker_waiting = true;
          worker_cv.wait_until(lock, ready);
          worker_waiting = false;
          continue;
        }
      }
      Entry entry = std::move(queue.front());
      queue.pop_front();
      queued.fetch_sub(1, std::memory_order_relaxed);
      run_locked(entry, lock, /*on_waiter=*/false);
      lock.lock();
      ran = true;
      continue;
    }
    if (!posted.empty()) {
      lock.unlock();
      if (poll_p2p()) last_progress = Clock::now();
      const bool busy = Clock::now() - last_progress < kBusyPoll;
      if (busy) std::this_thread::yield();
      lock.lock();
      if (!busy && !worker_may_run()) {
        worker_waiting = true;
        worker_cv.wait_for(lock, kPollInterval);
        worker_waiting = false;
      }
      continue;
    }
    if (stopping && queue.empty() && !running) break;
    if (ran && !running) {
      // Back-to-back collectives: look for the next one before sleeping.
      ran = false;
      lock.unlock();
      const auto until = Clock::now() + kWorkerSpin;
      while (queued.load(std::memory_order_acquire) == 0 && Clock::now() < until) {
        std::this_thread::yield();
      }
      lock.lock();
      continue;
    }
    // A send or receive posted during the spin is polled above.
    if (worker_may_run() || !posted.empty()) continue;
    worker_waiting = worker_idle = true;
    worker_cv.wait(lock);
    worker_waiting = worker_idle = false;
    last_progress = Clock::now();
  }
  worker_done = true;
  idle_cv.notify_all();
}

bool MpiBackend::Core::poll_p2p() {
  std::vector<std::shared_ptr<Posted>> snapshot;
  {
    std::lock_guard<std::mutex> lock(mutex);
    snapshot = posted;
  }
  std::vector<std::shared_ptr<Posted>> done;
  for (auto& p : snapshot) {
    int flag = 0;
    MPI_Status status;
    int rc = MPI_SUCCESS;
    {
      CallLock call;
      if (p->cancel_wanted.exchange(false)) MPI_Cancel(&p->request);
      rc = MPI_Test(&p->request, &flag, &status);
    }
    if (rc != MPI_SUCCESS) {
      flag = 1;
      p->request = MPI_REQUEST_NULL;
    }
    if (!flag) continue;
    done.push_back(p);
    std::exception_ptr error;
    int cancelled = 0;
    if (rc == MPI_SUCCESS) MPI_Test_cancelled(&status, &cancelled);
    if (rc != MPI_SUCCESS) {
      error = std::make_exception_ptr(DistBackendError(fmt::format(
          "{} failed: {} (MPI error {})", p->work->description(), error_string(rc), rc)));
    } else if (cancelled) {
      error = std::make_exception_ptr(
          DistBackendError(fmt::format("{} was cancelled", p->work->description())));
    } else if (p->is_recv) {
      int count = 0;
      MPI_Get_count(&status, MPI_BYTE, &count);
      p->work->set_source(status.MPI_SOURCE);
      if (count != p->expected_count) {
        error = std::make_exception_ptr(DistBackendError(
            fmt::format("{} failed: rank {} sent {} bytes, the receiving tensor holds {}",
                        p->work->description(), status.MPI_SOURCE, count, p->expected_count)));
      }
    }
    p->work->complete(error);
  }
  if (!done.empty()) {
    std::lock_guard<std::mutex> lock(mutex);
    std::erase_if(posted, [&](const std::shared_ptr<Posted>& p) {
      return std::find(done.begin(), done.end(), p) != done.end();
    });
  }
  return !done.empty();
}

void MpiBackend::Core::watchdog_loop() {
  std::unique_lock<std::mutex> lock(mutex);
  std::vector<Failure> failures;
  while (!watchdog_stop) {
    watchdog_cv.wait_for(lock, kWatchdogTick);
    {
      const RankStatus mine = status_locked();
      lock.unlock();
      health->serve(mine);
      lock.lock();
    }
    const auto now = Clock::now();
    ++watchdog_ticks;
    if (inline_mode && !running) {
      // Entries nobody waited on for a whole tick (one to two) go to the
      // worker.
      for (const Entry& entry : queue) {
        if (entry.enqueued_tick + 2 > watchdog_ticks) break;
        if (entry.sequence > handed_through) hand_over_locked(entry.sequence);
      }
    }
    if (running && running_on_waiter && !broken && now > running_deadline) {
      // The caller's own thread is inside a collective that will not end,
      // and MPI cannot interrupt it: end the job, saying why.
      const std::string what = running->description();
      const milliseconds timeout = running_timeout;
      broken = fmt::format("{} timed out after {} ms", what, timeout.count());
      const RankStatus mine = status_locked();
      lock.unlock();
      const Health::Diagnosis found = health->diagnose(mine, {}, diagnosis_grace(timeout));
      TUTTI_LOG(LogLevel::ERROR, -1, "",
                "mpi: TimeoutError: {}; inline mode (TUTTI_MPI_INLINE) cannot return it to "
                "the waiting thread, so the job ends (MPI_Abort)",
                collective_timeout(what, timeout, found));
      MPI_Abort(comm, kInlineTimeoutExitCode);
      std::_Exit(kInlineTimeoutExitCode);  // MPI_Abort does not return
    }
    if (running && !running_polls && !running_on_waiter && !broken && now > running_deadline) {
      const std::shared_ptr<MpiWork> late = running;
      const std::string what = late->description();
      const milliseconds timeout = running_timeout;
      broken = fmt::format("{} timed out after {} ms", what, timeout.count());
      running_stuck = true;
      stuck_call_began();
      for (auto& entry : queue) {
        failures.emplace_back(entry.work, unusable_error(entry.work->description()));
      }
      const RankStatus mine = status_locked();
      lock.unlock();
      const Health::Diagnosis found = health->diagnose(mine, {}, diagnosis_grace(timeout));
      late->complete(
          std::make_exception_ptr(TimeoutError(collective_timeout(what, timeout, found))));
      lock.lock();
      broken = broken_reason(what, timeout, found);
      TUTTI_LOG(LogLevel::ERROR, -1, "", "mpi: {}", *broken);
    }
    std::vector<std::shared_ptr<Posted>> late_p2p, to_cancel;
    for (auto& p : posted) {
      if (p->abandoned || now <= p->deadline) continue;
      // Cancelled once its TimeoutError is set (after the diagnosis), so
      // that the cancellation does not complete it first.
      p->abandoned = true;
      late_p2p.push_back(p);
    }
    if (!late_p2p.empty()) {
      // Ask the peers (all ranks for a receive from any) whether they live.
      std::vector<int> peers;
      for (auto& p : late_p2p) {
        if (p->peer == MPI_ANY_SOURCE) {
          peers.clear();
          break;
        }
        if (std::find(peers.begin(), peers.end(), p->peer) == peers.end()) {
          peers.push_back(p->peer);
        }
      }
      const RankStatus mine = status_locked();
      lock.unlock();
      const Health::Diagnosis found =
          health->diagnose(mine, peers, diagnosis_grace(late_p2p.front()->timeout));
      lock.lock();
      for (auto& p : late_p2p) {
        failures.emplace_back(
            p->work, std::make_exception_ptr(TimeoutError(fmt::format(
                         "{} timed out: the peer did not {} in time{}{}", p->work->description(),
                         p->is_recv ? "send a matching message" : "receive the message",
                         found.text.empty() ? "" : "; ", found.text))));
        if (p->is_recv) to_cancel.push_back(p);
      }
    }
    if (!failures.empty()) {
      lock.unlock();
      fail_all(failures);
      for (auto& p : to_cancel) p->cancel_wanted = true;
      worker_cv.notify_all();
      lock.lock();
    }
  }
}

void await_request(MPI_Request* request, const char* call, std::vector<Tensor> buffers) {
  const Running running = t_running;
  for (;;) {
    int flag = 0;
    {
      CallLock lock;
      check(MPI_Test(request, &flag, MPI_STATUS_IGNORE), call);
    }
    if (flag) return;
    if (Clock::now() > running.deadline) {
      abandon_request(*request, std::move(buffers));
      throw TimeoutError(fmt::format(
          "timed out after {} ms in {}: not every rank of the group reached it (a rank may be "
          "stalled, or ranks issued collectives in different orders); MPI cannot cancel a "
          "collective, so this group can no longer be used",
          running.timeout.count(), call));
    }
  }
}

}  // namespace tutti::mpi_backend
