// Tests of the multi-process harness itself: each kind of rank outcome is
// provoked on purpose and checked in run_ranks_collect's result.
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>

#include "harness/multiproc.hpp"

namespace tutti::testing {
namespace {

namespace fs = std::filesystem;
using Kind = RankOutcome::Kind;
using std::chrono::milliseconds;
using std::chrono::seconds;

// gmock's HasSubstr without linking gmock.
#define EXPECT_CONTAINS(haystack, needle) \
  EXPECT_PRED_FORMAT2(::testing::IsSubstring, needle, haystack)

// The intentional failures below would only clutter the test log.
MultiProcOptions quiet() {
  MultiProcOptions options;
  options.echo_output = false;
  return options;
}

[[noreturn]] void block_forever() {
  for (;;) ::pause();
}

// Dies of sig without leaving a core file. The default action is restored
// first because sanitizers catch SIGSEGV and turn it into exit(1).
[[noreturn]] void crash_with(int sig) {
  rlimit no_core{0, 0};
  ::setrlimit(RLIMIT_CORE, &no_core);
  std::signal(sig, SIG_DFL);
  ::raise(sig);
  std::abort();  // not reached: raise() runs the default action first
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_file_atomically(const fs::path& path, const std::string& text) {
  fs::path tmp = path;
  tmp += ".tmp";
  std::ofstream(tmp) << text;
  fs::rename(tmp, path);
}

// A directory the test and its ranks share outside the harness, to hand
// results back to the parent.
class OutDir {
 public:
  OutDir() {
    std::string pattern = (fs::temp_directory_path() / "tutti-self-test-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp " + pattern);
    path_ = pattern;
  }
  OutDir(const OutDir&) = delete;
  OutDir& operator=(const OutDir&) = delete;
  ~OutDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

constexpr int kWorldSize = 4;

TEST(MultiProc, AllRanksPassAndShareDirAndPort) {
  auto outcomes = run_ranks_collect(kWorldSize, [](const RankContext& ctx) {
    EXPECT_EQ(ctx.world_size, kWorldSize);
    EXPECT_EQ(ctx.store_path, ctx.shared_dir + "/store");
    EXPECT_NE(ctx.port, 0);
    std::ostringstream seen;
    seen << ctx.world_size << ' ' << ctx.shared_dir << ' ' << ctx.port;
    const fs::path dir = ctx.shared_dir;
    write_file_atomically(dir / ("rank" + std::to_string(ctx.rank)), seen.str());
    if (ctx.rank != 0) return;

    // Rendezvous: wait for every rank's file, then compare what they saw.
    const auto give_up = std::chrono::steady_clock::now() + seconds(20);
    std::set<std::string> names;
    while (names.size() < kWorldSize) {
      ASSERT_LT(std::chrono::steady_clock::now(), give_up)
          << "only " << names.size() << " ranks wrote their file";
      std::this_thread::sleep_for(milliseconds(5));
      names.clear();
      for (const auto& entry : fs::directory_iterator(dir)) {
        if (entry.path().extension() != ".tmp") {
          names.insert(entry.path().filename().string());
        }
      }
    }
    EXPECT_EQ(names, (std::set<std::string>{"rank0", "rank1", "rank2", "rank3"}));
    for (const std::string& name : names) {
      EXPECT_EQ(read_file(dir / name), seen.str()) << name;
    }
  });
  ASSERT_EQ(outcomes.size(), static_cast<size_t>(kWorldSize));
  for (int rank = 0; rank < kWorldSize; ++rank) {
    EXPECT_EQ(outcomes[rank].rank, rank);
    EXPECT_EQ(outcomes[rank].kind, Kind::Passed) << describe(outcomes[rank], kWorldSize);
  }
}

TEST(MultiProc, EnvIsSetAndSharedDirIsRemovedAfterwards) {
  OutDir out_dir;
  MultiProcOptions options;
  options.env["TUTTI_SELF_TEST_OUT"] = out_dir.path().string();

  auto outcomes = run_ranks_collect(
      2,
      [](const RankContext& ctx) {
        const char* out = std::getenv("TUTTI_SELF_TEST_OUT");
        ASSERT_NE(out, nullptr);
        if (ctx.rank == 0) {
          write_file_atomically(fs::path(out) / "shared_dir", ctx.shared_dir);
        }
      },
      options);
  for (const RankOutcome& outcome : outcomes) {
    EXPECT_EQ(outcome.kind, Kind::Passed) << describe(outcome, 2);
  }
  const std::string shared_dir = read_file(out_dir.path() / "shared_dir");
  EXPECT_FALSE(shared_dir.empty());
  EXPECT_FALSE(fs::exists(shared_dir)) << shared_dir;
}

// The assertions sit in functions of their own so that their lines are known
// in the parent too (a variable set in the child stays in the child).
constexpr int kExpectLine = __LINE__ + 1;
void fail_expect(int rank) { EXPECT_EQ(rank, 42) << "expect marker"; }
constexpr int kAssertLine = __LINE__ + 1;
void fail_assert() { ASSERT_TRUE(false) << "assert marker"; }

TEST(MultiProc, FailedAssertionsNameRankAndLocation) {
  auto outcomes = run_ranks_collect(
      3,
      [](const RankContext& ctx) {
        if (ctx.rank == 1) fail_expect(ctx.rank);
        if (ctx.rank == 2) fail_assert();
      },
      quiet());
  ASSERT_EQ(outcomes.size(), 3u);
  EXPECT_EQ(outcomes[0].kind, Kind::Passed);

  EXPECT_EQ(outcomes[1].kind, Kind::Failed);
  EXPECT_EQ(outcomes[1].rank, 1);
  EXPECT_CONTAINS(outcomes[1].messages,
                  ("multiproc_self_test.cpp:" + std::to_string(kExpectLine) + ": Failure"));
  EXPECT_CONTAINS(outcomes[1].messages, ("expect marker"));
  EXPECT_CONTAINS(describe(outcomes[1], 3), ("rank 1 of 3 failed"));

  EXPECT_EQ(outcomes[2].kind, Kind::Failed);
  EXPECT_CONTAINS(outcomes[2].messages,
                  ("multiproc_self_test.cpp:" + std::to_string(kAssertLine) + ": Fatal failure"));
  EXPECT_CONTAINS(outcomes[2].messages, ("assert marker"));
}

TEST(MultiProc, UncaughtExceptionIsThrewWithItsMessage) {
  auto outcomes = run_ranks_collect(
      3,
      [](const RankContext& ctx) {
        if (ctx.rank == 0) throw std::runtime_error("boom from rank 0");
        if (ctx.rank == 2) throw 7;
      },
      quiet());
  ASSERT_EQ(outcomes.size(), 3u);
  EXPECT_EQ(outcomes[0].kind, Kind::Threw);
  EXPECT_CONTAINS(outcomes[0].messages, ("std::runtime_error"));
  EXPECT_CONTAINS(outcomes[0].messages, ("boom from rank 0"));
  EXPECT_EQ(outcomes[1].kind, Kind::Passed);
  EXPECT_EQ(outcomes[2].kind, Kind::Threw);
  EXPECT_CONTAINS(outcomes[2].messages, ("of type int"));
}

TEST(MultiProc, CrashIsReportedWithSignalAndOutputTail) {
  auto outcomes = run_ranks_collect(
      3,
      [](const RankContext& ctx) {
        if (ctx.rank == 1) {
          std::fprintf(stderr, "rank 1 about to crash\n");
          crash_with(SIGSEGV);
        }
        if (ctx.rank == 2) crash_with(SIGABRT);
      },
      quiet());
  ASSERT_EQ(outcomes.size(), 3u);
  EXPECT_EQ(outcomes[0].kind, Kind::Passed);

  EXPECT_EQ(outcomes[1].kind, Kind::Crashed);
  EXPECT_EQ(outcomes[1].signal, SIGSEGV);
  EXPECT_CONTAINS(outcomes[1].messages, ("rank 1 about to crash"));
  EXPECT_CONTAINS(describe(outcomes[1], 3), ("rank 1 of 3 crashed:\nkilled by signal " +
                                             std::to_string(SIGSEGV) + " (SIGSEGV"));

  EXPECT_EQ(outcomes[2].kind, Kind::Crashed);
  EXPECT_EQ(outcomes[2].signal, SIGABRT);
  EXPECT_CONTAINS(outcomes[2].messages, ("SIGABRT"));
}

TEST(MultiProc, ExitCalledByTheBodyIsExitedNonZero) {
  auto outcomes = run_ranks_collect(
      2,
      [](const RankContext& ctx) {
        if (ctx.rank == 1) ::_exit(7);
      },
      quiet());
  EXPECT_EQ(outcomes[0].kind, Kind::Passed);
  EXPECT_EQ(outcomes[1].kind, Kind::ExitedNonZero);
  EXPECT_EQ(outcomes[1].exit_code, 7);
  EXPECT_CONTAINS(outcomes[1].messages, ("exited with code 7"));
}

TEST(MultiProc, HangIsTimedOutNearTheDeadline) {
  MultiProcOptions options = quiet();
  options.deadline = seconds(2);
  const auto start = std::chrono::steady_clock::now();
  auto outcomes = run_ranks_collect(
      3,
      [](const RankContext& ctx) {
        if (ctx.rank == 1) {
          std::printf("rank 1 going to sleep\n");
          block_forever();
        }
      },
      options);
  const double elapsed = seconds_since(start);
  EXPECT_GE(elapsed, 2.0);
  EXPECT_LT(elapsed, 10.0);
  ASSERT_EQ(outcomes.size(), 3u);
  EXPECT_EQ(outcomes[0].kind, Kind::Passed);
  EXPECT_EQ(outcomes[2].kind, Kind::Passed);
  EXPECT_EQ(outcomes[1].kind, Kind::TimedOut);
  EXPECT_EQ(outcomes[1].signal, SIGKILL);
  EXPECT_CONTAINS(outcomes[1].messages, ("did not finish within 2 s (killed)"));
  EXPECT_CONTAINS(outcomes[1].messages, ("rank 1 going to sleep"));
}

TEST(MultiProc, FirstFailureKillsTheWaitingRanks) {
  MultiProcOptions options = quiet();
  options.deadline = seconds(60);
  options.failure_grace = milliseconds(500);
  const auto start = std::chrono::steady_clock::now();
  auto outcomes = run_ranks_collect(
      4,
      [](const RankContext& ctx) {
        if (ctx.rank == 1) crash_with(SIGABRT);
        block_forever();  // as if waiting for rank 1 in a collective
      },
      options);
  EXPECT_LT(seconds_since(start), 10.0);
  ASSERT_EQ(outcomes.size(), 4u);
  EXPECT_EQ(outcomes[1].kind, Kind::Crashed);
  for (int rank : {0, 2, 3}) {
    EXPECT_EQ(outcomes[rank].kind, Kind::KilledAfterPeerFailure) << rank;
    EXPECT_EQ(outcomes[rank].failed_peer, 1);
    EXPECT_CONTAINS(outcomes[rank].messages, ("still running 500 ms after rank 1 failed"));
  }
}

TEST(MultiProc, WithoutKillOnFirstFailureOthersRunToTheDeadline) {
  MultiProcOptions options = quiet();
  options.deadline = seconds(2);
  options.kill_on_first_failure = false;
  auto outcomes = run_ranks_collect(
      2,
      [](const RankContext& ctx) {
        if (ctx.rank == 1) throw std::runtime_error("rank 1 gives up");
        block_forever();
      },
      options);
  EXPECT_EQ(outcomes[0].kind, Kind::TimedOut);
  EXPECT_EQ(outcomes[1].kind, Kind::Threw);
}

TEST(MultiProc, ProcessesTheBodyLeftBehindAreKilled) {
  OutDir out_dir;
  MultiProcOptions options;
  options.env["TUTTI_SELF_TEST_OUT"] = out_dir.path().string();
  auto outcomes = run_ranks_collect(
      1,
      [](const RankContext&) {
        const pid_t pid = ::fork();
        if (pid == 0) block_forever();
        write_file_atomically(fs::path(std::getenv("TUTTI_SELF_TEST_OUT")) / "pid",
                              std::to_string(pid));
      },
      options);
  EXPECT_EQ(outcomes[0].kind, Kind::Passed) << describe(outcomes[0], 1);
  const std::string pid = read_file(out_dir.path() / "pid");
  ASSERT_FALSE(pid.empty());
  // SIGKILL lands asynchronously: allow it a moment to become gone, or a
  // zombie waiting for whoever inherited it to reap it.
  const auto give_up = std::chrono::steady_clock::now() + seconds(5);
  std::string stat = read_file("/proc/" + pid + "/stat");
  while (!stat.empty() && stat.find(") Z ") == std::string::npos &&
         std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(milliseconds(5));
    stat = read_file("/proc/" + pid + "/stat");
  }
  if (!stat.empty()) {
    EXPECT_CONTAINS(stat, ") Z ") << "pid " << pid << " still runs";
  }
}

TEST(MultiProc, ChattyRankDoesNotBlockAndTailIsBounded) {
  auto outcomes = run_ranks_collect(
      2,
      [](const RankContext& ctx) {
        for (int i = 0; i < 100000; ++i) std::printf("line %d\n", i);
        std::printf("last words of rank %d\n", ctx.rank);
        if (ctx.rank == 1) crash_with(SIGABRT);
      },
      quiet());
  EXPECT_EQ(outcomes[0].kind, Kind::Passed);
  EXPECT_EQ(outcomes[1].kind, Kind::Crashed);
  EXPECT_CONTAINS(outcomes[1].messages, ("last words of rank 1"));
  EXPECT_CONTAINS(outcomes[1].messages, ("line 99999\n"));
  EXPECT_PRED_FORMAT2(::testing::IsNotSubstring, "line 0\n", outcomes[1].messages);
  EXPECT_LT(outcomes[1].messages.size(), 5000u);
}

TEST(MultiProc, RejectsEmptyWorld) {
  EXPECT_THROW(run_ranks_collect(0, [](const RankContext&) {}), std::invalid_argument);
}

// EXPECT_NONFATAL_FAILURE's statement cannot see local variables.
void run_with_failing_rank_two() {
  run_ranks(
      3,
      [](const RankContext& ctx) {
        if (ctx.rank == 2) ADD_FAILURE() << "rank two says no";
      },
      quiet());
}

TEST(MultiProc, RunRanksAddsAFailureNamingTheRank) {
  EXPECT_NONFATAL_FAILURE(run_with_failing_rank_two(), "rank 2 of 3 failed");
}

TEST(MultiProc, RunRanksFailureIsAtTheCallerWithTheChildsMessage) {
  ::testing::TestPartResultArray failures;
  bool all_passed = true;
  int call_line = 0;
  {
    ::testing::ScopedFakeTestPartResultReporter reporter(
        ::testing::ScopedFakeTestPartResultReporter::INTERCEPT_ONLY_CURRENT_THREAD, &failures);
    call_line = __LINE__ + 1;
    all_passed = run_ranks(
        2,
        [](const RankContext& ctx) {
          if (ctx.rank == 0) ADD_FAILURE() << "rank zero says no";
          if (ctx.rank == 1) crash_with(SIGSEGV);
        },
        quiet());
  }
  EXPECT_FALSE(all_passed);
  ASSERT_EQ(failures.size(), 2);
  for (int i = 0; i < failures.size(); ++i) {
    EXPECT_CONTAINS(failures.GetTestPartResult(i).file_name(), ("multiproc_self_test.cpp"));
    EXPECT_EQ(failures.GetTestPartResult(i).line_number(), call_line);
    EXPECT_TRUE(failures.GetTestPartResult(i).nonfatally_failed());
  }
  EXPECT_CONTAINS(failures.GetTestPartResult(0).message(), ("rank 0 of 2 failed"));
  EXPECT_CONTAINS(failures.GetTestPartResult(0).message(), ("rank zero says no"));
  EXPECT_CONTAINS(failures.GetTestPartResult(1).message(), ("rank 1 of 2 crashed"));
  EXPECT_CONTAINS(failures.GetTestPartResult(1).message(), ("SIGSEGV"));
}

TEST(MultiProc, RunRanksReturnsTrueWhenAllPass) {
  EXPECT_TRUE(run_ranks(2, [](const RankContext&) {}));
}

}  // namespace
}  // namespace tutti::testing
