#include "store_bench_proc.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <thread>

namespace store_bench {
namespace {

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error(what + ": " + std::strerror(errno));
}

std::string describe(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("was killed by ") + strsignal(WTERMSIG(status));
  return "stopped";
}

}  // namespace

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

Pipe::Pipe() {
  // Close-on-exec: a worker program run with run_program must not hold our
  // pipes open (forked children, which do not exec, keep them).
  if (::pipe2(fds_, O_CLOEXEC) != 0) fail("pipe");
}

Pipe::~Pipe() {
  ::close(fds_[0]);
  close_write();
}

void Pipe::close_write() {
  if (fds_[1] >= 0) ::close(fds_[1]);
  fds_[1] = -1;
}

void write_all(int fd, const void* buf, size_t len) {
  const auto* p = static_cast<const char*>(buf);
  while (len > 0) {
    ssize_t n = ::write(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail("write to pipe");
    p += n;
    len -= static_cast<size_t>(n);
  }
}

Children::~Children() {
  signal_all(SIGKILL);
  for (auto& c : children_) {
    if (c.running) ::waitpid(c.pid, nullptr, 0);
  }
}

pid_t Children::spawn(const std::string& what, const std::function<void()>& body) {
  // Buffered output would otherwise be written twice, once by each process.
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) fail("fork");
  if (pid == 0) {
    // A child blocked on a pipe would otherwise outlive a parent killed
    // from outside (the destructor below never runs then).
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(1);
    int code = 0;
    try {
      body();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "store_bench: %s: %s\n", what.c_str(), e.what());
      code = 1;
    } catch (...) {
      // Nothing may unwind past this frame: the caller's code belongs to the
      // parent.
      std::fprintf(stderr, "store_bench: %s: failed\n", what.c_str());
      code = 1;
    }
    // _exit: the child must not run the parent's atexit handlers or static
    // destructors (nor libtorch's), which belong to the parent.
    ::_exit(code);
  }
  children_.push_back({pid, what, true});
  return pid;
}

std::string run_program(const std::vector<std::string>& argv, Clock::time_point deadline) {
  Pipe out;
  Children child;
  child.spawn(argv.at(0), [&] {
    if (::dup2(out.write_fd(), STDOUT_FILENO) < 0) fail("dup2");
    std::vector<char*> args;
    args.reserve(argv.size() + 1);
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    fail("cannot run " + argv[0]);
  });
  out.close_write();
  std::string text = child.read_to_end(out.read_fd(), deadline);
  child.wait_all(deadline);
  return text;
}

void Children::reap() {
  for (auto& c : children_) {
    if (!c.running) continue;
    int status = 0;
    pid_t r = ::waitpid(c.pid, &status, WNOHANG);
    if (r == 0) continue;
    if (r < 0) {
      if (errno == EINTR) continue;
      fail("waitpid");
    }
    c.running = false;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      throw std::runtime_error(c.what + " " + describe(status));
    }
  }
}

bool Children::wait_readable(int fd, Clock::time_point deadline) {
  while (true) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return false;
    // Wake up now and then to notice a child that died without writing.
    pollfd pfd{fd, POLLIN, 0};
    int rc = ::poll(&pfd, 1, static_cast<int>(std::min<int64_t>(left.count(), 100)));
    if (rc < 0 && errno != EINTR) fail("poll");
    if (rc > 0) return true;
    reap();
  }
}

std::string Children::read_to_end(int fd, Clock::time_point deadline) {
  std::string text;
  char buf[4096];
  while (true) {
    if (!wait_readable(fd, deadline)) throw std::runtime_error("timed out waiting for a child");
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("read from pipe");
    if (n == 0) return text;
    text.append(buf, static_cast<size_t>(n));
  }
}

void Children::read(int fd, void* buf, size_t len, Clock::time_point deadline) {
  auto* p = static_cast<char*>(buf);
  while (len > 0) {
    if (!wait_readable(fd, deadline)) {
      throw std::runtime_error("timed out waiting for the children");
    }
    ssize_t n = ::read(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail("read from pipe");
    p += n;
    len -= static_cast<size_t>(n);
  }
}

void Children::wait_all(Clock::time_point deadline) {
  while (true) {
    reap();
    bool any = false;
    for (const auto& c : children_) any = any || c.running;
    if (!any) return;
    if (Clock::now() >= deadline) throw std::runtime_error("timed out waiting for children");
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

void Children::signal_all(int sig) {
  for (const auto& c : children_) {
    if (c.running) ::kill(c.pid, sig);
  }
}

}  // namespace store_bench
