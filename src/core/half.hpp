// Scalar conversions between float32 and the 16-bit float formats, rounding
// to nearest even and keeping NaN a NaN. Bit patterns travel as uint16_t.
//
// The conversions are inline, branch-free integer code: the generic kernel
// variant calls them once per element, so they must not cost a function call,
// and the compiler can vectorise the select form. They reproduce the x86 F16C
// instructions (vcvtph2ps, vcvtps2ph with round-to-nearest-even) bit for bit,
// NaN payloads included, so the two kernel variants give identical results:
//   - a NaN is made quiet and keeps its sign and the top payload bits;
//   - no denormals-are-zero or flush-to-zero: subnormals convert exactly;
//   - a float32 that rounds past the largest finite float16 becomes infinity.
#pragma once

#include <algorithm>
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

constexpr float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t{h & 0x8000u} << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  const uint32_t mantissa = h & 0x3ffu;
  // Normal: rebias the exponent from 15 to 127 (112 = 127 - 15).
  const uint32_t normal = ((exponent + 112u) << 23) | (mantissa << 13);
  // Subnormal (and zero): mantissa * 2^-24, exact in float32.
  const uint32_t subnormal = float_bits(static_cast<float>(mantissa) * 0x1p-24f);
  // Infinity or NaN; a NaN gets the quiet bit, as vcvtph2ps does.
  const uint32_t special = 0x7f800000u | (mantissa << 13) | (mantissa != 0 ? 0x00400000u : 0u);
  const uint32_t magnitude = exponent == 0 ? subnormal : exponent == 0x1f ? special : normal;
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

  // Below 2^-14 the result is a multiple of 2^-24: shift the mantissa, with its
  // implicit bit, right so that one unit is 2^-24, rounding to nearest even.
  // Clamping the shift to [14, 31] keeps it defined for every input (the
  // select below discards the results outside this range) and still yields 0
  // for everything below 2^-25, float32 subnormals included, whose wrongly
  // assumed implicit bit cannot matter there.
  const uint32_t exponent = std::clamp(abs >> 23, 95u, 112u);
  const uint32_t shift = 126u - exponent;
  const uint32_t mantissa = (abs & 0x7fffffu) | 0x800000u;
  const uint32_t half_unit = 1u << (shift - 1);
  const uint32_t subnormal = (mantissa + half_unit - 1u + ((mantissa >> shift) & 1u)) >> shift;

  // A NaN stays NaN: quiet bit set, top payload bits kept (as vcvtps2ph).
  const uint32_t nan = 0x7e00u | ((abs >> 13) & 0x3ffu);
  // 65520 = 0x1.ffep15 is halfway between the largest finite half (65504)
  // and 65536; a tie goes to the even neighbour, which is infinity.
  constexpr uint32_t kOverflow = 0x477ff000u;
  constexpr uint32_t kSmallestNormal = 0x38800000u;  // 2^-14
  const uint32_t magnitude = abs > 0x7f800000u        ? nan
                             : abs >= kOverflow       ? 0x7c00u
                             : abs >= kSmallestNormal ? normal
                                                      : subnormal;
  return static_cast<uint16_t>(sign | magnitude);
}

}  // namespace tutti
