// tutti-bench's command line: what to run, how often, and what to report.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tutti/reduce_op.hpp"
#include "tutti/types.hpp"

namespace tutti::bench {

struct BenchOptions {
  std::string backend = "auto";
  std::vector<std::string> ops;  // names from op_names(), in the order they run
  DType dtype = DType::Float32;
  ReduceOp::Kind redop = ReduceOp::SUM;
  int root = 0;
  uint64_t min_bytes = 8;
  uint64_t max_bytes = uint64_t{32} << 20;
  int iters = 20;
  int warmup = 5;
  bool check = true;
  std::string json_path;  // empty: no JSON
  int timeout_seconds = 300;
};

// Exit codes of tutti-bench.
inline constexpr int kExitOk = 0;
inline constexpr int kExitWrongResults = 1;  // a check found wrong elements
inline constexpr int kExitUsage = 2;         // bad options
inline constexpr int kExitRuntimeError = 3;  // an operation or the store failed

// "8", "1K", "64M", "1.5G" (binary multiples, case-insensitive, as
// nccl-tests' -b/-e). nullopt if `text` is not such a size.
std::optional<uint64_t> parse_size(const std::string& text);

// Parses argv. On success returns the options; on --help returns nullopt with
// exit_code = 0; on a bad option prints why (when `print_errors`) and returns
// nullopt with exit_code = kExitUsage.
std::optional<BenchOptions> parse_options(int argc, char** argv, bool print_errors, int& exit_code);

}  // namespace tutti::bench
