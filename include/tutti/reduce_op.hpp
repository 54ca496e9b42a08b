// Reduction operators.
//
// Every reducing collective supports every kind on every dtype where it makes
// sense:
//   - SUM, PRODUCT, MIN, MAX on every dtype. On Bool, SUM and MAX are logical
//     OR, PRODUCT and MIN logical AND. Integers wrap on overflow.
//   - MIN and MAX propagate NaN (as torch.minimum/maximum).
//   - BAND, BOR, BXOR on Bool and integer dtypes only.
//   - AVG: SUM, then divide by the number of contributions; on integers the
//     division truncates toward zero. Not on Bool.
//   - PREMUL_SUM: multiply each input by factor, then SUM. On integers the
//     product is computed in double and truncated toward zero. Not on Bool.
// Float16 and BFloat16 are accumulated in float32 and rounded to nearest even.
// A kind that does not fit the dtype raises InvalidArgument.
#pragma once

#include <cstdint>

#include "tutti/types.hpp"

namespace tutti {

struct ReduceOp {
  enum Kind : uint8_t { SUM, AVG, PRODUCT, MIN, MAX, BAND, BOR, BXOR, PREMUL_SUM };

  ReduceOp(Kind k = SUM) : kind(k) {}  // NOLINT: implicit, as in c10d
  // Multiply each input by factor, then SUM.
  static ReduceOp premul_sum(double factor) {
    ReduceOp op(PREMUL_SUM);
    op.factor = factor;
    return op;
  }

  bool operator==(const ReduceOp&) const = default;

  Kind kind;
  double factor = 1.0;
};

const char* to_string(ReduceOp::Kind kind);  // "sum", "avg", ...
// Throws InvalidArgument for an unknown name.
ReduceOp::Kind reduce_kind_from_string(const char* name);
// Whether `op` is defined on `dtype` (see the table above).
bool supports(ReduceOp op, DType dtype);

}  // namespace tutti
