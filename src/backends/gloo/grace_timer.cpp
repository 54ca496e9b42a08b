#include "backends/gloo/grace_timer.hpp"

#include <fmt/format.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <ctime>

#include "tutti/errors.hpp"

namespace tutti::gloo_backend {
namespace {

// CLOCK_MONOTONIC is what std::chrono::steady_clock reads on Linux.
timespec monotonic(GraceTimer::Clock::time_point when) {
  const auto ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(when.time_since_epoch()).count();
  timespec ts{};
  // 0 would disarm the timer; a time in the past fires at once.
  ts.tv_sec = static_cast<time_t>(ns / 1000000000);
  ts.tv_nsec = static_cast<long>(ns % 1000000000);
  if (ts.tv_sec == 0 && ts.tv_nsec == 0) ts.tv_nsec = 1;
  return ts;
}

void drain(int fd) {
  uint64_t count = 0;
  [[maybe_unused]] ssize_t n = ::read(fd, &count, sizeof count);
}

}  // namespace

GraceTimer::GraceTimer() {
  timer_fd_ = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  stop_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (timer_fd_ < 0 || stop_fd_ < 0) {
    const int error = errno;
    if (timer_fd_ >= 0) ::close(timer_fd_);
    if (stop_fd_ >= 0) ::close(stop_fd_);
    throw DistBackendError(
        fmt::format("gloo: cannot create the worker timer: {}", std::strerror(error)));
  }
}

GraceTimer::~GraceTimer() {
  ::close(timer_fd_);
  ::close(stop_fd_);
}

void GraceTimer::arm(Clock::time_point when) {
  itimerspec spec{};
  spec.it_value = monotonic(when);
  ::timerfd_settime(timer_fd_, TFD_TIMER_ABSTIME, &spec, nullptr);
}

void GraceTimer::disarm() {
  itimerspec spec{};
  ::timerfd_settime(timer_fd_, 0, &spec, nullptr);
}

void GraceTimer::stop() {
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(stop_fd_, &one, sizeof one);
}

void GraceTimer::wait() {
  pollfd fds[2] = {{timer_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
  if (::poll(fds, 2, -1) <= 0) return;  // EINTR: the caller re-checks
  // The stop event stays readable so that every waiter sees it.
  if (fds[0].revents & POLLIN) drain(timer_fd_);
}

}  // namespace tutti::gloo_backend
