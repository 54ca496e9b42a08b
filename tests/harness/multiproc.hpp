// Multi-process GoogleTest harness: runs a test body once per rank, each rank
// in its own forked process, and turns what every rank did (passed, failed an
// assertion, threw, crashed, hung) into GoogleTest failures in the parent.
//
//   TEST(Allreduce, Sum) {
//     tutti::testing::run_ranks(4, [](const tutti::testing::RankContext& ctx) {
//       auto store = make_file_store(ctx.store_path);
//       ...
//       EXPECT_EQ(result, expected);
//     });
//   }
//
// Every child is killed when the deadline passes, so a hang fails the test
// instead of stalling CI. Linux only (fork, prctl, process groups).
//
// REQUIRES: the calling process has no other thread holding a lock the body
// needs (fork copies only the calling thread; a lock held elsewhere stays
// locked forever in the child).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace tutti::testing {

// What one rank's body sees.
struct RankContext {
  int rank = 0;
  int world_size = 0;
  // A fresh directory shared by all ranks, removed after the run.
  std::string shared_dir;
  // shared_dir + "/store": a path for a FileStore (not created).
  std::string store_path;
  // A TCP port on 127.0.0.1 that was free when the run started, for a
  // TCPStore hosted by rank 0. Another process may take it in between; a test
  // that needs certainty must retry with another port.
  uint16_t port = 0;
};

struct RankOutcome {
  enum class Kind {
    Passed,
    Failed,                  // one or more EXPECT/ASSERT failures
    Threw,                   // the body let an exception escape
    Crashed,                 // killed by a signal the harness did not send
    TimedOut,                // still running at the deadline; killed
    KilledAfterPeerFailure,  // still running a grace period after another
                             // rank failed; killed (see kill_on_first_failure)
    // The body called exit() with a non-zero code. Also how a sanitizer's
    // report ends (exit code 1; the report is in messages).
    ExitedNonZero,
  };

  int rank = 0;
  Kind kind = Kind::Passed;
  int exit_code = 0;  // when the process exited normally
  int signal = 0;     // when it was killed by a signal
  // The first failed rank, for KilledAfterPeerFailure; -1 otherwise.
  int failed_peer = -1;
  // Human-readable: "file:line: Failure ..." per assertion, the exception's
  // type and what(), and for crashes, hangs and kills the tail of the rank's
  // stdout+stderr.
  std::string messages;
};

const char* to_string(RankOutcome::Kind kind);

// One line (plus messages) saying what happened to the rank, e.g.
// "rank 1 of 4 crashed: killed by signal 11 (SIGSEGV: Segmentation fault)".
std::string describe(const RankOutcome& outcome, int world_size);

struct MultiProcOptions {
  // For the whole run; every rank still running then is killed.
  std::chrono::milliseconds deadline{60000};
  // Set in every child before the body runs.
  std::map<std::string, std::string> env;
  // When a rank fails, the others are often blocked waiting for it; kill the
  // ranks still running failure_grace after the first failure instead of
  // waiting for the deadline.
  bool kill_on_first_failure = true;
  std::chrono::milliseconds failure_grace{2000};
  // Copy the children's stdout and stderr to the parent's stderr, each line
  // prefixed with "[rank N] ". The tail is captured either way.
  bool echo_output = true;
};

// Runs body(ctx) in world_size child processes, one per rank, and returns one
// outcome per rank, in rank order. Adds no GoogleTest failure itself.
//
// In each child the body runs on a fresh thread (so an EXPECT_*FAILURE
// reporter active on the calling thread does not swallow the child's
// failures), stdout and stderr go to a pipe read by the parent, and the
// process _exit()s after the body: no atexit handlers, static destructors or
// GoogleTest teardown run in the child.
//
// Throws std::invalid_argument for world_size < 1 and std::system_error when
// a pipe, fork or the temporary directory cannot be created (children already
// started are killed first).
std::vector<RankOutcome> run_ranks_collect(int world_size,
                                           const std::function<void(const RankContext&)>& body,
                                           const MultiProcOptions& options = {});

// Where run_ranks was called from, so that its failures point at the test.
// std::source_location would do, but clang 14 (and so clang-tidy) cannot
// compile it against libstdc++ 12; these builtins work in gcc and clang.
struct CallSite {
  // NOLINTNEXTLINE(google-explicit-constructor): built implicitly by design.
  CallSite(const char* file = __builtin_FILE(), int line = __builtin_LINE())
      : file(file), line(line) {}
  const char* file;
  int line;
};

// run_ranks_collect, then one non-fatal GoogleTest failure per rank that did
// not pass, located at the caller and naming the rank and what happened.
// Returns whether every rank passed.
bool run_ranks(int world_size, const std::function<void(const RankContext&)>& body,
               const MultiProcOptions& options = {}, CallSite where = {});

}  // namespace tutti::testing
