// The tuttirun launcher, run as a real process over /bin/sh ranks: the
// environment each rank sees, output prefixing, stopping the job when a rank
// fails, signal forwarding, and start-up errors. Every run has a deadline, so
// a hang fails the test instead of stalling it.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

struct Result {
  int status = -1;
  std::string out;
  std::string err;
  std::chrono::milliseconds elapsed{0};
  bool timed_out = false;

  bool exited() const { return WIFEXITED(status); }
  int exit_code() const { return WIFEXITED(status) ? WEXITSTATUS(status) : -1; }
};

// A running tuttirun with its stdout and stderr captured.
class Tuttirun {
 public:
  // own_process_group: start tuttirun as a shell starts a job, in a process
  // group of its own, so the test can signal the group as a terminal would.
  explicit Tuttirun(const std::vector<std::string>& args, bool own_process_group = false) {
    int out[2], err[2];
    if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
    std::vector<std::string> all = {TUTTIRUN_BIN};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& arg : all) argv.push_back(arg.data());
    argv.push_back(nullptr);
    started_ = Clock::now();
    pid_ = fork();
    if (pid_ == 0) {
      if (own_process_group) setpgid(0, 0);
      // As a foreground job: the test may run where SIGINT is ignored (a
      // background job of a script), and tuttirun keeps an ignored SIGINT.
      signal(SIGINT, SIG_DFL);
      signal(SIGTERM, SIG_DFL);
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);
      dup2(out[1], STDOUT_FILENO);
      dup2(err[1], STDERR_FILENO);
      execv(argv[0], argv.data());
      _exit(126);
    }
    if (own_process_group) setpgid(pid_, pid_);
    close(out[1]);
    close(err[1]);
    out_fd_ = out[0];
    err_fd_ = err[0];
  }
  ~Tuttirun() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (out_fd_ >= 0) close(out_fd_);
    if (err_fd_ >= 0) close(err_fd_);
  }
  Tuttirun(const Tuttirun&) = delete;
  Tuttirun& operator=(const Tuttirun&) = delete;

  pid_t pid() const { return pid_; }

  // Reads output until stdout (or stderr) holds `count` lines containing
  // `text`; false at the timeout.
  bool wait_for_lines(const std::string& text, int count, std::chrono::seconds timeout,
                      bool in_stderr = false) {
    auto deadline = Clock::now() + timeout;
    while (true) {
      int found = 0;
      std::istringstream lines(in_stderr ? result_.err : result_.out);
      for (std::string line; std::getline(lines, line);) {
        found += line.find(text) != std::string::npos ? 1 : 0;
      }
      if (found >= count) return true;
      if (!pump(deadline)) return false;
    }
  }

  // Reads until tuttirun closes its output, then reaps it; kills it at the
  // timeout and marks the result timed out.
  Result finish(std::chrono::seconds timeout = 30s) {
    auto deadline = Clock::now() + timeout;
    while (pump(deadline)) {
    }
    while (true) {
      pid_t done = waitpid(pid_, &result_.status, WNOHANG);
      if (done == pid_) break;
      if (Clock::now() >= deadline) {
        result_.timed_out = true;
        kill(pid_, SIGKILL);
        waitpid(pid_, &result_.status, 0);
        break;
      }
      std::this_thread::sleep_for(10ms);
    }
    pid_ = -1;
    result_.elapsed =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started_);
    return result_;
  }

 private:
  // One round of reading; false once both streams are closed or at the deadline.
  bool pump(Clock::time_point deadline) {
    std::vector<pollfd> fds;
    if (out_fd_ >= 0) fds.push_back({out_fd_, POLLIN, 0});
    if (err_fd_ >= 0) fds.push_back({err_fd_, POLLIN, 0});
    if (fds.empty()) return false;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return false;
    if (poll(fds.data(), fds.size(), static_cast<int>(left.count())) <= 0) return errno == EINTR;
    for (const pollfd& p : fds) {
      if (p.revents == 0) continue;
      bool is_out = p.fd == out_fd_;
      char buffer[65536];
      ssize_t n = read(p.fd, buffer, sizeof buffer);
      if (n > 0) {
        (is_out ? result_.out : result_.err).append(buffer, static_cast<size_t>(n));
      } else {
        close(p.fd);
        (is_out ? out_fd_ : err_fd_) = -1;
      }
    }
    return true;
  }

  pid_t pid_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  Clock::time_point started_;
  Result result_;
};

