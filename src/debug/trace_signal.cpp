// SIGUSR1 -> a dump of the flight recorder, from a background thread: the
// handler itself only writes one byte to a pipe (async-signal-safe), so it
// never allocates or takes a lock.
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <mutex>
#include <thread>

#include "core/logging.hpp"
#include "debug/group_tracer.hpp"

namespace tutti::trace {
namespace {

std::atomic<int> g_wake_fd{-1};  // write end of the pipe

extern "C" void on_sigusr1(int) {
  const int saved = errno;
  const int fd = g_wake_fd.load(std::memory_order_relaxed);
  if (fd >= 0) {
    const char byte = 1;
    // Non-blocking: with the pipe full a dump is already pending.
    [[maybe_unused]] const ssize_t n = ::write(fd, &byte, 1);
  }
  errno = saved;
}

// TUTTI_TRACE_DIR, else the working directory.
std::string signal_dump_dir() {
  if (std::string dir = trace_dir_from_env(); !dir.empty()) return dir;
  std::error_code ec;
  std::filesystem::path cwd = std::filesystem::current_path(ec);
  return ec ? std::string(1, '.') : cwd.string();
}

void dump_on_wake(int read_fd) {
  char buffer[64];
  for (;;) {
    const ssize_t n = ::read(read_fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    const std::string dir = signal_dump_dir();
    try {
      const Dump dump = FlightRecorder::global().snapshot("SIGUSR1");
      const std::string path = write_dump(dump, dir);
      TUTTI_LOG(LogLevel::WARNING, dump.rank, "", "SIGUSR1: flight recorder written to {}", path);
    } catch (const std::exception& e) {
      TUTTI_LOG(LogLevel::ERROR, -1, "", "SIGUSR1: {}", e.what());
    }
  }
}

}  // namespace

void install_sigusr1_dump() {
  static std::mutex mutex;
  static pid_t installed_in = 0;  // GUARDED_BY(mutex)
  std::lock_guard<std::mutex> lock(mutex);
  // A forked child inherits the handler and the pipe but not the thread.
  if (installed_in == ::getpid()) return;
  installed_in = ::getpid();
  struct sigaction current {};
  if (::sigaction(SIGUSR1, nullptr, &current) != 0) return;
  const bool ours = current.sa_handler == on_sigusr1;
  if (!ours && current.sa_handler != SIG_DFL) {
    TUTTI_LOG(LogLevel::INFO, -1, "",
              "SIGUSR1 has a handler of the program's own; the flight recorder dumps only "
              "through tutti::dump_trace()");
    return;
  }
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return;
  ::fcntl(fds[1], F_SETFL, ::fcntl(fds[1], F_GETFL) | O_NONBLOCK);
  try {
    std::thread(dump_on_wake, fds[0]).detach();
  } catch (const std::system_error&) {
    ::close(fds[0]);
    ::close(fds[1]);
    return;
  }
  const int old = g_wake_fd.exchange(fds[1]);
  if (old >= 0) ::close(old);  // the parent's pipe, in a forked child
  if (!ours) {
    struct sigaction action {};
    action.sa_handler = on_sigusr1;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    ::sigaction(SIGUSR1, &action, nullptr);
  }
}

}  // namespace tutti::trace
