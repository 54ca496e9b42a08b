#include "harness/multiproc.hpp"

#include <arpa/inet.h>
#include <cxxabi.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <thread>
#include <typeinfo>
#include <utility>

namespace tutti::testing {
namespace {

using Body = std::function<void(const RankContext&)>;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Child exit codes. Not 1 or 2: a body (or a library it calls) that exit()s
// with a small code itself should show up as ExitedNonZero, not be mistaken
// for an assertion failure.
constexpr int kExitPassed = 0;
constexpr int kExitFailed = 101;
constexpr int kExitThrew = 102;
constexpr int kExitOrphaned = 103;  // the parent died before the body ran

constexpr size_t kTailBytes = 4096;
// How often the parent checks for exited children while no output arrives.
constexpr milliseconds kPollTick{20};

std::system_error errno_error(const std::string& what) {
  return std::system_error(errno, std::generic_category(), "multiproc harness: " + what);
}

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(std::exchange(other.fd_, -1));
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

struct Pipe {
  UniqueFd read_end;
  UniqueFd write_end;
};

// O_CLOEXEC so that a body which exec()s does not hand the write ends on, and
// a blocking write end so a child waits for the parent instead of losing text.
Pipe make_pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw errno_error("pipe2");
  Pipe pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
  int flags = ::fcntl(fds[0], F_GETFL);
  ::fcntl(fds[0], F_SETFL, flags | O_NONBLOCK);
  return pipe;
}

void write_all(int fd, const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the parent is gone; nobody is left to tell
    done += static_cast<size_t>(n);
  }
}

class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = std::string(base && *base ? base : "/tmp") + "/tutti-multiproc-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) {
      throw errno_error("mkdtemp " + pattern);
    }
    path_ = pattern;
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The kernel hands out a free ephemeral port for port 0; closing the socket
// right away leaves no TIME_WAIT state because it never connected.
uint16_t pick_free_port() {
  UniqueFd sock(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!sock.valid()) throw errno_error("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (::bind(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    throw errno_error("bind 127.0.0.1:0");
  }
  socklen_t len = sizeof addr;
  if (::getsockname(sock.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    throw errno_error("getsockname");
  }
  return ntohs(addr.sin_port);
}

std::string format_duration(milliseconds duration) {
  auto ms = duration.count();
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + " s";
  return std::to_string(ms) + " ms";
}

std::string signal_name(int sig) {
  const char* abbrev = ::sigabbrev_np(sig);
  const char* description = ::sigdescr_np(sig);
  std::string name = "signal " + std::to_string(sig);
  if (abbrev != nullptr) {
    name += std::string(" (SIG") + abbrev;
    if (description != nullptr) name += std::string(": ") + description;
    name += ")";
  }
  return name;
}

std::string demangle(const char* mangled) {
  int status = 0;
  std::unique_ptr<char, decltype(&std::free)> name(
      abi::__cxa_demangle(mangled, nullptr, nullptr, &status), &std::free);
  return status == 0 && name ? name.get() : mangled;
}

// ---------------------------------------------------------------------------
// Child side.

// Sends every failed assertion of the child to the parent as it happens, so
// the text survives a later crash or hang. Counting here rather than asking
// Test::HasFailure() matters: the child inherits the parent's test result,
// which may already hold failures from before the fork.
class FailureForwarder : public ::testing::EmptyTestEventListener {
 public:
  explicit FailureForwarder(int report_fd) : report_fd_(report_fd) {}

  void OnTestPartResult(const ::testing::TestPartResult& result) override {
    if (!result.failed()) return;  // successes and GTEST_SKIP()
    std::string text;
    if (result.file_name() != nullptr) {
      text += result.file_name();
      if (result.line_number() >= 0) {
        text += ':';
        text += std::to_string(result.line_number());
      }
      text += ": ";
    }
    text += result.fatally_failed() ? "Fatal failure\n" : "Failure\n";
    text += result.message();
    text += "\n";
    report(text);
    std::lock_guard lock(mutex_);
    ++failures_;
  }

  // Assertion failures may come from any thread the body starts.
  void report(const std::string& text) {
    std::lock_guard lock(mutex_);
    write_all(report_fd_, text);
  }

  int failures() {
    std::lock_guard lock(mutex_);
    return failures_;
  }

 private:
  const int report_fd_;
  std::mutex mutex_;
  int failures_ = 0;
};

int run_body(const RankContext& ctx, const Body& body, FailureForwarder& forwarder) {
  try {
    body(ctx);
  } catch (const std::exception& e) {
    forwarder.report("uncaught exception of type " + demangle(typeid(e).name()) + ": " + e.what() +
                     "\n");
    return kExitThrew;
  } catch (...) {
    const std::type_info* type = abi::__cxa_current_exception_type();
    forwarder.report("uncaught exception of type " + (type ? demangle(type->name()) : "<unknown>") +
                     "\n");
    return kExitThrew;
  }
  return forwarder.failures() > 0 ? kExitFailed : kExitPassed;
}

[[noreturn]] void run_child(const RankContext& ctx, const Body& body,
                            const MultiProcOptions& options, int report_fd, int output_fd,
                            pid_t parent) {
  // A test binary killed by CI (or by a debugger) must not leave ranks
  // behind. The check closes the race where the parent died before prctl.
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != parent) {
    ::_exit(kExitOrphaned);
  }
  // Own process group, so the parent can kill whatever the body starts too.
  ::setpgid(0, 0);
  ::dup2(output_fd, STDOUT_FILENO);
  ::dup2(output_fd, STDERR_FILENO);
  ::close(output_fd);
  // A pipe makes stdout fully buffered; lines would be lost on a crash or
  // kill. glibc ignores _IOLBF on a stream already used (the parent printed)
  // unless it is given a buffer.
  static char stdout_buffer[BUFSIZ];
  std::setvbuf(stdout, stdout_buffer, _IOLBF, sizeof stdout_buffer);
  for (const auto& [name, value] : options.env) {
    ::setenv(name.c_str(), value.c_str(), 1);
  }

  auto* forwarder = new FailureForwarder(report_fd);
  ::testing::UnitTest::GetInstance()->listeners().Append(forwarder);  // owns

  // A fresh thread starts with GoogleTest's default per-thread reporter; the
  // forking thread may carry one installed by EXPECT_NONFATAL_FAILURE that
  // would silently swallow the child's failures.
  int exit_code = kExitPassed;
  std::thread([&] { exit_code = run_body(ctx, body, *forwarder); }).join();

  std::cout.flush();
  std::fflush(nullptr);
  // _exit, not exit: static destructors and GoogleTest's own teardown belong
  // to the parent and must not run (or print a test summary) in every child.
  ::_exit(exit_code);
}

