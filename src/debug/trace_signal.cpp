// Signals -> a dump of the flight recorder, from a background thread: the
// handlers only write one byte to a pipe (async-signal-safe), so they never
// allocate or take a lock.
//
// SIGUSR1 dumps and the process goes on. SIGTERM (handled only while
// TUTTI_TRACE_DIR is set) dumps and then terminates the process as SIGTERM
// would have: launchers such as tuttirun stop the surviving ranks with
// SIGTERM as soon as one rank dies, often before the survivors' own
// operations fail, and the dumps of those survivors are what tutti-trace
// needs.
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <mutex>
#include <thread>

#include "core/logging.hpp"
#include "debug/group_tracer.hpp"

namespace tutti::trace {
namespace {

constexpr char kUsr1 = 1;
constexpr char kTerm = 2;

std::atomic<int> g_wake_fd{-1};  // write end of the pipe

void wake(char byte) {
  const int saved = errno;
  const int fd = g_wake_fd.load(std::memory_order_relaxed);
  // Non-blocking: with the pipe full a dump is already pending.
  if (fd >= 0) [[maybe_unused]]
    const ssize_t n = ::write(fd, &byte, 1);
  errno = saved;
}

extern "C" void on_sigusr1(int) { wake(kUsr1); }
extern "C" void on_sigterm(int) { wake(kTerm); }

// TUTTI_TRACE_DIR, else the working directory.
std::string signal_dump_dir() {
  if (std::string dir = trace_dir_from_env(); !dir.empty()) return dir;
  std::error_code ec;
  std::filesystem::path cwd = std::filesystem::current_path(ec);
  return ec ? std::string(1, '.') : cwd.string();
}

void dump_for(const char* signal_name) {
  try {
    const Dump dump = FlightRecorder::global().snapshot(signal_name);
    const std::string path = write_dump(dump, signal_dump_dir());
    TUTTI_LOG(LogLevel::WARNING, dump.rank, "", "{}: flight recorder written to {}", signal_name,
              path);
  } catch (const std::exception& e) {
    TUTTI_LOG(LogLevel::ERROR, -1, "", "{}: {}", signal_name, e.what());
  }
}

void dump_on_wake(int read_fd) {
  char buffer[64];
  for (;;) {
    const ssize_t n = ::read(read_fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    const bool terminate = std::find(buffer, buffer + n, kTerm) != buffer + n;
    dump_for(terminate ? "SIGTERM" : "SIGUSR1");
    if (terminate) {
      ::signal(SIGTERM, SIG_DFL);
      ::kill(::getpid(), SIGTERM);
      return;
    }
  }
}

// Installs `handler` for `signo` if the signal still has its default action
// (a program's own handler is kept). Returns whether it did.
bool take_over(int signo, void (*handler)(int)) {
  struct sigaction current {};
  if (::sigaction(signo, nullptr, &current) != 0) return false;
  if (current.sa_handler == handler) return true;  // a forked child inherits it
  if (current.sa_handler != SIG_DFL) return false;
  struct sigaction action {};
  action.sa_handler = handler;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  return ::sigaction(signo, &action, nullptr) == 0;
}

}  // namespace

void install_signal_dumps() {
  static std::mutex mutex;
  static pid_t installed_in = 0;  // GUARDED_BY(mutex)
  std::lock_guard<std::mutex> lock(mutex);
  // A forked child inherits the handlers and the pipe but not the thread.
  if (installed_in == ::getpid()) return;
  installed_in = ::getpid();
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
  if (!take_over(SIGUSR1, on_sigusr1)) {
    TUTTI_LOG(LogLevel::INFO, -1, "",
              "SIGUSR1 has a handler of the program's own; the flight recorder dumps only "
              "through tutti::dump_trace()");
  }
  if (!trace_dir_from_env().empty()) take_over(SIGTERM, on_sigterm);
}

}  // namespace tutti::trace
