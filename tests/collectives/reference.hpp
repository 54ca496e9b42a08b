// Deterministic inputs and an independent reference for the collective suite.
//
// Every rank's input is a pure function of (rank, element index, dtype, op),
// so each rank can compute what every other rank contributed and reduce it
// itself, in double (or int64 / uint64) arithmetic, without tutti's kernels.
// Values are small integers (or halves, for PREMUL_SUM), so sums and products
// of up to 4 ranks are exact in every dtype and the only rounding is the
// final one (AVG's division), which both sides round to nearest even.
#pragma once

#include <cstdint>
#include <string>

#include "tutti/reduce_op.hpp"
#include "tutti/tensor.hpp"

namespace tutti::testing {

// input_value is periodic in index with this period, so inputs and expected
// results are computed once per period.
inline constexpr int64_t kInputPeriod = 85;

// The value rank `rank` contributes at `index`, as a double (exact).
double input_value(DType dtype, ReduceOp op, int rank, int64_t index);

// A tensor of `count` elements filled with input_value(dtype, op, rank, i + offset).
Tensor make_input(DType dtype, ReduceOp op, int rank, int64_t count, int64_t offset = 0);

// The expected result at `index` of reducing the inputs of ranks 0..size-1
// with `op`, rounded to dtype, as the bits of one element (widened to
// uint64 for comparison).
uint64_t expected_bits(DType dtype, ReduceOp op, int size, int64_t index);

// The bits of element i of t, widened to uint64.
uint64_t element_bits(const Tensor& t, int64_t i);
// Element i of t as a double (for messages).
double element_value(const Tensor& t, int64_t i);

// Compares t (count elements) against expected_bits for element index +
// offset; returns "" if all match, else a message naming the first
// mismatches.
std::string compare_reduced(const Tensor& t, ReduceOp op, int size, int64_t offset = 0);
// Compares t against make_input(dtype, op, rank, count, offset) bit for bit.
std::string compare_input(const Tensor& t, ReduceOp op, int rank, int64_t offset = 0);

}  // namespace tutti::testing