Result run(const std::vector<std::string>& args, std::chrono::seconds timeout = 30s) {
  return Tuttirun(args).finish(timeout);
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream stream(text);
  for (std::string line; std::getline(stream, line);) lines.push_back(line);
  return lines;
}

// A directory removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "tuttirun_test.XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp");
    path_ = pattern;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }
  std::string read(const std::string& name) const {
    std::ifstream in(path_ + "/" + name);
    std::stringstream contents;
    contents << in.rdbuf();
    return contents.str();
  }

 private:
  std::string path_;
};

// Parses the "[r] KEY=value ..." lines the environment script prints.
std::map<int, std::map<std::string, std::string>> environments(const std::string& out) {
  std::map<int, std::map<std::string, std::string>> by_rank;
  for (const std::string& line : lines_of(out)) {
    int prefix_rank = -1;
    int consumed = 0;
    if (std::sscanf(line.c_str(), "[%d] %n", &prefix_rank, &consumed) != 1) {
      ADD_FAILURE() << "line without a rank prefix: " << line;
      continue;
    }
    std::istringstream fields(line.substr(static_cast<size_t>(consumed)));
    for (std::string field; fields >> field;) {
      auto eq = field.find('=');
      by_rank[prefix_rank][field.substr(0, eq)] = field.substr(eq + 1);
    }
  }
  return by_rank;
}

const char* kPrintEnvironment =
    "echo RANK=$RANK WORLD_SIZE=$WORLD_SIZE LOCAL_RANK=$LOCAL_RANK "
    "LOCAL_WORLD_SIZE=$LOCAL_WORLD_SIZE GROUP_RANK=$GROUP_RANK MASTER_ADDR=$MASTER_ADDR "
    "MASTER_PORT=$MASTER_PORT";

TEST(TuttirunEnvironment, EveryRankSeesConsistentVariables) {
  Result r = run({"--nproc-per-node", "3", "/bin/sh", "-c", kPrintEnvironment});
  ASSERT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code(), 0) << r.err;
  EXPECT_EQ(r.err, "");
  auto env = environments(r.out);
  ASSERT_EQ(env.size(), 3u) << r.out;
  const std::string port = env[0]["MASTER_PORT"];
  EXPECT_GT(std::stoi(port), 0);
  EXPECT_LE(std::stoi(port), 65535);
  for (int rank = 0; rank < 3; ++rank) {
    SCOPED_TRACE(rank);
    EXPECT_EQ(env[rank]["RANK"], std::to_string(rank));
    EXPECT_EQ(env[rank]["LOCAL_RANK"], std::to_string(rank));
    EXPECT_EQ(env[rank]["WORLD_SIZE"], "3");
    EXPECT_EQ(env[rank]["LOCAL_WORLD_SIZE"], "3");
    EXPECT_EQ(env[rank]["GROUP_RANK"], "0");
    EXPECT_EQ(env[rank]["MASTER_ADDR"], "127.0.0.1");
    EXPECT_EQ(env[rank]["MASTER_PORT"], port);
  }
}

TEST(TuttirunEnvironment, SecondNodeOfTwo) {
  Result r = run({"--nnodes", "2", "--node-rank", "1", "--nproc-per-node", "2", "--master-addr",
                  "10.1.2.3", "--master-port", "29511", "/bin/sh", "-c", kPrintEnvironment});
  ASSERT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code(), 0) << r.err;
  auto env = environments(r.out);
  ASSERT_EQ(env.size(), 2u) << r.out;
  for (int local_rank = 0; local_rank < 2; ++local_rank) {
    int rank = 2 + local_rank;
    SCOPED_TRACE(rank);
    EXPECT_EQ(env[rank]["RANK"], std::to_string(rank));
    EXPECT_EQ(env[rank]["LOCAL_RANK"], std::to_string(local_rank));
    EXPECT_EQ(env[rank]["WORLD_SIZE"], "4");
    EXPECT_EQ(env[rank]["LOCAL_WORLD_SIZE"], "2");
    EXPECT_EQ(env[rank]["GROUP_RANK"], "1");
    EXPECT_EQ(env[rank]["MASTER_ADDR"], "10.1.2.3");
    EXPECT_EQ(env[rank]["MASTER_PORT"], "29511");
  }
}

TEST(TuttirunEnvironment, ShortOptionN) {
  Result r = run({"-n", "2", "/bin/sh", "-c", kPrintEnvironment});
  ASSERT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code(), 0) << r.err;
  auto env = environments(r.out);
  ASSERT_EQ(env.size(), 2u) << r.out;
  EXPECT_EQ(env[1]["RANK"], "1");
  EXPECT_EQ(env[1]["WORLD_SIZE"], "2");
}

