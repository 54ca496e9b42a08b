// What the C++ sides of the gloo comparison share: the command line, the
// size schedule and the timing loop. torch_side.py mirrors them, and
// compare.py (the launcher) relies on the same RESULT lines from all three.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace gloo_compare {

// One message size: nccl-tests' "size" (allreduce: the buffer; allgather:
// the whole output, so each rank contributes bytes / world_size), with the
// iterations to time and the untimed warm-up iterations before them.
struct Step {
  size_t bytes = 0;
  int iterations = 0;
  int warmup = 0;
};

struct Args {
  int rank = 0;
  int world_size = 2;
  std::vector<Step> schedule;
  std::vector<std::string> ops;  // "allreduce", "allgather"
  // Side-specific: raw gloo's allreduce algorithms ("ring", "bcube").
  std::vector<std::string> variants;
  std::string host = "127.0.0.1";
  int port = 0;           // tutti: the TCPStore's port, picked by the launcher
  std::string store_dir;  // raw gloo: the FileStore's directory
};

// Parses the command line shared by the sides; exits with a usage message on
// a bad one.
Args parse_args(int argc, char** argv, const char* description);

bool wants(const Args& args, const std::string& op);

// Runs `op` step.warmup times untimed, then step.iterations times timed one
// by one, and prints the line compare.py reads:
//   RESULT <op> <variant> <bytes> <median ns> <min ns> <iterations>
// The median of per-iteration times rather than the mean, so that an
// iteration stalled by another process on this shared machine does not
// move the figure.
void measure(const std::string& op, const std::string& variant, const Step& step,
             const std::function<void()>& run);

// Throws std::runtime_error naming op and size when got != want (the check
// every side makes once per size before timing, so a fast wrong answer
// cannot pass for a fast right one).
void expect_equal(const std::string& op, size_t bytes, const float* got, size_t count,
                  const std::function<float(size_t)>& want);

}  // namespace gloo_compare
