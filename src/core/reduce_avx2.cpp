// The reduction kernels built for AVX2 + F16C + FMA (this file is compiled
// with -mavx2 -mf16c -mfma). reduce.cpp runs them only after checking the CPU
// has all three; the library itself stays runnable on any x86-64.
//
// The 16-bit float conversions use the hardware: F16C for float16 and 256-bit
// integer arithmetic for bfloat16. They match the scalar conversions of
// half.hpp bit for bit (tests/core/half_test.cpp checks it), NaN payloads
// included. Tails shorter than a vector go through the same instructions on a
// zero-padded copy rather than through the scalar functions: those are inline
// functions shared with baseline code, and must not be compiled here (see the
// top of reduce_kernels.inl).
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "core/reduce_variants.hpp"

namespace tutti::kernels::avx2 {
namespace {

// Rounds eight float32 to bfloat16, nearest even, in the low 16 bits of each
// 32-bit lane. A NaN keeps its sign and top payload bits and becomes quiet.
__m256i round_to_bf16(__m256 value) {
  const __m256i bits = _mm256_castps_si256(value);
  const __m256i is_nan = _mm256_castps_si256(_mm256_cmp_ps(value, value, _CMP_UNORD_Q));
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
  const __m256i rounded = _mm256_add_epi32(bits, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lsb));
  const __m256i quieted = _mm256_or_si256(bits, _mm256_set1_epi32(0x00400000));
  return _mm256_srli_epi32(_mm256_blendv_epi8(rounded, quieted, is_nan), 16);
}

}  // namespace

void half_to_float(const uint16_t* in, float* out, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i half = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i));
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(half));
  }
  if (i == n) return;
  alignas(16) uint16_t padded_in[8] = {};
  alignas(32) float padded_out[8];
  std::memcpy(padded_in, in + i, (n - i) * sizeof(uint16_t));
  _mm256_store_ps(padded_out,
                  _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(padded_in))));
  std::memcpy(out + i, padded_out, (n - i) * sizeof(float));
}

void float_to_half(const float* in, uint16_t* out, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i half = _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), half);
  }
  if (i == n) return;
  alignas(32) float padded_in[8] = {};
  alignas(16) uint16_t padded_out[8];
  std::memcpy(padded_in, in + i, (n - i) * sizeof(float));
  _mm_store_si128(reinterpret_cast<__m128i*>(padded_out),
                  _mm256_cvtps_ph(_mm256_load_ps(padded_in), _MM_FROUND_TO_NEAREST_INT));
  std::memcpy(out + i, padded_out, (n - i) * sizeof(uint16_t));
}

void bf16_to_float(const uint16_t* in, float* out, size_t n) {
  // bfloat16 is the top half of a float32: zero-extend and shift.
  auto widen = [](__m128i bf16) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(bf16), 16));
  };
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(out + i, widen(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i))));
  }
  if (i == n) return;
  alignas(16) uint16_t padded_in[8] = {};
  alignas(32) float padded_out[8];
  std::memcpy(padded_in, in + i, (n - i) * sizeof(uint16_t));
  _mm256_store_ps(padded_out, widen(_mm_load_si128(reinterpret_cast<const __m128i*>(padded_in))));
  std::memcpy(out + i, padded_out, (n - i) * sizeof(float));
}

void float_to_bf16(const float* in, uint16_t* out, size_t n) {
  // Sixteen at a time: packus narrows two vectors of 32-bit lanes to 16 bits
  // (no saturation happens, every lane is below 2^16) but interleaves their
  // 128-bit halves; the permute puts the four 64-bit quarters back in order.
  auto narrow16 = [](__m256 low, __m256 high) {
    const __m256i packed = _mm256_packus_epi32(round_to_bf16(low), round_to_bf16(high));
    return _mm256_permute4x64_epi64(packed, 0xd8);
  };
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i),
                        narrow16(_mm256_loadu_ps(in + i), _mm256_loadu_ps(in + i + 8)));
  }
  if (i == n) return;
  alignas(32) float padded_in[16] = {};
  alignas(32) uint16_t padded_out[16];
  std::memcpy(padded_in, in + i, (n - i) * sizeof(float));
  _mm256_store_si256(reinterpret_cast<__m256i*>(padded_out),
                     narrow16(_mm256_load_ps(padded_in), _mm256_load_ps(padded_in + 8)));
  std::memcpy(out + i, padded_out, (n - i) * sizeof(uint16_t));
}

#include "core/reduce_kernels.inl"

}  // namespace tutti::kernels::avx2