// ---------------------------------------------------------------------------
// Parent side.

enum class KillReason { None, Deadline, PeerFailure };

struct Child {
  int rank = 0;
  pid_t pid = -1;
  bool running = true;
  KillReason kill_reason = KillReason::None;
  UniqueFd report_fd;
  UniqueFd output_fd;
  std::string report;        // everything the FailureForwarder sent
  std::string output_tail;   // the last bytes of stdout+stderr
  std::string partial_line;  // output not yet echoed, awaiting its '\n'
  bool output_truncated = false;
};

// Owns the children of one run. Its destructor kills and reaps any child
// still running, so an exception in the parent cannot leak processes.
class Supervisor {
 public:
  // The deadline counts from here, before the first fork.
  Supervisor(const MultiProcOptions& options, int world_size)
      : options_(options), deadline_(Clock::now() + options.deadline) {
    children_.reserve(static_cast<size_t>(world_size));
    outcomes_.resize(static_cast<size_t>(world_size));
  }
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  ~Supervisor() {
    for (Child& child : children_) {
      if (!child.running) continue;
      kill_group(child);
      int status = 0;
      while (::waitpid(child.pid, &status, 0) < 0 && errno == EINTR) {
      }
    }
  }

  void spawn(const RankContext& ctx, const Body& body) {
    Pipe report = make_pipe();
    Pipe output = make_pipe();
    // Whatever sits in the parent's stdio buffers would otherwise be
    // written again by every child.
    std::cout.flush();
    std::cerr.flush();
    std::fflush(nullptr);
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) throw errno_error("fork rank " + std::to_string(ctx.rank));
    if (pid == 0) {
      // The read ends of earlier ranks are of no use here. Destructors never
      // run in the child (it _exit()s), so closing by hand is not doubled.
      for (const Child& other : children_) {
        ::close(other.report_fd.get());
        ::close(other.output_fd.get());
      }
      ::close(report.read_end.get());
      ::close(output.read_end.get());
      run_child(ctx, body, options_, report.write_end.get(), output.write_end.get(), parent);
    }
    // Also set here: whichever of parent and child runs first, the group
    // exists before the parent might need to kill it.
    ::setpgid(pid, pid);
    Child child;
    child.rank = ctx.rank;
    child.pid = pid;
    child.report_fd = std::move(report.read_end);
    child.output_fd = std::move(output.read_end);
    children_.push_back(std::move(child));
  }

  std::vector<RankOutcome> wait() {
    while (running_count() > 0) {
      const Clock::time_point now = Clock::now();
      if (now >= deadline_) {
        stop_running(KillReason::Deadline);
        break;
      }
      if (grace_end_ && now >= *grace_end_) {
        stop_running(KillReason::PeerFailure);
        break;
      }
      const Clock::time_point until = std::min(deadline_, grace_end_.value_or(deadline_));
      auto wait_for = std::chrono::ceil<milliseconds>(until - now);
      poll_output(std::min(wait_for, kPollTick));
      reap_exited();
    }
    return std::move(outcomes_);
  }

 private:
  size_t running_count() const {
    return static_cast<size_t>(std::count_if(children_.begin(), children_.end(),
                                             [](const Child& child) { return child.running; }));
  }

  // The child is unreaped while this runs, so its pid, and with it the
  // process-group id, cannot have been reused by an unrelated process.
  static void kill_group(const Child& child) {
    ::kill(-child.pid, SIGKILL);
    ::kill(child.pid, SIGKILL);
  }

  void poll_output(milliseconds timeout) {
    std::vector<pollfd> fds;
    std::vector<std::pair<Child*, bool>> owners;  // bool: is the report fd
    for (Child& child : children_) {
      if (child.report_fd.valid()) {
        fds.push_back({child.report_fd.get(), POLLIN, 0});
        owners.emplace_back(&child, true);
      }
      if (child.output_fd.valid()) {
        fds.push_back({child.output_fd.get(), POLLIN, 0});
        owners.emplace_back(&child, false);
      }
    }
    int ready = ::poll(fds.data(), fds.size(), static_cast<int>(timeout.count()));
    if (ready <= 0) return;  // timeout, or EINTR: the caller loops anyway
    for (size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      auto [child, is_report] = owners[i];
      drain(*child, is_report);
    }
  }

  // Reads what is available now; closes the fd at end of file.
  void drain(Child& child, bool is_report) {
    UniqueFd& fd = is_report ? child.report_fd : child.output_fd;
    char buffer[4096];
    while (fd.valid()) {
      ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return;
      if (n <= 0) {
        fd.reset();
        break;
      }
      std::string_view chunk(buffer, static_cast<size_t>(n));
      if (is_report) {
        child.report += chunk;
      } else {
        add_output(child, chunk);
      }
    }
  }

  void add_output(Child& child, std::string_view chunk) {
    child.output_tail += chunk;
    // Trim in batches so that a chatty child costs amortised O(1) per byte.
    if (child.output_tail.size() > 2 * kTailBytes) {
      child.output_tail.erase(0, child.output_tail.size() - kTailBytes);
      child.output_truncated = true;
    }
    echo(child, chunk);
  }

  // Echoes whole lines only, so that lines of different ranks do not mix.
  void echo(Child& child, std::string_view chunk) {
    if (!options_.echo_output) return;
    child.partial_line += chunk;
    size_t start = 0;
    std::string lines;
    for (size_t end; (end = child.partial_line.find('\n', start)) != std::string::npos;
         start = end + 1) {
      lines += "[rank " + std::to_string(child.rank) + "] ";
      lines.append(child.partial_line, start, end + 1 - start);
    }
    child.partial_line.erase(0, start);
    if (!lines.empty()) {
      std::fwrite(lines.data(), 1, lines.size(), stderr);
      std::fflush(stderr);
    }
  }

  void flush_partial_line(Child& child) {
    if (!child.partial_line.empty()) echo(child, "\n");
  }

  void reap_exited() {
    for (Child& child : children_) {
      if (!child.running) continue;
      siginfo_t info{};
      // WNOWAIT leaves the child a zombie, keeping its pid reserved until
      // finish() has killed the rest of its group.
      int rc = ::waitid(P_PID, static_cast<id_t>(child.pid), &info, WEXITED | WNOHANG | WNOWAIT);
      if (rc == 0 && info.si_pid == child.pid) finish(child);
    }
  }

  void stop_running(KillReason reason) {
    for (Child& child : children_) {
      if (!child.running) continue;
      child.kill_reason = reason;
      kill_group(child);
    }
    for (Child& child : children_) {
      if (child.running) finish(child);
    }
  }

  // Kills what is left of the child's process group, collects the rest of
  // its output, reaps it and records its outcome.
  void finish(Child& child) {
    kill_group(child);
    drain(child, true);
    drain(child, false);
    int status = 0;
    while (::waitpid(child.pid, &status, 0) < 0 && errno == EINTR) {
    }
    child.running = false;
    // A grandchild that left the group may still hold the write ends; the
    // non-blocking reads above took what was there, the rest is dropped.
    child.report_fd.reset();
    child.output_fd.reset();
    flush_partial_line(child);

    RankOutcome outcome = classify(child, status);
    if (outcome.kind != RankOutcome::Kind::Passed && options_.kill_on_first_failure &&
        first_failed_rank_ < 0) {
      first_failed_rank_ = child.rank;
      grace_end_ = Clock::now() + options_.failure_grace;
    }
    outcomes_[static_cast<size_t>(child.rank)] = std::move(outcome);
  }

  std::string output_section(const Child& child) const {
    if (child.output_tail.empty()) return "(the rank wrote no output)\n";
    std::string tail = child.output_tail;
    bool truncated = child.output_truncated;
    if (tail.size() > kTailBytes) {
      tail.erase(0, tail.size() - kTailBytes);
      truncated = true;
    }
    if (truncated) {
      // Start at a line boundary so the first line is not half a line.
      size_t newline = tail.find('\n');
      if (newline != std::string::npos && newline + 1 < tail.size()) {
        tail.erase(0, newline + 1);
      }
    }
    if (tail.back() != '\n') tail += '\n';
    return (truncated ? "--- last lines of its output ---\n" : "--- its output ---\n") + tail;
  }

  RankOutcome classify(const Child& child, int status) const {
    using Kind = RankOutcome::Kind;
    RankOutcome outcome;
    outcome.rank = child.rank;
    outcome.messages = child.report;
    if (WIFEXITED(status)) {
      outcome.exit_code = WEXITSTATUS(status);
      switch (outcome.exit_code) {
        case kExitPassed:
          // Exit code 0 with failures on record: the body called exit(0).
          outcome.kind = child.report.empty() ? Kind::Passed : Kind::Failed;
          break;
        case kExitFailed:
          outcome.kind = Kind::Failed;
          break;
        case kExitThrew:
          outcome.kind = Kind::Threw;
          break;
        default:
          outcome.kind = Kind::ExitedNonZero;
          outcome.messages = "exited with code " + std::to_string(outcome.exit_code) + "\n" +
                             outcome.messages + output_section(child);
      }
      return outcome;
    }
    outcome.signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    std::string what;
    switch (child.kill_reason) {
      case KillReason::Deadline:
        outcome.kind = Kind::TimedOut;
        what = "did not finish within " + format_duration(options_.deadline) + " (killed)";
        break;
      case KillReason::PeerFailure:
        outcome.kind = Kind::KilledAfterPeerFailure;
        outcome.failed_peer = first_failed_rank_;
        what = "still running " + format_duration(options_.failure_grace) + " after rank " +
               std::to_string(first_failed_rank_) + " failed (killed)";
        break;
      case KillReason::None:
        outcome.kind = Kind::Crashed;
        what = "killed by " + signal_name(outcome.signal);
        break;
    }
    outcome.messages = what + "\n" + outcome.messages + output_section(child);
    return outcome;
  }

  const MultiProcOptions& options_;
  const Clock::time_point deadline_;
  std::vector<Child> children_;
  std::vector<RankOutcome> outcomes_;
  int first_failed_rank_ = -1;
  std::optional<Clock::time_point> grace_end_;
};

}  // namespace

