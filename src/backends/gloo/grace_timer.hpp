// The alarm that hands an unwaited operation to a worker thread.
//
// A queued collective is left for the thread that waits on it to run
// (Work::wait); a worker runs it only if nobody has after a grace period.
// Waking a sleeping worker for every operation, only for it to find the
// operation taken, cost two context switches per operation on each rank.
// Instead the queue arms this timer (a timerfd: one system call, no
// wake-up) when an operation becomes the head of the queue, and idle workers
// sleep on it: they wake when an operation may have waited its grace, or to
// stop. The queue mostly leaves it armed when it empties (see
// GlooBackend::pop_head).
#pragma once

#include <chrono>

namespace tutti::gloo_backend {

class GraceTimer {
 public:
  using Clock = std::chrono::steady_clock;

  // Throws DistBackendError if the timer cannot be made.
  GraceTimer();
  ~GraceTimer();
  GraceTimer(const GraceTimer&) = delete;
  GraceTimer& operator=(const GraceTimer&) = delete;

  // Fires at `when` (steady clock), replacing any earlier setting.
  void arm(Clock::time_point when);
  // Unsets the timer: it does not fire until armed again.
  void disarm();
  // Wakes every wait(), now and from then on.
  void stop();
  // Blocks until the timer fires or stop() is called. May return early
  // (callers re-check their state).
  void wait();

 private:
  int timer_fd_ = -1;
  int stop_fd_ = -1;
};

}  // namespace tutti::gloo_backend
