// What the C++ sides of the gloo comparison share: the command line, the
// command loop and the timing. torch_side.py mirrors them, and compare.py
// (the launcher) drives all three the same way.
//
// A side is world_size processes that connect once and then run what the
// launcher writes on their standard input, one line at a time:
//
//   run <op> <variant> <bytes> <iterations> <warmup>
//   quit
//
// and answer each run with one line on standard output:
//
//   RESULT <op> <variant> <bytes> <median ns> <min ns> <iterations>
//
// Driving the sides step by step, rather than letting each run its whole
// schedule, is what lets the launcher interleave them size by size (A B C,
// A B C, ...): on this shared machine the load changes from one second to
// the next, and sides measured minutes apart would not see the same one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

namespace gloo_compare {

struct Args {
  int rank = 0;
  int world_size = 2;
  std::string host = "127.0.0.1";
  int port = 0;           // tutti: the TCPStore's port, picked by the launcher
  std::string store_dir;  // raw gloo: the FileStore's directory
};

// One measurement: `bytes` is nccl-tests' size (allreduce: the buffer;
// allgather: the whole output, so each rank contributes bytes / world_size),
// timed over `iterations` after `warmup` untimed ones.
struct Command {
  std::string op;  // "allreduce", "allgather"
  // Raw gloo: the allreduce algorithm to run ("ring", "bcube"). Elsewhere a
  // label the side only echoes (tutti's algorithm is its own choice, or
  // TUTTI_GLOO_ALLREDUCE's, which the launcher sets).
  std::string variant;
  size_t bytes = 0;
  int iterations = 0;
  int warmup = 0;
};

// Parses the command line shared by the sides; exits with a usage message on
// a bad one.
Args parse_args(int argc, char** argv, const char* description);

// Prints READY (the side is connected), then runs each command read from
// standard input through `run` until "quit" or end of input. Throws
// std::invalid_argument on a malformed command.
void serve(const std::function<void(const Command&)>& run);

// Runs `op` command.warmup times untimed, then command.iterations times timed
// one by one, and prints the RESULT line. The median of per-iteration times
// rather than the mean, so that an iteration stalled by another process on
// this shared machine does not move the figure.
void measure(const Command& command, const std::function<void()>& op);

// Throws std::runtime_error naming op and size when got != want: every side
// checks its result once per command before timing, so a fast wrong answer
// cannot pass for a fast right one.
void expect_equal(const Command& command, const float* got, size_t count,
                  const std::function<float(size_t)>& want);

}  // namespace gloo_compare