const char* to_string(RankOutcome::Kind kind) {
  using Kind = RankOutcome::Kind;
  switch (kind) {
    case Kind::Passed:
      return "passed";
    case Kind::Failed:
      return "failed";
    case Kind::Threw:
      return "threw";
    case Kind::Crashed:
      return "crashed";
    case Kind::TimedOut:
      return "timed out";
    case Kind::KilledAfterPeerFailure:
      return "killed after another rank failed";
    case Kind::ExitedNonZero:
      return "exited with a non-zero code";
  }
  return "unknown";
}

std::string describe(const RankOutcome& outcome, int world_size) {
  std::string text = "rank " + std::to_string(outcome.rank) + " of " + std::to_string(world_size) +
                     " " + to_string(outcome.kind);
  if (outcome.messages.empty()) return text;
  return text + ":\n" + outcome.messages;
}

std::vector<RankOutcome> run_ranks_collect(int world_size, const Body& body,
                                           const MultiProcOptions& options) {
  if (world_size < 1) {
    throw std::invalid_argument("run_ranks: world_size must be >= 1, got " +
                                std::to_string(world_size));
  }
  // Declared before the supervisor, so every child is dead before the
  // directory goes away.
  TempDir shared_dir;
  RankContext ctx;
  ctx.world_size = world_size;
  ctx.shared_dir = shared_dir.path();
  ctx.store_path = shared_dir.path() + "/store";
  ctx.port = pick_free_port();

  Supervisor supervisor(options, world_size);
  for (int rank = 0; rank < world_size; ++rank) {
    ctx.rank = rank;
    supervisor.spawn(ctx, body);
  }
  return supervisor.wait();
}

bool run_ranks(int world_size, const Body& body, const MultiProcOptions& options, CallSite where) {
  bool all_passed = true;
  for (const RankOutcome& outcome : run_ranks_collect(world_size, body, options)) {
    if (outcome.kind == RankOutcome::Kind::Passed) continue;
    all_passed = false;
    ADD_FAILURE_AT(where.file, where.line) << describe(outcome, world_size);
  }
  return all_passed;
}

}  // namespace tutti::testing
