// The operations tutti-bench measures: for each, how a size in bytes becomes
// element counts, nccl-tests' bus-bandwidth factor, and a case that sets up
// buffers, runs the operation once and checks what it produced.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tutti/process_group.hpp"
#include "tutti/reduce_op.hpp"
#include "tutti/tensor.hpp"

namespace tutti::bench {

// The element counts of one step of the sweep, as nccl-tests'
// getCollByteCount computes them from count = bytes / itemsize.
struct Counts {
  int64_t send = 0;   // elements of this rank's input
  int64_t recv = 0;   // elements of this rank's output
  int64_t param = 0;  // the per-rank count of the operation: nccl-tests' "count" column
};

// One operation at one size on this rank, with its buffers allocated.
class OpCase {
 public:
  virtual ~OpCase() = default;
  // Writes the deterministic inputs and poisons the outputs.
  virtual void fill() = 0;
  // Runs the operation once and waits until it has completed on this rank.
  virtual void run() = 0;
  // After fill() and run(): how many elements of this rank's results differ
  // from what they must be.
  virtual int64_t count_wrong() const = 0;
  // The tensors count_wrong() checks on this rank (none on some ranks).
  virtual std::vector<Tensor> results() = 0;
  // The ProcessGroup call measured, e.g. "allgather_into_tensor".
  virtual std::string call() const = 0;
};

struct CaseParams {
  ProcessGroup* pg = nullptr;
  DType dtype = DType::Float32;
  ReduceOp::Kind redop = ReduceOp::SUM;
  int root = 0;
  Counts counts;
};

struct OpSpec {
  const char* name;
  bool reduces;   // uses --redop
  bool rooted;    // uses --root
  bool sized;     // moves data; false: one row of size 0 (barrier)
  int min_ranks;  // fewer ranks: the op is skipped
  Counts (*counts)(int64_t count, int64_t ranks);
  double (*bus_factor)(int ranks);  // busbw = algbw * bus_factor
  std::unique_ptr<OpCase> (*make)(const CaseParams& params);
};

// Every operation, in the order --op all runs them.
const std::vector<OpSpec>& all_ops();
// nullptr for an unknown name.
const OpSpec* find_op(std::string_view name);
// "allreduce, broadcast, ..." for messages.
std::string op_names();

}  // namespace tutti::bench
