// MpiBackend's machinery: communicators, the worker that runs collectives,
// the watchdog that enforces deadlines, and posted sends and receives.
#include "backends/mpi/backend.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>

#include "backends/mpi/health.hpp"
#include "backends/mpi/runtime.hpp"
#include "backends/mpi/work.hpp"
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
// Handing an operation between threads through a sleep and a wake-up costs
// more than a small MPI collective, so both sides poll briefly first: the
// worker for the next operation, a waiter for its operation's end.
constexpr std::chrono::microseconds kWorkerSpin{200};
constexpr std::chrono::microseconds kWaiterSpin{200};
// An operation that can run on the waiting thread is left this long for its
// waiter before the worker runs it.
constexpr std::chrono::microseconds kInlineGrace{1000};
// The exit code of a job that inline mode ends at a collective's deadline.
constexpr int kInlineTimeoutExitCode = 124;  // as timeout(1)

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

void set_errors_return(MPI_Comm comm) {
  check(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
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

// TUTTI_MPI_INLINE=1: see docs/mpi.md, "Inline mode".
bool inline_mode_from_env() {
  const char* value = std::getenv("TUTTI_MPI_INLINE");
  return value != nullptr && std::string(value) == "1";
}

int finalized() {
  int done = 0;
  MPI_Finalized(&done);
  return done;
}

}  // namespace

struct MpiBackend::Core {
  struct Entry {
    std::shared_ptr<MpiWork> work;
    Job job;
    milliseconds timeout{0};
    bool polls = false;      // nonblocking, enforces its own deadline
    bool on_waiter = false;  // may run on its waiter's thread (see enqueue)
    Clock::time_point enqueued_at;
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
  // running; returns with the lock held.
  void run_locked(Entry& entry, std::unique_lock<std::mutex>& lock, bool on_waiter) {
    if (broken) {
      auto error = unusable_error(entry.work->description());
      lock.unlock();
      entry.work->complete(error);
      entry = {};
      lock.lock();
      return;
    }
    running = entry.work;
    running_timeout = entry.timeout;
    running_since = Clock::now();
    running_deadline = running_since + entry.timeout;
    running_polls = entry.polls;
    running_on_waiter = on_waiter && !entry.polls;
    running_sequence = entry.sequence;
    running_op = entry.op;
    t_running = {running_deadline, entry.timeout};
    lock.unlock();
    entry.work->started();
    std::exception_ptr error;
    bool timed_out = false;
    try {
      entry.job();
    } catch (const TimeoutError&) {
      timed_out = true;
    } catch (...) {
      error = translate_current(entry.work->description());
    }
    Health::Diagnosis found;
    if (timed_out) {
      // Only here, past the deadline: ask the other ranks what they do.
      RankStatus mine{RankStatus::kBroken, entry.sequence, entry.op, entry.timeout.count()};
      found = health->diagnose(mine, {}, diagnosis_grace(entry.timeout));
      error = std::make_exception_ptr(
          TimeoutError(collective_timeout(entry.work->description(), entry.timeout, found)));
    }
    std::vector<Failure> failures;
    lock.lock();
    running.reset();
    if (running_stuck) {
      running_stuck = false;
      stuck_call_ended();
    }
    if (timed_out && !broken) {
      // The request is still active and MPI cannot cancel it.
      broken = broken_reason(entry.work->description(), entry.timeout, found);
      for (auto& queued_entry : queue) {
        failures.emplace_back(queued_entry.work, unusable_error(queued_entry.work->description()));
      }
    }
    lock.unlock();
    // A no-op when the watchdog failed it first.
    entry.work->complete(error);
    entry = {};
    fail_all(failures);
    lock.lock();
    if (stopping) idle_cv.notify_all();
    if (!queue.empty() && worker_waiting) worker_cv.notify_one();
  }

  // On the thread waiting for `target`: runs the queue's head while it may
  // run here, up to and including `target`.
  void help(const MpiWork* target) {
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
    }
  }

  // Whether the worker has an entry to run now. REQUIRES: lock held.
  bool worker_may_run() const {
    return !queue.empty() && !running && (!inline_mode || !front_left_to_waiter());
  }

  void worker_loop() {
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

  // Tests every posted transfer once; completes the finished ones.
  bool poll_p2p() {
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

  void watchdog_loop() {
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
      if (inline_mode && !running) {
        // Entries nobody waited on for a tick go to the worker.
        for (const Entry& entry : queue) {
          if (entry.enqueued_at + kWatchdogTick > now) break;
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
};

MpiBackend::MpiBackend(MPI_Comm comm, int rank, int size, std::string group_name,
                       milliseconds timeout)
    : Backend(rank, size),
      group_name_(std::move(group_name)),
      where_(std::make_shared<const std::string>(
          fmt::format("group '{}' rank {}/{} (mpi)", group_name_, rank, size))),
      timeout_(timeout),
      comm_(comm),
      core_(std::make_shared<Core>()) {
  {
    CallLock call;
    set_errors_return(comm_);
    check(MPI_Comm_dup(comm_, &control_comm_), "MPI_Comm_dup");
    set_errors_return(control_comm_);
    int flag = 0;
    int* tag_ub = nullptr;
    MPI_Comm_get_attr(comm_, MPI_TAG_UB, static_cast<void*>(&tag_ub), &flag);
    if (flag && tag_ub != nullptr) tag_ub_ = *tag_ub;
    // Inline mode changes which calls small operations make (blocking, not
    // nonblocking), so it is used only when every rank asks for it.
    const int asks[2] = {inline_mode_from_env() ? 1 : 0, inline_mode_from_env() ? 0 : 1};
    int all[2] = {0, 0};  // {every rank asks, no rank asks} as MIN
    check(MPI_Allreduce(asks, all, 2, MPI_INT, MPI_MIN, comm_), "MPI_Allreduce (TUTTI_MPI_INLINE)");
    inline_mode_ = all[0] == 1;
    if (!inline_mode_ && all[1] == 0 && rank == 0) {
      TUTTI_LOG(LogLevel::WARNING, rank, group_name_,
                "mpi: TUTTI_MPI_INLINE=1 is set on some ranks only; the group runs in the "
                "default mode");
    }
  }
  core_->health = std::make_unique<Health>(control_comm_, rank, size);
  core_->comm = comm_;
  core_->inline_mode = inline_mode_;
  auto core = core_;
  core_->worker = std::thread([core] { core->worker_loop(); });
  core_->watchdog = std::thread([core] { core->watchdog_loop(); });
  TUTTI_LOG(LogLevel::INFO, rank, group_name_, "mpi: group of {} ranks ready (MPI thread level {})",
            size, thread_multiple() ? "multiple" : "serialized");
}

MpiBackend::~MpiBackend() {
  auto& core = *core_;
  std::vector<std::shared_ptr<Core::Posted>> pending;
  bool stuck = false;
  {
    std::unique_lock<std::mutex> lock(core.mutex);
    core.stopping = true;
    core.worker_cv.notify_all();
    // Queued collectives still run: the other ranks expect them. Each is
    // bounded by its deadline.
    core.idle_cv.wait(
        lock, [&] { return (core.queue.empty() && !core.running) || core.broken.has_value(); });
    stuck = core.running != nullptr;
    pending.swap(core.posted);
    core.watchdog_stop = true;
    core.worker_cv.notify_all();
  }
  core.watchdog_cv.notify_all();
  for (auto& p : pending) {
    p->work->complete(std::make_exception_ptr(DistBackendError(fmt::format(
        "{} did not complete: its process group was destroyed", p->work->description()))));
  }
  if (!finalized()) {
    CallLock call;
    for (auto& p : pending) {
      if (p->request == MPI_REQUEST_NULL) continue;
      if (p->is_recv) MPI_Cancel(&p->request);
      MPI_Request_free(&p->request);
    }
  }
  core.watchdog.join();
  if (!finalized()) core.health->close();
  if (stuck) {
    // The worker is inside a collective that will never end; it holds only
    // the shared core and values it copied.
    core.worker.detach();
    TUTTI_LOG(LogLevel::WARNING, rank(), group_name_,
              "mpi: destroyed with a collective stuck in MPI ({}); its thread is left behind",
              core.broken.value_or("timed out"));
    return;
  }
  core.worker.join();
  if (!finalized()) {
    CallLock call;
    MPI_Comm_free(&control_comm_);
    MPI_Comm comm = comm_;
    MPI_Comm_free(&comm);
  }
}

std::shared_ptr<MpiBackend> MpiBackend::create_world(const BackendConfig& config) {
  ensure_initialized();
  int rank = -1, size = -1;
  MPI_Comm comm = MPI_COMM_NULL;
  {
    CallLock call;
    check(MPI_Comm_rank(MPI_COMM_WORLD, &rank), "MPI_Comm_rank");
    check(MPI_Comm_size(MPI_COMM_WORLD, &size), "MPI_Comm_size");
    if (rank != config.rank || size != config.size) {
      throw InvalidArgument(fmt::format(
          "backend 'mpi' makes a group over all of MPI_COMM_WORLD, where this process is rank "
          "{} of {}; the group '{}' asks for rank {} of {}. Create the group with "
          "init_process_group(backend=\"mpi\") under mpirun, and smaller groups with new_group",
          rank, size, config.group_name, config.rank, config.size));
    }
    check(MPI_Comm_dup(MPI_COMM_WORLD, &comm), "MPI_Comm_dup(MPI_COMM_WORLD)");
  }
  return std::make_shared<MpiBackend>(comm, rank, size, config.group_name, config.timeout);
}

std::shared_ptr<Backend> MpiBackend::create_subgroup(const std::vector<int>& ranks,
                                                     const BackendConfig& config) {
  auto result = std::make_shared<MPI_Comm>(MPI_COMM_NULL);
  const MPI_Comm parent = comm_;
  auto work = enqueue(OpType::UNKNOWN, kUnsetTimeout, {}, [parent, ranks, result] {
    CallLock call;
    MPI_Group parent_group = MPI_GROUP_NULL, group = MPI_GROUP_NULL;
    check(MPI_Comm_group(parent, &parent_group), "MPI_Comm_group");
    check(MPI_Group_incl(parent_group, static_cast<int>(ranks.size()), ranks.data(), &group),
          "MPI_Group_incl");
    const int rc = MPI_Comm_create(parent, group, result.get());
    MPI_Group_free(&group);
    MPI_Group_free(&parent_group);
    check(rc, "MPI_Comm_create");
  });
  work->wait();
  if (*result == MPI_COMM_NULL) return nullptr;
  int rank = -1, size = -1;
  {
    CallLock call;
    check(MPI_Comm_rank(*result, &rank), "MPI_Comm_rank");
    check(MPI_Comm_size(*result, &size), "MPI_Comm_size");
  }
  if (rank != config.rank || size != config.size) {
    throw DistBackendError(
        fmt::format("mpi: MPI_Comm_create gave rank {} of {} for subgroup '{}', expected {} of {}",
                    rank, size, config.group_name, config.rank, config.size));
  }
  return std::make_shared<MpiBackend>(*result, rank, size, config.group_name, config.timeout);
}

bool MpiBackend::supports(OpType op) const {
  return op != OpType::ALLREDUCE_SPARSE && op != OpType::UNKNOWN;
}

std::shared_ptr<Work> MpiBackend::enqueue(OpType op, milliseconds timeout,
                                          std::vector<Tensor> outputs, Job job, bool polls) {
  auto& core = *core_;
  std::unique_lock<std::mutex> lock(core.mutex);
  const uint64_t sequence = ++core.next_sequence;
  auto work =
      op == OpType::UNKNOWN
          ? std::make_shared<MpiWork>(op, fmt::format("new_group #{} on {}", sequence, *where_),
                                      std::move(outputs))
          : std::make_shared<MpiWork>(op, sequence, where_, std::move(outputs));
  work->set_spin(kWaiterSpin);
  if (core.broken) {
    auto error = core.unusable_error(work->description());
    lock.unlock();
    work->complete(error);
    return work;
  }
  const bool on_waiter = polls || core.inline_mode;
  if (on_waiter) {
    std::weak_ptr<Core> weak_core = core_;
    const MpiWork* target = work.get();
    // A timed wait hands the operation to the worker: the queue ahead of
    // `target` may hold blocking collectives, which cannot be bounded.
    work->set_helper([weak_core, target, sequence](std::chrono::milliseconds limit) {
      auto c = weak_core.lock();
      if (!c) return;
      if (limit <= kNoTimeout) return c->help(target);
      std::lock_guard<std::mutex> hold(c->mutex);
      c->hand_over_locked(sequence);
    });
    work->set_expediter([weak_core, sequence] {
      if (auto c = weak_core.lock()) {
        std::lock_guard<std::mutex> hold(c->mutex);
        c->hand_over_locked(sequence);
      }
    });
  }
  Core::Entry entry;
  entry.work = work;
  entry.job = std::move(job);
  entry.timeout = resolve(timeout);
  entry.polls = polls;
  entry.on_waiter = on_waiter;
  entry.enqueued_at = Clock::now();
  entry.sequence = sequence;
  entry.op = op;
  core.queue.push_back(std::move(entry));
  core.queued.fetch_add(1, std::memory_order_release);
  // An entry left to its waiter first needs the worker woken only when it
  // sleeps with nothing to time out on; in inline mode the watchdog hands
  // it over instead.
  const bool wake = core.inline_mode ? false : (on_waiter ? core.worker_idle : core.worker_waiting);
  lock.unlock();
  if (wake) core.worker_cv.notify_one();
  return work;
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

std::shared_ptr<Work> MpiBackend::post_p2p(OpType op, const Tensor& tensor, int peer, int tag) {
  auto& core = *core_;
  const bool is_recv = op != OpType::SEND;
  uint64_t number = 0;
  {
    std::lock_guard<std::mutex> lock(core.mutex);
    number = ++core.next_p2p;
  }
  const std::string peer_text =
      peer == MPI_ANY_SOURCE ? std::string("any rank") : fmt::format("rank {}", peer);
  auto work = std::make_shared<MpiWork>(
      op,
      fmt::format("{} {} {} (tag {}) #{} on group '{}' rank {}/{} (mpi)", to_string(op),
                  is_recv ? "from" : "to", peer_text, tag, number, group_name_, rank(), size()),
      is_recv ? std::vector<Tensor>{tensor} : std::vector<Tensor>{});
  if (tag < 0) {
    throw InvalidArgument(fmt::format("{}: tag {} is negative", work->description(), tag));
  }
  auto posted = std::make_shared<Core::Posted>();
  posted->work = work;
  posted->is_recv = is_recv;
  posted->expected_count = static_cast<int64_t>(tensor.nbytes());
  posted->peer = peer;
  posted->timeout = timeout_;
  posted->deadline = Clock::now() + timeout_;
  const int64_t count = tensor.numel();
  if (count > INT32_MAX) {
    throw InvalidArgument(fmt::format("{}: {} elements exceed MPI's count limit of {}",
                                      work->description(), count, INT32_MAX));
  }
  {
    CallLock call;
    if (tag > tag_ub_) {
      throw InvalidArgument(fmt::format("{}: tag {} is above this MPI's largest tag, {}",
                                        work->description(), tag, tag_ub_));
    }
    void* data = const_cast<void*>(tensor.data_ptr());
    const MPI_Datatype type = datatype(tensor.dtype());
    const int rc =
        is_recv
            ? MPI_Irecv(data, static_cast<int>(count), type, peer, tag, comm_, &posted->request)
            : MPI_Isend(data, static_cast<int>(count), type, peer, tag, comm_, &posted->request);
    check(rc, work->description());
  }
  work->started();
  // abort(): a receive is cancelled; a send can only be abandoned.
  std::weak_ptr<Core::Posted> weak = posted;
  std::weak_ptr<Core> weak_core = core_;
  work->set_cancel([weak, weak_core] {
    auto p = weak.lock();
    auto c = weak_core.lock();
    if (!p || !c) return;
    {
      std::lock_guard<std::mutex> lock(c->mutex);
      p->abandoned = true;
    }
    if (p->is_recv) p->cancel_wanted = true;
    c->worker_cv.notify_all();
  });
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(core.mutex);
    core.posted.push_back(posted);
    wake = core.worker_waiting;
  }
  if (wake) core.worker_cv.notify_one();
  return work;
}

std::shared_ptr<Work> MpiBackend::send(std::vector<Tensor>& tensors, int dst_rank, int tag) {
  return post_p2p(OpType::SEND, tensors.at(0), dst_rank, tag);
}

std::shared_ptr<Work> MpiBackend::recv(std::vector<Tensor>& tensors, int src_rank, int tag) {
  return post_p2p(OpType::RECV, tensors.at(0), src_rank, tag);
}

std::shared_ptr<Work> MpiBackend::recv_anysource(std::vector<Tensor>& tensors, int tag) {
  return post_p2p(OpType::RECV_ANYSOURCE, tensors.at(0), MPI_ANY_SOURCE, tag);
}

}  // namespace tutti::mpi_backend