TEST(TuttirunArguments, EverythingAfterProgramBelongsToIt) {
  Result r = run({"-n", "1", "/bin/sh", "-c", "echo \"$0|$1|$2\"", "-n", "--nnodes", "5"});
  ASSERT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code(), 0) << r.err;
  EXPECT_EQ(r.out, "[0] -n|--nnodes|5\n");
}

TEST(TuttirunArguments, UsageErrorsAreReportedWithoutStartingAnything) {
  Result multi_node = run({"--nnodes", "2", "--node-rank", "0", "/bin/true"});
  EXPECT_NE(multi_node.exit_code(), 0);
  EXPECT_NE(multi_node.err.find("--master-port is required"), std::string::npos) << multi_node.err;

  Result bad_node_rank =
      run({"--nnodes", "2", "--node-rank", "2", "--master-port", "1234", "/bin/true"});
  EXPECT_NE(bad_node_rank.exit_code(), 0);
  EXPECT_NE(bad_node_rank.err.find("--node-rank 2"), std::string::npos) << bad_node_rank.err;

  Result no_program = run({"-n", "2"});
  EXPECT_NE(no_program.exit_code(), 0);
  EXPECT_NE(no_program.err.find("no PROGRAM"), std::string::npos) << no_program.err;

  Result unknown = run({"--bogus", "/bin/true"});
  EXPECT_NE(unknown.exit_code(), 0);
  EXPECT_NE(unknown.err.find("unknown option '--bogus'"), std::string::npos) << unknown.err;
}

TEST(TuttirunOutput, PrefixesEveryLineAndKeepsStreamsApart) {
  Result r = run({"-n", "3", "/bin/sh", "-c",
                  "echo first; echo \"to stderr $RANK\" >&2; echo second; printf 'unterminated'"});
  ASSERT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code(), 0) << r.err;
  std::map<int, std::vector<std::string>> out_by_rank;
  for (const std::string& line : lines_of(r.out)) {
    int rank = -1;
    int consumed = 0;
    ASSERT_EQ(std::sscanf(line.c_str(), "[%d] %n", &rank, &consumed), 1) << line;
    out_by_rank[rank].push_back(line.substr(static_cast<size_t>(consumed)));
  }
  ASSERT_EQ(out_by_rank.size(), 3u) << r.out;
  for (const auto& [rank, lines] : out_by_rank) {
    EXPECT_EQ(lines, (std::vector<std::string>{"first", "second", "unterminated"})) << rank;
  }
  std::vector<std::string> err = lines_of(r.err);
  std::sort(err.begin(), err.end());
  EXPECT_EQ(err,
            (std::vector<std::string>{"[0] to stderr 0", "[1] to stderr 1", "[2] to stderr 2"}));
  EXPECT_TRUE(r.out.ends_with("\n"));
}

TEST(TuttirunOutput, OverlongLinesAreCut) {
  Result r = run({"-n", "1", "/bin/sh", "-c", "head -c 100000 /dev/zero | tr '\\0' a"});
  ASSERT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code(), 0) << r.err;
  EXPECT_EQ(r.out,
            "[0] " + std::string(65536, 'a') + "\n[0] " + std::string(100000 - 65536, 'a') + "\n");
}

TEST(TuttirunOutput, ManyLinesFromManyRanksAreNeverMixed) {
  // awk writes in blocks, so lines reach tuttirun cut at arbitrary points.
  const int kLines = 5000;
  Result r =
      run({"-n", "3", "/bin/sh", "-c",
           "awk -v r=\"$RANK\" 'BEGIN { for (i = 0; i < " + std::to_string(kLines) +
               "; i++) printf \"rank %s line %d %s\\n\", r, i, \"abcdefghijklmnopqrstuvwxyz\" }'"});
  ASSERT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code(), 0) << r.err;
  std::vector<int> next_line(3, 0);
  for (const std::string& line : lines_of(r.out)) {
    int prefix = -1, rank = -1, index = -1;
    char tail[64] = {};
    ASSERT_EQ(std::sscanf(line.c_str(), "[%d] rank %d line %d %63s", &prefix, &rank, &index, tail),
              4)
        << line;
    ASSERT_EQ(prefix, rank) << line;
    ASSERT_TRUE(rank >= 0 && rank < 3) << line;
    ASSERT_EQ(index, next_line[rank]) << line;
    ASSERT_STREQ(tail, "abcdefghijklmnopqrstuvwxyz") << line;
    ++next_line[rank];
  }
  EXPECT_EQ(next_line, std::vector<int>(3, kLines));
}

