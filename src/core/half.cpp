// The conversions live inline in half.hpp so the kernels can inline them.
// This file pins their contract at compile time: a change that breaks one of
// these values fails the build, before any test runs. NaN cases are left to
// the exhaustive checks in tests/core/half_test.cpp, since arithmetic that
// yields a NaN is not a constant expression for every compiler.
#include "core/half.hpp"

namespace tutti {
namespace {

// float16 -> float32 is exact.
static_assert(half_to_float(0x3c00) == 1.0f);
static_assert(half_to_float(0xc000) == -2.0f);
static_assert(half_to_float(0x7bff) == 65504.0f);                 // largest finite
static_assert(half_to_float(0x0400) == 0x1p-14f);                 // smallest normal
static_assert(half_to_float(0x0001) == 0x1p-24f);                 // smallest subnormal
static_assert(half_to_float(0x03ff) == 0x3ffp-24f);               // largest subnormal
static_assert(float_bits(half_to_float(0x8000)) == 0x80000000u);  // -0 keeps its sign
static_assert(float_bits(half_to_float(0x7c00)) == 0x7f800000u);  // +inf

// float32 -> float16 rounds to nearest, ties to even.
static_assert(float_to_half(1.0f) == 0x3c00);
static_assert(float_to_half(1.0f + 0x1p-11f) == 0x3c00);      // tie, down to even
static_assert(float_to_half(1.0f + 3 * 0x1p-11f) == 0x3c02);  // tie, up to even
static_assert(float_to_half(65504.0f) == 0x7bff);
static_assert(float_to_half(65519.996f) == 0x7bff);  // just below the tie
static_assert(float_to_half(65520.0f) == 0x7c00);    // tie goes to infinity
static_assert(float_to_half(0x1p-24f) == 0x0001);
static_assert(float_to_half(0x1p-25f) == 0x0000);         // tie, down to even zero
static_assert(float_to_half(0x1.000002p-25f) == 0x0001);  // just above the tie
static_assert(float_to_half(0x3p-25f) == 0x0002);         // tie, up to even
static_assert(float_to_half(0x1.ffcp-15f) == 0x0400);     // rounds up to normal
static_assert(float_to_half(-0.0f) == 0x8000);
static_assert(float_to_half(0x1p-149f) == 0x0000);                // float32 subnormal
static_assert(float_to_half(bits_float(0x7f800000u)) == 0x7c00);  // +inf

// float32 -> bfloat16 likewise.
static_assert(float_to_bf16(1.0f) == 0x3f80);
static_assert(float_to_bf16(1.0f + 0x1p-8f) == 0x3f80);           // tie, down to even
static_assert(float_to_bf16(1.0f + 3 * 0x1p-8f) == 0x3f82);       // tie, up to even
static_assert(float_to_bf16(bits_float(0x7f7fffffu)) == 0x7f80);  // overflow to +inf
static_assert(bf16_to_float(0x3f80) == 1.0f);

}  // namespace
}  // namespace tutti
