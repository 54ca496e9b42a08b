// Deterministic inputs and the results they must produce, computed without
// tutti's kernels, so that tutti-bench can check every operation it times.
//
// Rank r's input at element index i is a pure function of (dtype, kind, r,
// i mod kPatternPeriod), so every rank can compute what any other rank
// contributed and reduce it itself. The values are small integers chosen so
// that every partial result of a reduction is exact in the dtype (integers
// wrap, which is exact modular arithmetic), so the order in which an
// algorithm combines contributions does not change the result; only AVG
// rounds, once, at the end, as tutti does. Sums of 16-bit floats stay exact
// up to 128 ranks (bfloat16 holds every integer up to 256).
#pragma once

#include <cstdint>
#include <optional>

#include "tutti/reduce_op.hpp"
#include "tutti/tensor.hpp"

namespace tutti::bench {

// A prime, so that a block of data moved to the wrong place by a whole number
// of chunks (powers of two, multiples of the rank count) is still caught.
inline constexpr int64_t kPatternPeriod = 65521;

class Pattern {
 public:
  // `reduction`: the op the data will be reduced with (its values are chosen
  // to keep reductions exact); nullopt for operations that only move data,
  // whose values use the whole range of the dtype. REQUIRES:
  // supports(*reduction, dtype).
  Pattern(DType dtype, std::optional<ReduceOp::Kind> reduction, int world_size);

  // t[i] = rank `rank`'s input at index offset + i. REQUIRES: t contiguous.
  void fill(Tensor& t, int rank, int64_t offset) const;
  // Fills t with bytes that no float input or result has (NaN) and few
  // integer ones have, so an operation that leaves its output untouched is
  // caught.
  static void poison(Tensor& t);

  // Elements of t that differ from rank `rank`'s input at offset + i.
  int64_t count_wrong_input(const Tensor& t, int rank, int64_t offset) const;
  // Elements of t that differ from the reduction over all ranks of the inputs
  // at offset + i.
  int64_t count_wrong_reduced(const Tensor& t, int64_t offset) const;

 private:
  int64_t input(int rank, int64_t index) const;  // before encoding into the dtype
  uint64_t encode_input(int rank, int64_t index) const;
  uint64_t encode_reduced(int64_t index) const;

  DType dtype_;
  std::optional<ReduceOp::Kind> reduction_;
  int world_size_;
};

// The bits of `value` rounded to nearest even into a 16-bit float.
uint16_t float_to_half_bits(float value);
uint16_t float_to_bfloat16_bits(float value);

}  // namespace tutti::bench