TEST(TuttirunFailure, FailingRankStopsTheOthersAndGivesItsExitCode) {
  Result r =
      run({"-n", "4", "/bin/sh", "-c",
           "if [ \"$RANK\" = 2 ]; then echo 'rank 2 gives up' >&2; exit 3; fi; exec sleep 60"});
  ASSERT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code(), 3);
  EXPECT_LT(r.elapsed, 10s);
  EXPECT_NE(r.err.find("[2] rank 2 gives up\n"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("tuttirun: rank 2 (pid "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("exited with code 3"), std::string::npos) << r.err;
  // The rank's last words come before the verdict.
  EXPECT_LT(r.err.find("rank 2 gives up"), r.err.find("tuttirun: rank 2")) << r.err;
}

TEST(TuttirunFailure, RanksIgnoringSigtermAreKilledAfterTheTimeout) {
  Result r = run({"-n", "3", "--kill-timeout", "0.5", "/bin/sh", "-c",
                  "if [ \"$RANK\" = 0 ]; then sleep 0.3; exit 5; fi; trap '' TERM; exec sleep 60"});
  ASSERT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code(), 5);
  EXPECT_LT(r.elapsed, 10s);
  EXPECT_NE(r.err.find("rank 0 (pid "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("stopping the other 2 ranks"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("sending SIGKILL"), std::string::npos) << r.err;
}

TEST(TuttirunFailure, RankKilledBySignalGives128PlusSignal) {
  Result r = run(
      {"-n", "3", "/bin/sh", "-c", "if [ \"$RANK\" = 1 ]; then kill -KILL $$; fi; exec sleep 60"});
  ASSERT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code(), 137);
  EXPECT_LT(r.elapsed, 10s);
  EXPECT_NE(r.err.find("rank 1 (pid "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("was killed by signal 9 (SIGKILL)"), std::string::npos) << r.err;
}

TEST(TuttirunFailure, AllRanksSucceedingExitsZeroQuietly) {
  Result r = run({"-n", "4", "/bin/true"});
  ASSERT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code(), 0);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "");
}

// Each rank records each SIGINT/SIGTERM it gets in a file of its own and
// exits; it prints "ready PID PGID" first. It waits in the `wait` builtin,
// which a trapped signal interrupts at once: a shell that is forking when the
// signal arrives can lose it (dash), so the script forks nothing after
// "ready".
std::string trapping_rank(const TempDir& dir) {
  return "trap 'echo got >> \"" + dir.path() +
         "/signals.$RANK\"; kill $! 2>/dev/null; exit 0' INT TERM; "
         "sleep 30 & pgid=$(cut -d' ' -f5 /proc/$$/stat); echo ready $$ $pgid; wait";
}

// Checks every rank recorded the signal once, and that it leads a process
// group of its own: a terminal's SIGINT to tuttirun's group does not reach it
// directly, only through tuttirun.
void expect_each_rank_signalled_once(const TempDir& dir, const Result& r, pid_t tuttirun,
                                     int ranks) {
  EXPECT_LT(r.elapsed, 10s) << "the ranks did not exit on the forwarded signal";
  for (int rank = 0; rank < ranks; ++rank) {
    EXPECT_EQ(dir.read("signals." + std::to_string(rank)), "got\n") << "rank " << rank;
  }
  int checked = 0;
  for (const std::string& line : lines_of(r.out)) {
    int rank = -1, pid = -1, pgid = -1;
    if (std::sscanf(line.c_str(), "[%d] ready %d %d", &rank, &pid, &pgid) != 3) continue;
    EXPECT_EQ(pgid, pid) << line;
    EXPECT_NE(pgid, tuttirun) << line;
    ++checked;
  }
  EXPECT_EQ(checked, ranks) << r.out;
}

TEST(TuttirunSignals, SigtermReachesEveryRankOnce) {
  TempDir dir;
  // A long kill timeout: SIGKILL must not stand in for a forwarding that failed.
  Tuttirun tuttirun({"-n", "3", "--kill-timeout", "20", "/bin/sh", "-c", trapping_rank(dir)});
  ASSERT_TRUE(tuttirun.wait_for_lines("] ready", 3, 20s));
  pid_t pid = tuttirun.pid();
  kill(pid, SIGTERM);
  Result r = tuttirun.finish();
  ASSERT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code(), 128 + SIGTERM);
  EXPECT_NE(r.err.find("received SIGTERM"), std::string::npos) << r.err;
  expect_each_rank_signalled_once(dir, r, pid, 3);
}

