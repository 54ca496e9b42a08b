// The reduction kernels for the baseline target: the portable fallback, and
// the reference the AVX2 variant must match bit for bit. Built with -O3 so the
// loops of reduce_kernels.inl vectorise with whatever the baseline offers.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "core/half.hpp"
#include "core/reduce_variants.hpp"

namespace tutti::kernels::generic {

// The 16-bit float block conversions, one scalar conversion per element. The
// scalar functions are branch-free, so the compiler may vectorise these too.
void half_to_float(const uint16_t* in, float* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = tutti::half_to_float(in[i]);
}

void float_to_half(const float* in, uint16_t* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = tutti::float_to_half(in[i]);
}

void bf16_to_float(const uint16_t* in, float* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = tutti::bf16_to_float(in[i]);
}

void float_to_bf16(const float* in, uint16_t* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = tutti::float_to_bf16(in[i]);
}

#include "core/reduce_kernels.inl"

}  // namespace tutti::kernels::generic
