// The compiled variants of the reduction kernels, for reduce.cpp to dispatch
// to and for tests and benchmarks to run side by side.
//
// Each variant is the same source, src/core/reduce_kernels.inl, compiled for a
// different instruction set: `generic` for the baseline target and, on x86-64,
// `avx2` with AVX2, F16C and FMA. They export the functions of reduce.hpp with
// the same contracts (minus its input validation, which reduce.cpp does once)
// and must give bit-identical results. Nothing outside src/core/ and the tests
// should call a variant directly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "tutti/reduce_op.hpp"
#include "tutti/types.hpp"

namespace tutti::kernels {

struct KernelVariant {
  const char* name;  // "generic", "avx2"
  void (*combine)(void* out, const void* a, const void* b, size_t n, DType dtype,
                  ReduceOp::Kind kind);
  void (*combine_many)(void* dst, const void* const* srcs, size_t count, size_t n, DType dtype,
                       ReduceOp::Kind kind);
  void (*scale)(void* out, const void* in, size_t n, DType dtype, double factor);
  void (*divide)(void* data, size_t n, DType dtype, int64_t divisor);
  // The block conversions the 16-bit float loops are built on.
  void (*half_to_float)(const uint16_t* in, float* out, size_t n);
  void (*float_to_half)(const float* in, uint16_t* out, size_t n);
  void (*bf16_to_float)(const uint16_t* in, float* out, size_t n);
  void (*float_to_bf16)(const float* in, uint16_t* out, size_t n);
};

// The variants compiled into this build that this CPU can run, generic first.
std::span<const KernelVariant> available_variants();

// The variant the functions of reduce.hpp dispatch to: the last available one.
const KernelVariant& active_variant();

// Raises the InvalidArgument that check_supported() would, or one for a kind
// that is not elementwise (AVG, PREMUL_SUM) where only elementwise kinds make
// sense. The variants call it for inputs their contract rules out; it lives
// out of line so that no string code is compiled for AVX2.
[[noreturn]] void throw_unsupported(const char* function, ReduceOp::Kind kind, DType dtype);

// The variants' entry points. Reach the avx2 ones through available_variants():
// they exist only in builds that define TUTTI_HAVE_AVX2_VARIANT, and run only
// where the CPU has AVX2, F16C and FMA.
namespace generic {
void combine(void* out, const void* a, const void* b, size_t n, DType dtype, ReduceOp::Kind kind);
void combine_many(void* dst, const void* const* srcs, size_t count, size_t n, DType dtype,
                  ReduceOp::Kind kind);
void scale(void* out, const void* in, size_t n, DType dtype, double factor);
void divide(void* data, size_t n, DType dtype, int64_t divisor);
void half_to_float(const uint16_t* in, float* out, size_t n);
void float_to_half(const float* in, uint16_t* out, size_t n);
void bf16_to_float(const uint16_t* in, float* out, size_t n);
void float_to_bf16(const float* in, uint16_t* out, size_t n);
}  // namespace generic

namespace avx2 {
void combine(void* out, const void* a, const void* b, size_t n, DType dtype, ReduceOp::Kind kind);
void combine_many(void* dst, const void* const* srcs, size_t count, size_t n, DType dtype,
                  ReduceOp::Kind kind);
void scale(void* out, const void* in, size_t n, DType dtype, double factor);
void divide(void* data, size_t n, DType dtype, int64_t divisor);
void half_to_float(const uint16_t* in, float* out, size_t n);
void float_to_half(const float* in, uint16_t* out, size_t n);
void bf16_to_float(const uint16_t* in, float* out, size_t n);
void float_to_bf16(const float* in, uint16_t* out, size_t n);
}  // namespace avx2

}  // namespace tutti::kernels