TEST(TuttirunSignals, CtrlCOnTheTerminalReachesEveryRankOnce) {
  TempDir dir;
  // A terminal sends SIGINT to the whole foreground process group.
  Tuttirun tuttirun({"-n", "3", "--kill-timeout", "20", "/bin/sh", "-c", trapping_rank(dir)},
                    /*own_process_group=*/true);
  ASSERT_TRUE(tuttirun.wait_for_lines("] ready", 3, 20s));
  pid_t pid = tuttirun.pid();
  kill(-pid, SIGINT);
  Result r = tuttirun.finish();
  ASSERT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code(), 128 + SIGINT);
  expect_each_rank_signalled_once(dir, r, pid, 3);
}

TEST(TuttirunSignals, SecondSignalKillsRanksThatIgnoreTheFirst) {
  Tuttirun tuttirun({"-n", "2", "--kill-timeout", "60", "/bin/sh", "-c",
                     "trap '' TERM; echo ready; exec sleep 60"});
  ASSERT_TRUE(tuttirun.wait_for_lines("] ready", 2, 20s));
  kill(tuttirun.pid(), SIGTERM);
  ASSERT_TRUE(tuttirun.wait_for_lines("received SIGTERM", 1, 20s, /*in_stderr=*/true));
  kill(tuttirun.pid(), SIGTERM);
  Result r = tuttirun.finish();
  ASSERT_FALSE(r.timed_out);
  EXPECT_LT(r.elapsed, 20s);
  EXPECT_EQ(r.exit_code(), 128 + SIGTERM);
  EXPECT_NE(r.err.find("while stopping; sending SIGKILL to the 2 ranks"), std::string::npos)
      << r.err;
}

bool is_dead_or_zombie(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string contents;
  if (!std::getline(stat, contents)) return true;
  auto close_paren = contents.rfind(')');
  return close_paren != std::string::npos && contents.size() > close_paren + 2 &&
         contents[close_paren + 2] == 'Z';
}

TEST(TuttirunLaunch, RanksDieWithTuttirun) {
  TempDir dir;
  Tuttirun tuttirun({"-n", "2", "/bin/sh", "-c",
                     "echo $$ > \"" + dir.path() + "/pid.$RANK\"; echo ready; exec sleep 60"});
  ASSERT_TRUE(tuttirun.wait_for_lines("] ready", 2, 20s));
  std::vector<pid_t> ranks = {std::stoi(dir.read("pid.0")), std::stoi(dir.read("pid.1"))};
  kill(tuttirun.pid(), SIGKILL);
  Result r = tuttirun.finish();
  EXPECT_FALSE(r.exited());
  auto deadline = Clock::now() + 10s;
  for (pid_t pid : ranks) {
    while (!is_dead_or_zombie(pid) && Clock::now() < deadline) std::this_thread::sleep_for(20ms);
    EXPECT_TRUE(is_dead_or_zombie(pid)) << "rank pid " << pid << " outlived tuttirun";
  }
}

TEST(TuttirunLaunch, MissingProgramIsNamed) {
  Result by_path = run({"-n", "2", "/nonexistent/tutti-program"});
  ASSERT_FALSE(by_path.timed_out);
  EXPECT_EQ(by_path.exit_code(), 127);
  EXPECT_NE(by_path.err.find("'/nonexistent/tutti-program': No such file or directory"),
            std::string::npos)
      << by_path.err;

  Result by_name = run({"-n", "2", "tutti-no-such-program"});
  ASSERT_FALSE(by_name.timed_out);
  EXPECT_EQ(by_name.exit_code(), 127);
  EXPECT_NE(by_name.err.find("'tutti-no-such-program': not found in PATH"), std::string::npos)
      << by_name.err;
}

TEST(TuttirunLaunch, NonExecutableProgramIsNamed) {
  TempDir dir;
  std::string program = dir.path() + "/not-executable";
  std::ofstream(program) << "#!/bin/sh\necho hi\n";
  chmod(program.c_str(), 0644);
  Result r = run({"-n", "2", program});
  ASSERT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code(), 126);
  EXPECT_NE(r.err.find("'" + program + "': Permission denied"), std::string::npos) << r.err;
}

}  // namespace
