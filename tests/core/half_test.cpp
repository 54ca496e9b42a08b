// The float16 and bfloat16 conversions of core/half.hpp, checked against an
// independent reference: the value of every 16-bit pattern by the textbook
// formula, and rounding by nearest-neighbour search in double arithmetic.
// Then every kernel variant's block conversions (F16C and AVX2 in the avx2
// variant) against the scalar functions, bit for bit.
#include "core/half.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "core/reduce.hpp"
#include "core/reduce_variants.hpp"

namespace tutti {
namespace {

// A binary floating-point format with 16-bit patterns.
struct Format {
  const char* name;
  int exponent_bits;
  int mantissa_bits;

  uint16_t sign_bit() const { return 0x8000; }
  uint16_t infinity() const {
    return static_cast<uint16_t>(((1u << exponent_bits) - 1) << mantissa_bits);
  }
  uint16_t quiet_bit() const { return static_cast<uint16_t>(1u << (mantissa_bits - 1)); }
  bool is_nan(uint16_t bits) const { return (bits & 0x7fff) > infinity(); }
};

constexpr Format kHalf = {"float16", 5, 10};
constexpr Format kBF16 = {"bfloat16", 8, 7};

// The value of each pattern from 0 up to infinity's, by the formula: the
// pattern of infinity gets 2^(emax+1), where the binade after the largest
// finite one would begin, so rounding past the largest finite lands on it.
std::vector<double> pattern_values(const Format& format) {
  const int bias = (1 << (format.exponent_bits - 1)) - 1;
  std::vector<double> values(format.infinity() + 1u);
  for (uint32_t bits = 0; bits < values.size(); ++bits) {
    const int exponent = static_cast<int>(bits >> format.mantissa_bits);
    const double mantissa = bits & ((1u << format.mantissa_bits) - 1);
    values[bits] = exponent == 0 ? std::ldexp(mantissa, 1 - bias - format.mantissa_bits)
                                 : std::ldexp(mantissa + std::ldexp(1.0, format.mantissa_bits),
                                              exponent - bias - format.mantissa_bits);
  }
  return values;
}

const std::vector<double>& values_of(const Format& format) {
  static const std::vector<double> half = pattern_values(kHalf);
  static const std::vector<double> bf16 = pattern_values(kBF16);
  return format.exponent_bits == kHalf.exponent_bits ? half : bf16;
}

// Rounds a non-NaN float to the nearest pattern; on a tie, to the even one.
// Patterns are ordered like their values, so the pattern is the index.
uint16_t reference_round(const Format& format, float f) {
  const std::vector<double>& values = values_of(format);
  const double x = std::fabs(static_cast<double>(f));
  const uint16_t sign = std::signbit(f) ? format.sign_bit() : 0;
  const auto above = std::upper_bound(values.begin(), values.end(), x);
  if (above == values.end()) return sign | format.infinity();
  const auto hi = static_cast<uint16_t>(above - values.begin());
  const auto lo = static_cast<uint16_t>(hi - 1);
  // Both differences are exact: x and the pattern values share a binade's
  // spacing, far coarser than double's.
  const double below_distance = x - values[lo];
  const double above_distance = values[hi] - x;
  uint16_t nearest = below_distance < above_distance   ? lo
                     : above_distance < below_distance ? hi
                     : (lo % 2 == 0)                   ? lo
                                                       : hi;
  return sign | nearest;
}

std::string hex(uint32_t bits) {
  char text[16];
  std::snprintf(text, sizeof text, "0x%08x", bits);
  return text;
}

// Floats on and around every rounding boundary of `format`: each value, its
// float neighbours, each midpoint between consecutive values and the
// midpoint's neighbours, with both signs; then the float specials and an even
// sample of all 2^32 patterns.
std::vector<float> interesting_floats(const Format& format) {
  const std::vector<double>& values = values_of(format);
  std::vector<float> floats;
  const float inf = std::numeric_limits<float>::infinity();
  for (size_t i = 0; i + 1 < values.size(); ++i) {
    const auto value = static_cast<float>(values[i]);
    const auto midpoint = static_cast<float>((values[i] + values[i + 1]) / 2);
    EXPECT_EQ(static_cast<double>(midpoint), (values[i] + values[i + 1]) / 2);
    for (float f : {value, std::nextafter(value, inf), std::nextafter(value, 0.0f), midpoint,
                    std::nextafter(midpoint, inf), std::nextafter(midpoint, 0.0f)}) {
      floats.push_back(f);
      floats.push_back(-f);
    }
  }
  for (uint32_t bits : {0x7f800000u, 0x7f7fffffu, 0x00000001u, 0x007fffffu, 0x00800000u,
                        0x7f800001u, 0x7fc00000u, 0x7fffffffu, 0x7fa02000u, 0x7f801fffu}) {
    floats.push_back(bits_float(bits));
    floats.push_back(bits_float(bits | 0x80000000u));
  }
  for (uint64_t bits = 0; bits <= 0xffffffffu; bits += 997) {
    floats.push_back(bits_float(static_cast<uint32_t>(bits)));
  }
  return floats;
}

// The NaN a conversion must produce from a float NaN: sign kept, quiet bit
// set, the top payload bits kept.
uint16_t narrowed_nan(const Format& format, float f) {
  const uint32_t bits = float_bits(f);
  const auto top = static_cast<uint16_t>(bits >> (23 - format.mantissa_bits)) &
                   static_cast<uint16_t>((1u << format.mantissa_bits) - 1);
  const uint16_t sign = (bits >> 31) != 0 ? format.sign_bit() : 0;
  return sign | format.infinity() | format.quiet_bit() | top;
}

TEST(HalfTest, EveryPatternWidensToItsValue) {
  const std::vector<double>& values = values_of(kHalf);
  for (uint32_t bits = 0; bits <= 0xffff; ++bits) {
    const auto h = static_cast<uint16_t>(bits);
    const float f = half_to_float(h);
    ASSERT_EQ(std::signbit(f), (bits & 0x8000) != 0) << hex(bits);
    if (kHalf.is_nan(h)) {
      // Quiet, with the sign and payload moved up into the float's mantissa.
      ASSERT_EQ(float_bits(f), ((bits & 0x8000u) << 16) | 0x7fc00000u | ((bits & 0x3ffu) << 13))
          << hex(bits);
    } else if ((bits & 0x7fff) == kHalf.infinity()) {
      ASSERT_TRUE(std::isinf(f)) << hex(bits);
    } else {
      ASSERT_EQ(std::fabs(static_cast<double>(f)), values[bits & 0x7fff]) << hex(bits);
    }
  }
}

TEST(HalfTest, EveryPatternRoundTrips) {
  for (uint32_t bits = 0; bits <= 0xffff; ++bits) {
    const auto h = static_cast<uint16_t>(bits);
    const uint16_t expected = kHalf.is_nan(h) ? h | kHalf.quiet_bit() : h;
    ASSERT_EQ(float_to_half(half_to_float(h)), expected) << hex(bits);
    ASSERT_EQ(std::isnan(half_to_float(h)), kHalf.is_nan(h)) << hex(bits);
  }
}

TEST(HalfTest, BFloat16EveryPatternRoundTrips) {
  const std::vector<double>& values = values_of(kBF16);
  for (uint32_t bits = 0; bits <= 0xffff; ++bits) {
    const auto h = static_cast<uint16_t>(bits);
    const float f = bf16_to_float(h);
    if (kBF16.is_nan(h)) {
      ASSERT_TRUE(std::isnan(f)) << hex(bits);
      ASSERT_EQ(float_to_bf16(f), h | kBF16.quiet_bit()) << hex(bits);
    } else {
      if ((bits & 0x7fff) != kBF16.infinity()) {
        ASSERT_EQ(std::fabs(static_cast<double>(f)), values[bits & 0x7fff]) << hex(bits);
      }
      ASSERT_EQ(float_to_bf16(f), h) << hex(bits);
    }
  }
}

void expect_rounds_like_reference(const Format& format, uint16_t (*convert)(float)) {
  size_t mismatches = 0;
  for (float f : interesting_floats(format)) {
    const uint16_t expected = std::isnan(f) ? narrowed_nan(format, f) : reference_round(format, f);
    const uint16_t actual = convert(f);
    if (actual != expected && ++mismatches <= 10) {
      ADD_FAILURE() << format.name << ": " << hex(float_bits(f)) << " (" << f << ") gave "
                    << hex(actual) << ", expected " << hex(expected);
    }
  }
  EXPECT_EQ(mismatches, 0u);
}

TEST(HalfTest, FloatToHalfRoundsToNearestEven) {
  expect_rounds_like_reference(kHalf, float_to_half);
}

TEST(HalfTest, FloatToBFloat16RoundsToNearestEven) {
  expect_rounds_like_reference(kBF16, float_to_bf16);
}

TEST(HalfTest, EdgeCases) {
  EXPECT_EQ(float_to_half(65504.0f), 0x7bff);                 // largest finite
  EXPECT_EQ(float_to_half(65519.0f), 0x7bff);                 // below the tie
  EXPECT_EQ(float_to_half(65520.0f), 0x7c00);                 // tie: even is infinity
  EXPECT_EQ(float_to_half(-1e6f), 0xfc00);                    // overflow
  EXPECT_EQ(float_to_half(0x1p-24f), 0x0001);                 // smallest subnormal
  EXPECT_EQ(float_to_half(0x1p-25f), 0x0000);                 // tie: to even zero
  EXPECT_EQ(float_to_half(-0x1.8p-24f), 0x8002);              // tie: to even 2
  EXPECT_EQ(float_to_half(0x1.ffcp-15f), 0x0400);             // tie: up to the smallest normal
  EXPECT_EQ(float_to_half(2049.0f), 0x6800);                  // 2048: tie to even
  EXPECT_EQ(float_to_half(2051.0f), 0x6802);                  // 2052: tie to even
  EXPECT_EQ(float_to_bf16(257.0f), 0x4380);                   // 256: tie to even
  EXPECT_EQ(float_to_bf16(259.0f), 0x4382);                   // 260: tie to even
  EXPECT_EQ(float_to_bf16(bits_float(0x7f7f8000u)), 0x7f80);  // tie past max: infinity
  EXPECT_EQ(float_to_bf16(bits_float(0x7f7f7fffu)), 0x7f7f);  // just below the tie
  EXPECT_EQ(float_to_bf16(bits_float(0x00008000u)), 0x0000);  // subnormal tie to even
  EXPECT_EQ(float_to_bf16(bits_float(0x00018000u)), 0x0002);  // subnormal tie to even
}

// ---------------------------------------------------------------- kernel variants

// The bits of a conversion's result, so that NaNs compare by payload.
uint32_t bits_of(float f) { return float_bits(f); }
uint32_t bits_of(uint16_t h) { return h; }

// Runs the variant's block conversion over `in` and checks each result against the scalar function
// and that nothing outside the range was written.
template <typename In, typename Out, typename Block, typename Scalar>
void expect_block_matches_scalar(const std::vector<In>& in, Block block, Scalar scalar,
                                 const char* what, const char* variant) {
  constexpr Out kGuard = static_cast<Out>(0x5a5a);
  std::vector<Out> out(in.size() + 2, kGuard);
  block(in.data(), out.data() + 1, in.size());
  ASSERT_EQ(out.front(), kGuard) << what << " wrote before its output, " << variant;
  ASSERT_EQ(out.back(), kGuard) << what << " wrote past its output, " << variant;
  size_t mismatches = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    if (bits_of(out[i + 1]) != bits_of(scalar(in[i])) && ++mismatches <= 10) {
      ADD_FAILURE() << variant << " " << what << " element " << i << " of " << in.size();
    }
  }
  EXPECT_EQ(mismatches, 0u) << variant << " " << what;
}

std::vector<uint16_t> every_pattern() {
  std::vector<uint16_t> patterns(65536);
  for (uint32_t i = 0; i < patterns.size(); ++i) patterns[i] = static_cast<uint16_t>(i);
  return patterns;
}

TEST(HalfKernelTest, BlockConversionsMatchScalarBitForBit) {
  const std::vector<uint16_t> patterns = every_pattern();
  const std::vector<float> half_floats = interesting_floats(kHalf);
  const std::vector<float> bf16_floats = interesting_floats(kBF16);
  for (const kernels::KernelVariant& variant : kernels::available_variants()) {
    expect_block_matches_scalar<uint16_t, float>(patterns, variant.half_to_float, half_to_float,
                                                 "half_to_float", variant.name);
    expect_block_matches_scalar<uint16_t, float>(patterns, variant.bf16_to_float, bf16_to_float,
                                                 "bf16_to_float", variant.name);
    expect_block_matches_scalar<float, uint16_t>(half_floats, variant.float_to_half, float_to_half,
                                                 "float_to_half", variant.name);
    expect_block_matches_scalar<float, uint16_t>(bf16_floats, variant.float_to_bf16, float_to_bf16,
                                                 "float_to_bf16", variant.name);
  }
}

// Every length up to a few vectors, so each tail size is taken.
TEST(HalfKernelTest, ShortAndTailLengths) {
  std::mt19937 rng(7);
  for (const kernels::KernelVariant& variant : kernels::available_variants()) {
    for (size_t n = 0; n <= 40; ++n) {
      std::vector<uint16_t> patterns(n);
      std::vector<float> floats(n);
      for (size_t i = 0; i < n; ++i) {
        patterns[i] = static_cast<uint16_t>(rng());
        floats[i] = bits_float(static_cast<uint32_t>(rng()));
      }
      expect_block_matches_scalar<uint16_t, float>(patterns, variant.half_to_float, half_to_float,
                                                   "half_to_float", variant.name);
      expect_block_matches_scalar<uint16_t, float>(patterns, variant.bf16_to_float, bf16_to_float,
                                                   "bf16_to_float", variant.name);
      expect_block_matches_scalar<float, uint16_t>(floats, variant.float_to_half, float_to_half,
                                                   "float_to_half", variant.name);
      expect_block_matches_scalar<float, uint16_t>(floats, variant.float_to_bf16, float_to_bf16,
                                                   "float_to_bf16", variant.name);
    }
  }
}

// Through whole kernels: scaling by one rounds every pattern back to itself
// (NaN made quiet), and sums and products of random patterns, which round,
// agree between the variants.
TEST(HalfKernelTest, KernelsAgreeAcrossVariants) {
  const auto variants = kernels::available_variants();
  if (variants.size() < 2) {
    GTEST_SKIP() << "only the generic kernels run on this machine";
  }
  const std::vector<uint16_t> patterns = every_pattern();
  std::vector<uint16_t> shuffled = patterns;
  std::shuffle(shuffled.begin(), shuffled.end(), std::mt19937(11));
  for (const auto& [dtype, format] :
       {std::pair{DType::Float16, kHalf}, std::pair{DType::BFloat16, kBF16}}) {
    for (const kernels::KernelVariant& variant : variants) {
      std::vector<uint16_t> scaled(patterns.size());
      variant.scale(scaled.data(), patterns.data(), patterns.size(), dtype, 1.0);
      for (uint32_t bits = 0; bits <= 0xffff; ++bits) {
        const auto h = static_cast<uint16_t>(bits);
        ASSERT_EQ(scaled[bits], format.is_nan(h) ? h | format.quiet_bit() : h)
            << variant.name << " " << format.name << " " << hex(bits);
      }
    }
    for (ReduceOp::Kind kind : {ReduceOp::SUM, ReduceOp::PRODUCT, ReduceOp::MIN}) {
      std::vector<uint16_t> reference(patterns.size());
      variants[0].combine(reference.data(), patterns.data(), shuffled.data(), patterns.size(),
                          dtype, kind);
      for (const kernels::KernelVariant& variant : variants.subspan(1)) {
        std::vector<uint16_t> result(patterns.size());
        variant.combine(result.data(), patterns.data(), shuffled.data(), patterns.size(), dtype,
                        kind);
        EXPECT_EQ(result, reference)
            << variant.name << " " << format.name << " " << to_string(kind);
      }
    }
  }
}

TEST(HalfKernelTest, VectorisedVariantIsUsedWhereAvailable) {
  EXPECT_EQ(kernels::using_vectorized_kernels(), kernels::available_variants().size() > 1);
  EXPECT_STREQ(kernels::active_variant().name, kernels::available_variants().back().name);
}

}  // namespace
}  // namespace tutti
