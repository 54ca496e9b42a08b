// Timing one operation at one size, and combining what every rank measured.
//
// Each timed iteration is timed on its own, from issuing the operation to
// its completion on this rank. Rank 0 takes, per iteration, the slowest
// rank's time (the operation is done when the last rank is done) and reports
// the median of those maxima, which shrugs off the odd iteration disturbed
// by a noisy neighbour. The times and wrong-element counts travel through the
// group's store, not through the collectives being measured, so a faulty
// collective cannot hide its own errors.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tutti/process_group.hpp"
#include "tutti_bench/ops.hpp"

namespace tutti::bench {

// What this rank measured.
struct Measurement {
  std::vector<double> seconds;  // one per timed iteration
  int64_t wrong = 0;            // wrong elements in the checked iteration (0 unchecked)
};

struct MeasureOptions {
  int warmup = 0;
  int iters = 1;
  bool check = true;
  // Test hook: flip elements of this rank's results before checking them.
  bool corrupt = false;
};

// fill, warm-up iterations, a barrier, the timed iterations; then, when
// checking, fill again, one more iteration, and count its wrong elements.
Measurement measure(OpCase& op, ProcessGroup& pg, const MeasureOptions& options);

// Across all ranks, for rank 0.
struct Combined {
  double seconds = 0;  // median over iterations of the slowest rank's time
  int64_t wrong = 0;   // sum over ranks
};

// Every rank calls this once per row with the same row_id; rank 0 returns the
// combination, the others nullopt.
std::optional<Combined> combine(Store& store, int rank, int size, uint64_t row_id,
                                const Measurement& mine);

// Makes the total number of wrong elements, known to rank 0, known to every
// rank, and keeps rank 0 (the store's host) alive until all have it.
int64_t share_total(ProcessGroup& pg, int64_t total_on_rank0, std::chrono::milliseconds timeout);

// Flips bits of a few elements (first, middle, last) of each tensor.
void corrupt(std::vector<Tensor> tensors);

}  // namespace tutti::bench
