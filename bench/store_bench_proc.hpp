// Forked processes and pipes for store_bench: every store server and client
// runs in a child process of its own, so a benchmark run never shares a
// thread (or a CPU scheduler slot) with the parent that times it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

namespace store_bench {

using Clock = std::chrono::steady_clock;

// Nanoseconds on CLOCK_MONOTONIC (steady_clock on Linux), which every
// process on the machine shares, so children can report instants the parent
// compares with its own.
int64_t now_ns();

// Both ends of a pipe; closed on destruction.
class Pipe {
 public:
  Pipe();
  ~Pipe();
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;
  int read_fd() const { return fds_[0]; }
  int write_fd() const { return fds_[1]; }
  // Closes this process's write end, so a reader sees EOF once the children
  // holding it have exited.
  void close_write();

 private:
  int fds_[2];
};

// Writes all of buf; for messages of at most PIPE_BUF bytes the write is
// atomic, so many children can report on one pipe.
void write_all(int fd, const void* buf, size_t len);

// Runs argv[0] (a path) with the arguments in a child process; returns what
// it wrote on stdout. Its stderr is ours. Throws if it fails or outlives the
// deadline.
std::string run_program(const std::vector<std::string>& argv, Clock::time_point deadline);

// Child processes started with fork(). The destructor kills (SIGKILL) and
// reaps any still running, so a failed run leaves no strays behind.
class Children {
 public:
  Children() = default;
  ~Children();
  Children(const Children&) = delete;
  Children& operator=(const Children&) = delete;

  // Forks; the child runs body and exits with 0, or prints what it threw,
  // prefixed with `what`, and exits with 1. REQUIRES: the calling process
  // has a single thread (fork copies only the calling one).
  pid_t spawn(const std::string& what, const std::function<void()>& body);

  // Reads exactly len bytes from fd. Throws if the deadline passes or a
  // child exits with a failure first, rather than waiting on a dead writer.
  void read(int fd, void* buf, size_t len, Clock::time_point deadline);
  // Reads fd until EOF (every writer closed it).
  std::string read_to_end(int fd, Clock::time_point deadline);

  // Waits for every child to exit; throws if one failed or the deadline
  // passes.
  void wait_all(Clock::time_point deadline);

  // Sends sig to every child still running.
  void signal_all(int sig);

 private:
  struct Child {
    pid_t pid;
    std::string what;
    bool running;
  };
  // Reaps children that have exited; throws on the first that failed.
  void reap();
  // Waits until fd is readable; false when the deadline has passed.
  bool wait_readable(int fd, Clock::time_point deadline);

  std::vector<Child> children_;
};

}  // namespace store_bench
