// What tutti-bench prints (on rank 0): nccl-tests' table, one row per size,
// a header per operation, a summary, and optionally the rows as JSON.
#pragma once

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "tutti_bench/options.hpp"

namespace tutti::bench {

struct Row {
  std::string op;
  std::string backend;
  int world_size = 0;
  int64_t size = 0;   // bytes: the larger of a rank's input and output
  int64_t count = 0;  // elements per rank, as passed to the operation
  std::string type;   // dtype name; "none" for barrier
  std::string redop;  // "none" for operations that do not reduce
  int root = -1;      // -1 for operations without a root
  double time_us = 0;
  double algbw = 0;              // GB/s: size / time
  double busbw = 0;              // GB/s: algbw * the operation's bus factor
  std::optional<int64_t> wrong;  // nullopt: not checked
};

class Report {
 public:
  // Rows and headers go to `out` as they come.
  explicit Report(std::FILE* out) : out_(out) {}

  void preamble(const BenchOptions& options, const std::string& backend, int world_size);
  void op_header(const std::string& op, const std::string& call, const BenchOptions& options,
                 const std::string& backend, int world_size);
  void note(const std::string& text);  // a "# ..." line
  void row(const Row& row);
  // nccl-tests' closing lines: wrong elements and the average bus bandwidth
  // over the rows of operations that move data.
  void summary(bool checked);

  int64_t total_wrong() const { return total_wrong_; }
  // The rows as a JSON array of objects with every column plus op, backend
  // and world_size. Throws std::runtime_error if the file cannot be written.
  void write_json(const std::string& path) const;

 private:
  std::FILE* out_;
  std::vector<Row> rows_;
  int64_t total_wrong_ = 0;
};

}  // namespace tutti::bench
