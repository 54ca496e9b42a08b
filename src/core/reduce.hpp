// Reduction kernels: the inner loop of every reducing collective.
//
// Each call runs one tight loop for one (dtype, kind) pair chosen once per
// call, never per element. Float16 and BFloat16 are widened to float32,
// combined, and rounded back to nearest even. Integers wrap on overflow.
// MIN and MAX propagate NaN. On x86-64 with AVX2+F16C the loops run a
// vectorised variant selected at run time.
#pragma once

#include <cstddef>
#include <cstdint>

#include "tutti/reduce_op.hpp"
#include "tutti/types.hpp"

namespace tutti::kernels {

// Throws InvalidArgument("<context>: cannot use ReduceOp.BAND on dtype
// float32 ...") when op is not defined on dtype (see reduce_op.hpp).
void check_supported(ReduceOp op, DType dtype, const char* context);

// The elementwise kind that combines two contributions: SUM for AVG and
// PREMUL_SUM, the kind itself otherwise.
ReduceOp::Kind combine_kind(ReduceOp op);

// out[i] = a[i] (kind) b[i] for i < n. out may alias a or b.
// REQUIRES: kind is not AVG or PREMUL_SUM; supports(kind, dtype).
void combine(void* out, const void* a, const void* b, size_t n, DType dtype, ReduceOp::Kind kind);

// dst[i] = dst[i] (kind) src[i].
inline void combine_into(void* dst, const void* src, size_t n, DType dtype, ReduceOp::Kind kind) {
  combine(dst, dst, src, n, dtype, kind);
}

// dst[i] = srcs[0][i] (kind) srcs[1][i] ... (kind) srcs[count-1][i], with
// Float16/BFloat16 accumulated in float32 and rounded once at the end.
// dst may alias srcs[0]. REQUIRES: count >= 1.
void combine_many(void* dst, const void* const* srcs, size_t count, size_t n, DType dtype,
                  ReduceOp::Kind kind);

// out[i] = in[i] * factor (PREMUL_SUM's pre-multiplication). The factor is
// applied in float32 for Float16/BFloat16/Float32, in float64 for Float64,
// and in float64 with truncation toward zero for integers, where results
// outside the dtype's range saturate and NaN becomes 0. out may alias in.
// REQUIRES: dtype is not Bool.
void scale(void* out, const void* in, size_t n, DType dtype, double factor);

// data[i] /= divisor (AVG's final step); integers truncate toward zero,
// 16-bit floats divide in float32. REQUIRES: divisor > 0, dtype not Bool.
void divide(void* data, size_t n, DType dtype, int64_t divisor);

// Whether the vectorised (AVX2+F16C) variant is in use on this machine.
bool using_vectorized_kernels();

}  // namespace tutti::kernels
