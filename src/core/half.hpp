// Scalar conversions between float32 and the 16-bit float formats, rounding
// to nearest even and keeping NaN a NaN. Bit patterns travel as uint16_t.
//
// The conversions are inline and branch-free: the generic kernel variant
// calls them once per element, so they must not cost a function call, and
// written as selects the compiler vectorises them. They reproduce the x86 F16C
// instructions (vcvtph2ps, vcvtps2ph with round-to-nearest-even) bit for bit,
// NaN payloads included, so the two kernel variants give identical results:
//   - a NaN is made quiet and keeps its sign and the top payload bits;
//   - no denormals-are-zero or flush-to-zero: subnormals convert exactly;
//   - a float32 that rounds past the largest finite float16 becomes infinity.
#pragma once

#include <bit>
#include <cstdint>

namespace tutti {

constexpr uint32_t float_bits(float f) { return std::bit_cast<uint32_t>(f); }

constexpr float bits_float(uint32_t u) { return std::bit_cast<float>(u); }

constexpr float bf16_to_float(uint16_t h) { return bits_float(uint32_t{h} << 16); }

constexpr uint16_t float_to_bf16(float f) {
  uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) {  // NaN: keep sign, force quiet bit
    return static_cast<uint16_t>((u >> 16) | 0x0040u);
  }
  // Adding 0x7fff rounds to nearest; the extra low bit of the result makes a
  // tie round to even. A carry out of the mantissa bumps the exponent, which
  // is exactly the rounded value (up to infinity past the largest finite).
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// condition ? if_true : if_false, with masks. Compilers keep ?: on
// integers computed from float arithmetic as a branch (float operations may
// raise FP flags, so they are not evaluated speculatively), which stops a loop
// from vectorising; this form has no branch to keep.
constexpr uint32_t select_bits(bool condition, uint32_t if_true, uint32_t if_false) {
  const uint32_t mask = 0u - uint32_t{condition};
  return (if_true & mask) | (if_false & ~mask);
}

// The two conversions below follow the FP16 library (github.com/Maratyszcza/
// FP16, also used by PyTorch), which lets float32 arithmetic do the exponent
// adjustment and the rounding, and keep the NaN payload as F16C does. The
// float operations are exact except for the one addition that rounds, which
// relies on the default round-to-nearest-even mode, as does every float
// operation in the kernels. Flush-to-zero and denormals-are-zero cannot change
// a result: no intermediate that matters is a float32 subnormal.

constexpr float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t{h & 0x8000u} << 16;
  const uint32_t magnitude = h & 0x7fffu;
  // Normal, infinity and NaN: place exponent and mantissa as float32's, with
  // the exponent rebiased by 224 instead of 112 (= 127 - 15), and multiply by
  // 2^-112. The multiplication takes off the extra bias exactly, and float16's
  // all-ones exponent, now 255, is float32's infinity or NaN with no special
  // case; a NaN comes out quiet, payload kept.
  const uint32_t normal = float_bits(bits_float((magnitude << 13) + (224u << 23)) * 0x1p-112f);
  // Subnormal and zero: mantissa * 2^-24. Put under 0.5's exponent, where the
  // last mantissa bit is worth 2^-24, the bits read 0.5 + mantissa * 2^-24;
  // subtracting 0.5 leaves the value, exactly.
  const uint32_t subnormal = float_bits(bits_float(magnitude | (126u << 23)) - 0.5f);
  return bits_float(sign | select_bits(magnitude < 0x0400u, subnormal, normal));
}

constexpr uint16_t float_to_half(float f) {
  const uint32_t u = float_bits(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  // Below 2^31, so the comparisons are signed ones, which every SIMD
  // instruction set has.
  const auto abs = static_cast<int32_t>(u & 0x7fffffffu);
  // |f| * 4, except that from 2^16 up, where float16 has certainly
  // overflowed, the first multiplication makes it infinity.
  const float scaled = bits_float(static_cast<uint32_t>(abs)) * 0x1p+112f * 0x1p-110f;
  // Adding scaled to 2^(e - 112), for f's exponent e (at least the float16
  // normal minimum), lines f's mantissa up so that the sum's last bit is
  // float16's last mantissa bit for f: the addition rounds to nearest even
  // exactly where float16 must, subnormals included, and carries into the
  // exponent when it rounds up. The float16 pattern is then the sum's low
  // exponent bits plus its low mantissa bits (whose implicit 1 adds one to
  // the exponent field), infinity included.
  const int32_t exponent = abs & 0x7f800000;
  const int32_t bias = exponent < (113 << 23) ? (113 << 23) : exponent;
  const uint32_t sum = float_bits(bits_float(static_cast<uint32_t>(bias) + (15u << 23)) + scaled);
  const uint32_t rounded = ((sum >> 13) & 0x7c00u) + (sum & 0x0fffu);
  // A NaN stays NaN: quiet bit set, top payload bits kept (as vcvtps2ph).
  const uint32_t nan = 0x7e00u | ((static_cast<uint32_t>(abs) >> 13) & 0x3ffu);
  return static_cast<uint16_t>(sign | select_bits(abs > 0x7f800000, nan, rounded));
}

}  // namespace tutti
