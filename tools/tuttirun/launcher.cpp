#include "tuttirun/launcher.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <optional>
#include <system_error>
#include <vector>

#include "tuttirun/fd.hpp"
#include "tuttirun/line_relay.hpp"
#include "tuttirun/spawn.hpp"

namespace tuttirun {
namespace {

using Clock = std::chrono::steady_clock;

void report(const std::string& message) { write_all(STDERR_FILENO, "tuttirun: " + message + "\n"); }

std::string signal_name(int signo) {
  const char* abbreviation = ::sigabbrev_np(signo);
  return abbreviation != nullptr ? fmt::format("SIG{}", abbreviation)
                                 : fmt::format("signal {}", signo);
}

std::string describe_exit(int status) {
  if (WIFEXITED(status)) return fmt::format("exited with code {}", WEXITSTATUS(status));
  int signo = WTERMSIG(status);
  return fmt::format("was killed by signal {} ({}){}", signo, signal_name(signo),
                     WCOREDUMP(status) ? ", core dumped" : "");
}

int exit_code_of(int status) {
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string ranks_phrase(int count) {
  return count == 1 ? "1 rank" : fmt::format("{} ranks", count);
}

// Blocks SIGCHLD, SIGINT and SIGTERM and receives them through a signalfd
// instead, so the poll loop sees them with the ranks' pipes; ignores SIGPIPE
// so a closed stdout does not kill tuttirun. Restores all of it on
// destruction.
class SignalChannel {
 public:
  SignalChannel() {
    sigset_t handled;
    sigemptyset(&handled);
    for (int signo : {SIGCHLD, SIGINT, SIGTERM}) sigaddset(&handled, signo);
    if (::sigprocmask(SIG_BLOCK, &handled, &original_mask_) != 0) {
      throw std::system_error(errno, std::system_category(), "sigprocmask");
    }
    // An inherited SIG_IGN for SIGCHLD would reap the ranks behind our back.
    ::signal(SIGCHLD, SIG_DFL);
    previous_sigpipe_ = ::signal(SIGPIPE, SIG_IGN);
    fd_ = UniqueFd(::signalfd(-1, &handled, SFD_NONBLOCK | SFD_CLOEXEC));
    if (!fd_.valid()) throw std::system_error(errno, std::system_category(), "signalfd");
  }
  ~SignalChannel() {
    ::signal(SIGPIPE, previous_sigpipe_);
    ::sigprocmask(SIG_SETMASK, &original_mask_, nullptr);
  }
  SignalChannel(const SignalChannel&) = delete;
  SignalChannel& operator=(const SignalChannel&) = delete;

  int fd() const { return fd_.get(); }
  // The mask tuttirun started with, for the ranks.
  const sigset_t& original_mask() const { return original_mask_; }

 private:
  sigset_t original_mask_;
  sighandler_t previous_sigpipe_ = SIG_DFL;
  UniqueFd fd_;
};

// One of a rank's output streams on its way to tuttirun's own.
struct Stream {
  UniqueFd fd;
  LineRelay relay;
};

struct Rank {
  int rank = 0;
  pid_t pid = -1;
  bool running = false;
  Stream out;
  Stream err;
};

class Launcher {
 public:
  explicit Launcher(const LaunchConfig& config) : config_(config), buffer_(kReadChunkBytes) {}

  int run() {
    start_ranks();
    supervise();
    return exit_code_.value_or(0);
  }

 private:
  void start_ranks() {
    UniqueFd dev_null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!dev_null.valid()) {
      report(fmt::format("cannot open /dev/null for the ranks' stdin: {}", strerror(errno)));
      exit_code_ = 1;
      return;
    }
    ranks_.reserve(static_cast<size_t>(config_.nproc_per_node));
    for (int local_rank = 0; local_rank < config_.nproc_per_node; ++local_rank) {
      int rank = config_.global_rank(local_rank);
      std::vector<std::string> environment = rank_environment(config_, local_rank, environ);
      try {
        SpawnedRank spawned = spawn_rank({.command = &config_.command,
                                          .environment = &environment,
                                          .signal_mask = &signals_.original_mask(),
                                          .stdin_fd = dev_null.get()});
        std::string prefix = fmt::format("[{}] ", rank);
        ranks_.push_back(Rank{.rank = rank,
                              .pid = spawned.pid,
                              .running = true,
                              .out = {std::move(spawned.stdout_read), {prefix, STDOUT_FILENO}},
                              .err = {std::move(spawned.stderr_read), {prefix, STDERR_FILENO}}});
      } catch (const SpawnError& e) {
        int started = running_count();
        report(started == 0 ? std::string(e.what())
                            : fmt::format("{} (rank {}); stopping the {} already started", e.what(),
                                          rank, ranks_phrase(started)));
        exit_code_ = e.exit_code();
        stop_all(SIGTERM);
        return;
      }
    }
  }

  // The poll loop: ranks' output, signals (SIGCHLD among them) and the kill
  // deadline, until every rank has exited.
  void supervise() {
    std::vector<pollfd> polled;
    std::vector<Stream*> streams;
    while (running_count() > 0) {
      polled.assign(1, pollfd{signals_.fd(), POLLIN, 0});
      streams.clear();
      for (Rank& rank : ranks_) {
        for (Stream* stream : {&rank.out, &rank.err}) {
          if (!stream->fd.valid()) continue;
          polled.push_back(pollfd{stream->fd.get(), POLLIN, 0});
          streams.push_back(stream);
        }
      }
      int ready = ::poll(polled.data(), polled.size(), poll_timeout_ms());
      if (ready < 0) {
        if (errno == EINTR) continue;
        throw std::system_error(errno, std::system_category(), "poll");
      }
      if (polled[0].revents != 0) handle_signals();
      for (size_t i = 1; i < polled.size(); ++i) {
        if (polled[i].revents != 0) read_stream(*streams[i - 1], 1);
      }
      if (kill_deadline_ && Clock::now() >= *kill_deadline_) kill_after_timeout();
    }
    // Every rank has exited. Whatever a rank's own children still write
    // after this is not waited for: they may never close the pipes.
    for (Rank& rank : ranks_) {
      for (Stream* stream : {&rank.out, &rank.err}) {
        read_stream(*stream, kDrainReads);
        stream->relay.flush();
        stream->fd.reset();
      }
    }
  }

  int poll_timeout_ms() const {
    if (!kill_deadline_) return -1;
    auto left = std::chrono::ceil<std::chrono::milliseconds>(*kill_deadline_ - Clock::now());
    return static_cast<int>(std::max<int64_t>(left.count(), 0));
  }

  void handle_signals() {
    bool child_exited = false;
    std::array<signalfd_siginfo, 8> infos;
    while (true) {
      ssize_t n = ::read(signals_.fd(), infos.data(), sizeof infos);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      for (size_t i = 0; i < static_cast<size_t>(n) / sizeof(signalfd_siginfo); ++i) {
        const signalfd_siginfo& info = infos[i];
        if (static_cast<int>(info.ssi_signo) == SIGCHLD) {
          child_exited = true;
        } else {
          on_stop_signal(info);
        }
      }
    }
    // SIGCHLDs coalesce: reap every child that has exited.
    if (child_exited) reap();
  }

  void on_stop_signal(const signalfd_siginfo& info) {
    int signo = static_cast<int>(info.ssi_signo);
    std::string source =
        info.ssi_code == SI_USER ? fmt::format(" from pid {}", info.ssi_pid) : std::string();
    int running = running_count();
    if (stopping_) {
      report(fmt::format("received {}{} while stopping; sending SIGKILL to the {} still running",
                         signal_name(signo), source, ranks_phrase(running)));
      signal_running(SIGKILL);
      kill_deadline_.reset();
      return;
    }
    report(fmt::format("received {}{}; forwarding it to the {} still running", signal_name(signo),
                       source, ranks_phrase(running)));
    if (!exit_code_) exit_code_ = 128 + signo;
    stop_all(signo);
  }

  void reap() {
    while (true) {
      int status = 0;
      pid_t pid = ::waitpid(-1, &status, WNOHANG);
      if (pid < 0 && errno == EINTR) continue;
      if (pid <= 0) return;
      for (Rank& rank : ranks_) {
        if (rank.pid == pid && rank.running) on_rank_exit(rank, status);
      }
    }
  }

  void on_rank_exit(Rank& rank, int status) {
    rank.running = false;
    // Relay what the rank wrote before it exited ahead of our message.
    read_stream(rank.out, kDrainReads);
    read_stream(rank.err, kDrainReads);
    bool failed = !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (!failed || stopping_) return;  // exits after we signalled are expected
    exit_code_ = exit_code_of(status);
    int others = running_count();
    std::string what =
        fmt::format("rank {} (pid {}) {}", rank.rank, rank.pid, describe_exit(status));
    if (others == 0) {
      report(what);
    } else {
      report(fmt::format("{}; stopping the other {}", what, ranks_phrase(others)));
    }
    stop_all(SIGTERM);
  }

  // Sends signo to every running rank and gives them kill_timeout to exit.
  void stop_all(int signo) {
    stopping_ = true;
    if (running_count() == 0) return;
    signal_running(signo);
    kill_deadline_ = Clock::now() + config_.kill_timeout;
  }

  void kill_after_timeout() {
    kill_deadline_.reset();
    for (const Rank& rank : ranks_) {
      if (!rank.running) continue;
      report(
          fmt::format("rank {} (pid {}) is still running {} ms after being asked to stop; "
                      "sending SIGKILL",
                      rank.rank, rank.pid, config_.kill_timeout.count()));
    }
    signal_running(SIGKILL);
  }

  // Signals each running rank's process group, so the processes a rank
  // started (a shell's children) get the signal too; each process once.
  void signal_running(int signo) {
    for (const Rank& rank : ranks_) {
      if (!rank.running) continue;
      // A rank that moved itself into another group is signalled alone.
      if (::getpgid(rank.pid) == rank.pid) {
        ::killpg(rank.pid, signo);
      } else {
        ::kill(rank.pid, signo);
      }
    }
  }

  // Reads up to max_reads chunks that are ready; closes the stream at its end.
  void read_stream(Stream& stream, int max_reads) {
    for (int i = 0; i < max_reads && stream.fd.valid(); ++i) {
      ssize_t n = ::read(stream.fd.get(), buffer_.data(), buffer_.size());
      if (n > 0) {
        stream.relay.feed(std::string_view(buffer_.data(), static_cast<size_t>(n)));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return;
      stream.relay.flush();  // end of stream (or a read error)
      stream.fd.reset();
    }
  }

  int running_count() const {
    int count = 0;
    for (const Rank& rank : ranks_) count += rank.running ? 1 : 0;
    return count;
  }

  static constexpr size_t kReadChunkBytes = size_t{64} * 1024;
  // Bounds a drain, so a rank's child that keeps writing cannot hold us.
  static constexpr int kDrainReads = 64;

  const LaunchConfig& config_;
  SignalChannel signals_;
  std::vector<Rank> ranks_;
  std::vector<char> buffer_;
  bool stopping_ = false;
  std::optional<int> exit_code_;
  std::optional<Clock::time_point> kill_deadline_;
};

}  // namespace

int launch(const LaunchConfig& config) { return Launcher(config).run(); }

}  // namespace tuttirun
