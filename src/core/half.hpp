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

constexpr float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t{h & 0x8000u} << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  const uint32_t mantissa = h & 0x3ffu;
  // Normal: rebias the exponent from 15 to 127 (112 = 127 - 15).
  const uint32_t normal = ((exponent + 112u) << 23) | (mantissa << 13);
  // Subnormal (and zero): mantissa * 2^-24, exact in float32 and a normal
  // float32, so no rounding mode or flush-to-zero setting can change it.
  const uint32_t subnormal =
      float_bits(static_cast<float>(static_cast<int32_t>(mantissa)) * 0x1p-24f);
  // Infinity or NaN; a NaN gets the quiet bit, as vcvtph2ps does.
  const uint32_t special = 0x7f800000u | (mantissa << 13) | (uint32_t{mantissa != 0} << 22);
  uint32_t magnitude = select_bits(exponent == 0, subnormal, normal);
  magnitude = select_bits(exponent == 0x1f, special, magnitude);
  return bits_float(sign | magnitude);
}

constexpr uint16_t float_to_half(float f) {
  const uint32_t u = float_bits(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t abs = u & 0x7fffffffu;

  // At least 2^-14 (the smallest normal half): rebias the exponent from 127
  // to 15, then round 23 mantissa bits to 10 as float_to_bf16 does. A carry
  // into the exponent is again the correctly rounded value.
  uint32_t normal = abs - (112u << 23);
  normal = (normal + 0xfffu + ((normal >> 13) & 1u)) >> 13;

  // Below 2^-14 the result is a float16 subnormal, a multiple of 2^-24. In
  // [0.5, 1) a float32's last mantissa bit is worth 2^-24, so adding 0.5 makes
  // the float addition itself round to nearest even at that bit, and the low
  // bits of the sum are the subnormal's pattern (0x400 when it rounds up to
  // the smallest normal). This needs the default rounding mode, as does all
  // float arithmetic in the kernels; denormals-are-zero cannot change the
  // result, since float32 subnormals round to zero here anyway.
  const uint32_t subnormal = float_bits(bits_float(abs) + 0.5f) - float_bits(0.5f);

  // A NaN stays NaN: quiet bit set, top payload bits kept (as vcvtps2ph).
  const uint32_t nan = 0x7e00u | ((abs >> 13) & 0x3ffu);
  // 65520 = 0x1.ffep15 is halfway between the largest finite half (65504)
  // and 65536; a tie goes to the even neighbour, which is infinity.
  constexpr uint32_t kOverflow = 0x477ff000u;
  constexpr uint32_t kSmallestNormal = 0x38800000u;  // 2^-14
  uint32_t magnitude = select_bits(abs >= kSmallestNormal, normal, subnormal);
  magnitude = select_bits(abs >= kOverflow, 0x7c00u, magnitude);
  magnitude = select_bits(abs > 0x7f800000u, nan, magnitude);
  return static_cast<uint16_t>(sign | magnitude);
}

}  // namespace tutti
