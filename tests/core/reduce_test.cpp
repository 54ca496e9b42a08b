// The reduction kernels, dispatched and per variant, over every dtype and
// every kind, against a reference computed element by element here: integers
// exactly in 128 bits and wrapped, floats in double and rounded to the dtype
// by a rounding routine of this file. For + - * / on float16, bfloat16 and
// float32, rounding the double result again is the same as rounding the exact
// result once (double has more than 2p + 2 bits), so results must match bit
// for bit.
#include "core/reduce.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "core/reduce_variants.hpp"
#include "tutti/errors.hpp"
#include "tutti/reduce_op.hpp"

namespace tutti::kernels {
namespace {

constexpr DType kAllDTypes[] = {DType::Bool,    DType::UInt8,  DType::Int8,    DType::Int16,
                                DType::Int32,   DType::Int64,  DType::Float16, DType::BFloat16,
                                DType::Float32, DType::Float64};
constexpr ReduceOp::Kind kAllKinds[] = {ReduceOp::SUM, ReduceOp::AVG,  ReduceOp::PRODUCT,
                                        ReduceOp::MIN, ReduceOp::MAX,  ReduceOp::BAND,
                                        ReduceOp::BOR, ReduceOp::BXOR, ReduceOp::PREMUL_SUM};
constexpr size_t kLengths[] = {0, 1, 7, 15, 17, 1023, 4099};

// ---------------------------------------------------------------- kernels under test

// The entry points of reduce.hpp, then each variant this machine can run.
struct Kernels {
  std::string name;
  decltype(&kernels::combine) combine;
  decltype(&kernels::combine_many) combine_many;
  decltype(&kernels::scale) scale;
  decltype(&kernels::divide) divide;
};

std::vector<Kernels> kernels_under_test() {
  std::vector<Kernels> all = {
      {"dispatched", kernels::combine, kernels::combine_many, kernels::scale, kernels::divide}};
  for (const KernelVariant& v : available_variants()) {
    all.push_back({v.name, v.combine, v.combine_many, v.scale, v.divide});
  }
  return all;
}

// ---------------------------------------------------------------- reference arithmetic

// A binary16-style format: exponent and mantissa widths.
struct Format {
  int exponent_bits;
  int mantissa_bits;
  int bias() const { return (1 << (exponent_bits - 1)) - 1; }
  int min_exponent() const { return 1 - bias(); }
  double max_finite() const { return std::ldexp(2.0 - std::ldexp(1.0, -mantissa_bits), bias()); }
};
constexpr Format kHalf = {5, 10};
constexpr Format kBF16 = {8, 7};
constexpr Format kSingle = {8, 23};

double decode(uint16_t bits, Format f) {
  const int exponent = (bits >> f.mantissa_bits) & ((1 << f.exponent_bits) - 1);
  const double mantissa = bits & ((1 << f.mantissa_bits) - 1);
  const double sign = (bits & 0x8000) ? -1.0 : 1.0;
  if (exponent == (1 << f.exponent_bits) - 1) {
    return mantissa == 0 ? sign * std::numeric_limits<double>::infinity()
                         : std::numeric_limits<double>::quiet_NaN();
  }
  if (exponent == 0) return sign * std::ldexp(mantissa, f.min_exponent() - f.mantissa_bits);
  return sign * std::ldexp(std::ldexp(1.0, f.mantissa_bits) + mantissa,
                           exponent - f.bias() - f.mantissa_bits);
}

// x rounded to the nearest value of format f, ties to even, by scaling the
// value's quantum to 1 and rounding to an integer.
double round_to(double x, Format f) {
  if (std::isnan(x) || std::isinf(x) || x == 0) return x;
  const int exponent = std::max(std::ilogb(x), f.min_exponent());
  const int quantum = exponent - f.mantissa_bits;
  const double scaled = std::ldexp(std::fabs(x), -quantum);  // exact
  double integer = std::floor(scaled);
  const double fraction = scaled - integer;
  if (fraction > 0.5 || (fraction == 0.5 && std::fmod(integer, 2.0) == 1.0)) integer += 1;
  const double rounded = std::copysign(std::ldexp(integer, quantum), x);
  if (std::fabs(rounded) > f.max_finite()) return std::copysign(INFINITY, x);
  return rounded;
}

// The pattern of a value of format f (already rounded to it).
uint16_t encode(double v, Format f) {
  const uint16_t sign = std::signbit(v) ? 0x8000 : 0;
  const uint16_t infinity = static_cast<uint16_t>(((1 << f.exponent_bits) - 1) << f.mantissa_bits);
  if (std::isnan(v)) return infinity | static_cast<uint16_t>(1 << (f.mantissa_bits - 1));
  if (std::isinf(v)) return sign | infinity;
  if (v == 0) return sign;
  const int exponent = std::ilogb(v);
  if (exponent < f.min_exponent()) {
    return sign |
           static_cast<uint16_t>(std::ldexp(std::fabs(v), f.mantissa_bits - f.min_exponent()));
  }
  const auto mantissa = static_cast<uint16_t>(std::ldexp(std::fabs(v), f.mantissa_bits - exponent) -
                                              std::ldexp(1.0, f.mantissa_bits));
  return sign | static_cast<uint16_t>((exponent + f.bias()) << f.mantissa_bits) | mantissa;
}

// One element, exactly: integers (and bool) in 128 bits, floats in double.
struct Num {
  __int128 i = 0;
  double f = 0;
};

int bits_of(DType dtype) { return static_cast<int>(itemsize(dtype)) * 8; }
bool is_signed_int(DType dtype) { return dtype != DType::UInt8 && is_integral(dtype); }

// x modulo 2^bits, in the dtype's range: what wrapping arithmetic yields.
__int128 wrap(__int128 x, DType dtype) {
  const int bits = bits_of(dtype);
  const __int128 modulus = static_cast<__int128>(1) << bits;
  __int128 r = x % modulus;
  if (r < 0) r += modulus;
  if (is_signed_int(dtype) && r >= modulus / 2) r -= modulus;
  return r;
}

Num load(DType dtype, const std::vector<unsigned char>& bytes, size_t index) {
  const unsigned char* p = bytes.data() + index * itemsize(dtype);
  auto read = [p](auto value) {
    std::memcpy(&value, p, sizeof value);
    return value;
  };
  Num n;
  switch (dtype) {
    case DType::Bool:
    case DType::UInt8:
      n.i = read(uint8_t{});
      break;
    case DType::Int8:
      n.i = read(int8_t{});
      break;
    case DType::Int16:
      n.i = read(int16_t{});
      break;
    case DType::Int32:
      n.i = read(int32_t{});
      break;
    case DType::Int64:
      n.i = read(int64_t{});
      break;
    case DType::Float16:
      n.f = decode(read(uint16_t{}), kHalf);
      break;
    case DType::BFloat16:
      n.f = decode(read(uint16_t{}), kBF16);
      break;
    case DType::Float32:
      n.f = read(float{});
      break;
    case DType::Float64:
      n.f = read(double{});
      break;
  }
  return n;
}

void store(DType dtype, std::vector<unsigned char>& bytes, size_t index, Num n) {
  unsigned char* p = bytes.data() + index * itemsize(dtype);
  auto write = [p](auto value) { std::memcpy(p, &value, sizeof value); };
  const __int128 w = wrap(n.i, dtype);
  switch (dtype) {
    case DType::Bool:
      write(static_cast<uint8_t>(n.i != 0));
      break;
    case DType::UInt8:
      write(static_cast<uint8_t>(w));
      break;
    case DType::Int8:
      write(static_cast<int8_t>(w));
      break;
    case DType::Int16:
      write(static_cast<int16_t>(w));
      break;
    case DType::Int32:
      write(static_cast<int32_t>(w));
      break;
    case DType::Int64:
      write(static_cast<int64_t>(w));
      break;
    case DType::Float16:
      write(encode(round_to(n.f, kHalf), kHalf));
      break;
    case DType::BFloat16:
      write(encode(round_to(n.f, kBF16), kBF16));
      break;
    case DType::Float32:
      write(static_cast<float>(round_to(n.f, kSingle)));
      break;
    case DType::Float64:
      write(n.f);
      break;
  }
}

// a (kind) b, exact for integers, in double for floats; NaN propagates
// through MIN and MAX.
Num apply(ReduceOp::Kind kind, DType dtype, Num a, Num b) {
  Num r;
  if (dtype == DType::Bool) {
    const bool x = a.i != 0, y = b.i != 0;
    switch (kind) {
      case ReduceOp::SUM:
      case ReduceOp::MAX:
      case ReduceOp::BOR:
        r.i = x || y;
        break;
      case ReduceOp::PRODUCT:
      case ReduceOp::MIN:
      case ReduceOp::BAND:
        r.i = x && y;
        break;
      case ReduceOp::BXOR:
        r.i = x != y;
        break;
      default:
        ADD_FAILURE() << "no reference for " << to_string(kind);
    }
  } else if (is_integral(dtype)) {
    switch (kind) {
      case ReduceOp::SUM:
        r.i = a.i + b.i;
        break;
      case ReduceOp::PRODUCT:
        r.i = a.i * b.i;
        break;
      case ReduceOp::MIN:
        r.i = a.i < b.i ? a.i : b.i;
        break;
      case ReduceOp::MAX:
        r.i = a.i > b.i ? a.i : b.i;
        break;
      case ReduceOp::BAND:
        r.i = a.i & b.i;
        break;
      case ReduceOp::BOR:
        r.i = a.i | b.i;
        break;
      case ReduceOp::BXOR:
        r.i = a.i ^ b.i;
        break;
      default:
        ADD_FAILURE() << "no reference for " << to_string(kind);
    }
    r.i = wrap(r.i, dtype);
  } else {
    const bool nan = std::isnan(a.f) || std::isnan(b.f);
    switch (kind) {
      case ReduceOp::SUM:
        r.f = a.f + b.f;
        break;
      case ReduceOp::PRODUCT:
        r.f = a.f * b.f;
        break;
      case ReduceOp::MIN:
        r.f = nan ? NAN : std::fmin(a.f, b.f);
        break;
      case ReduceOp::MAX:
        r.f = nan ? NAN : std::fmax(a.f, b.f);
        break;
      default:
        ADD_FAILURE() << "no reference for " << to_string(kind);
    }
  }
  return r;
}

// Rounds an intermediate to the precision the kernels accumulate in: float32
// for the 32- and 16-bit float dtypes.
Num accumulator(DType dtype, Num n) {
  if (dtype == DType::Float16 || dtype == DType::BFloat16 || dtype == DType::Float32) {
    n.f = round_to(n.f, kSingle);
  }
  return n;
}

// NaN matches any NaN; MIN and MAX may return either signed zero.
bool same(DType dtype, Num got, Num want, bool any_zero_sign) {
  if (!is_floating_point(dtype)) return got.i == want.i;
  if (std::isnan(want.f)) return std::isnan(got.f);
  if (got.f != want.f) return false;
  return any_zero_sign || std::signbit(got.f) == std::signbit(want.f);
}

std::string show(DType dtype, Num n) {
  if (is_floating_point(dtype)) return std::to_string(n.f);
  return std::to_string(static_cast<long long>(n.i));
}

// ---------------------------------------------------------------- test data

struct Buffer {
  DType dtype;
  std::vector<unsigned char> bytes;
  size_t size() const { return bytes.size() / itemsize(dtype); }
  void* data() { return bytes.data(); }
  Num at(size_t i) const { return load(dtype, bytes, i); }
};

// Random elements, with one in ten drawn from the dtype's edge values.
Buffer random_buffer(DType dtype, size_t n, std::mt19937_64& rng) {
  Buffer b{dtype, std::vector<unsigned char>(n * itemsize(dtype))};
  const double inf = std::numeric_limits<double>::infinity();
  for (size_t i = 0; i < n; ++i) {
    const uint64_t r = rng();
    const bool edge = r % 10 == 0;
    Num v;
    if (dtype == DType::Bool) {
      v.i = r & 1;
    } else if (is_integral(dtype)) {
      const int bits = bits_of(dtype);
      const __int128 lowest = is_signed_int(dtype) ? -(static_cast<__int128>(1) << (bits - 1)) : 0;
      const __int128 highest = lowest + (static_cast<__int128>(1) << bits) - 1;
      const __int128 edges[] = {lowest, highest, lowest + 1, highest - 1, 0, 1, -1, 2};
      v.i = edge                ? edges[(r >> 8) % 8]
            : (r >> 8) % 3 == 0 ? static_cast<__int128>(r % 41) - 20
                                : static_cast<__int128>(r >> 4);
    } else if (dtype == DType::Float16 || dtype == DType::BFloat16) {
      // Any pattern, NaN and infinity included; or a small integer, whose
      // sums and products tie often.
      const Format f = dtype == DType::Float16 ? kHalf : kBF16;
      v.f = edge ? static_cast<double>(static_cast<int>(r % 4097) - 2048)
                 : decode(static_cast<uint16_t>(r >> 16), f);
    } else {
      const double max = dtype == DType::Float32 ? std::numeric_limits<float>::max()
                                                 : std::numeric_limits<double>::max();
      const double tiny = dtype == DType::Float32 ? std::numeric_limits<float>::denorm_min()
                                                  : std::numeric_limits<double>::denorm_min();
      const double edges[] = {NAN, inf, -inf, 0.0, -0.0, max, -max, tiny, -tiny, 1.0};
      const double mantissa = static_cast<double>(r >> 11) * 0x1p-53;  // [0, 1)
      v.f = edge ? edges[(r >> 8) % 10]
                 : std::ldexp((r & 16) ? -mantissa : mantissa, static_cast<int>(r % 61) - 30);
    }
    store(dtype, b.bytes, i, v);
  }
  return b;
}

// ---------------------------------------------------------------- combine and combine_many

using Param = std::tuple<size_t, DType, ReduceOp::Kind>;

class ReduceKernelTest : public ::testing::TestWithParam<Param> {
 protected:
  const Kernels& kernels() const {
    static const std::vector<Kernels> all = kernels_under_test();
    return all.at(std::get<0>(GetParam()));
  }
  DType dtype() const { return std::get<1>(GetParam()); }
  ReduceOp::Kind kind() const { return std::get<2>(GetParam()); }
  bool minmax() const { return kind() == ReduceOp::MIN || kind() == ReduceOp::MAX; }

  void expect_matches(const Buffer& got, const std::vector<Num>& want, const std::string& what) {
    ASSERT_EQ(got.size(), want.size());
    size_t mismatches = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      if (!same(dtype(), got.at(i), want[i], minmax()) && ++mismatches <= 5) {
        ADD_FAILURE() << what << ", n=" << want.size() << ", element " << i << ": got "
                      << show(dtype(), got.at(i)) << ", want " << show(dtype(), want[i]);
      }
    }
  }

  std::mt19937_64 rng_{12345};
};

// combine out = a (kind) b, into a fresh buffer and in place over a, b, and
// both at once.
TEST_P(ReduceKernelTest, Combine) {
  if (kind() == ReduceOp::AVG || kind() == ReduceOp::PREMUL_SUM || !supports(kind(), dtype())) {
    Buffer a = random_buffer(dtype(), 4, rng_), out = a;
    EXPECT_THROW(kernels().combine(out.data(), a.data(), a.data(), 4, dtype(), kind()),
                 InvalidArgument);
    return;
  }
  for (size_t n : kLengths) {
    Buffer a = random_buffer(dtype(), n, rng_);
    Buffer b = random_buffer(dtype(), n, rng_);
    std::vector<Num> want(n), want_self(n);
    for (size_t i = 0; i < n; ++i) {
      want[i] = apply(kind(), dtype(), a.at(i), b.at(i));
      want_self[i] = apply(kind(), dtype(), a.at(i), a.at(i));
    }
    // Round the reference to the dtype once, as the kernel's output is.
    Buffer rounded{dtype(), std::vector<unsigned char>(a.bytes.size())};
    Buffer rounded_self = rounded;
    for (size_t i = 0; i < n; ++i) {
      store(dtype(), rounded.bytes, i, want[i]);
      store(dtype(), rounded_self.bytes, i, want_self[i]);
      want[i] = rounded.at(i);
      want_self[i] = rounded_self.at(i);
    }

    Buffer out{dtype(), std::vector<unsigned char>(a.bytes.size())};
    kernels().combine(out.data(), a.data(), b.data(), n, dtype(), kind());
    expect_matches(out, want, "out of place");

    Buffer in_a = a;
    kernels().combine(in_a.data(), in_a.data(), b.data(), n, dtype(), kind());
    expect_matches(in_a, want, "out == a");

    Buffer in_b = b;
    kernels().combine(in_b.data(), a.data(), in_b.data(), n, dtype(), kind());
    expect_matches(in_b, want, "out == b");

    Buffer self = a;
    kernels().combine(self.data(), self.data(), self.data(), n, dtype(), kind());
    expect_matches(self, want_self, "out == a == b");
  }
}

// combine_many over 1, 2, 3 and 5 sources, into a fresh buffer and into the
// first source; 16-bit floats accumulate in float32 and round once.
TEST_P(ReduceKernelTest, CombineMany) {
  if (kind() == ReduceOp::AVG || kind() == ReduceOp::PREMUL_SUM || !supports(kind(), dtype())) {
    Buffer a = random_buffer(dtype(), 4, rng_), out = a;
    const void* srcs[] = {a.data(), a.data()};
    EXPECT_THROW(kernels().combine_many(out.data(), srcs, 2, 4, dtype(), kind()), InvalidArgument);
    return;
  }
  for (size_t count : {1, 2, 3, 5}) {
    for (size_t n : kLengths) {
      std::vector<Buffer> sources;
      sources.reserve(count);
      for (size_t k = 0; k < count; ++k) sources.push_back(random_buffer(dtype(), n, rng_));
      std::vector<const void*> srcs;
      for (Buffer& s : sources) srcs.push_back(s.data());
      Buffer rounded{dtype(), std::vector<unsigned char>(sources[0].bytes.size())};
      std::vector<Num> want(n);
      for (size_t i = 0; i < n; ++i) {
        Num acc = sources[0].at(i);
        for (size_t k = 1; k < count; ++k) {
          acc = accumulator(dtype(), apply(kind(), dtype(), acc, sources[k].at(i)));
        }
        store(dtype(), rounded.bytes, i, acc);
        want[i] = rounded.at(i);
      }
      const std::string what = "count " + std::to_string(count);

      Buffer out{dtype(), std::vector<unsigned char>(rounded.bytes.size())};
      kernels().combine_many(out.data(), srcs.data(), count, n, dtype(), kind());
      expect_matches(out, want, what);

      kernels().combine_many(sources[0].data(), srcs.data(), count, n, dtype(), kind());
      expect_matches(sources[0], want, what + ", dst == srcs[0]");
    }
  }
}

std::string param_name(const ::testing::TestParamInfo<Param>& info) {
  static const std::vector<Kernels> all = kernels_under_test();
  return all.at(std::get<0>(info.param)).name + "_" + to_string(std::get<1>(info.param)) + "_" +
         to_string(std::get<2>(info.param));
}

INSTANTIATE_TEST_SUITE_P(
    AllKernels, ReduceKernelTest,
    ::testing::Combine(::testing::Range<size_t>(0, kernels_under_test().size()),
                       ::testing::ValuesIn(kAllDTypes), ::testing::ValuesIn(kAllKinds)),
    param_name);

// ---------------------------------------------------------------- scale and divide

using DTypeParam = std::tuple<size_t, DType>;

class ScaleDivideTest : public ::testing::TestWithParam<DTypeParam> {
 protected:
  const Kernels& kernels() const {
    static const std::vector<Kernels> all = kernels_under_test();
    return all.at(std::get<0>(GetParam()));
  }
  DType dtype() const { return std::get<1>(GetParam()); }
  std::mt19937_64 rng_{678};
};

// in * factor truncated toward zero, saturating, NaN to 0: what scale()
// promises for integers.
__int128 scaled_integer(__int128 x, double factor, DType dtype) {
  const double y = std::trunc(static_cast<double>(x) * factor);
  const int bits = bits_of(dtype);
  const __int128 lowest = is_signed_int(dtype) ? -(static_cast<__int128>(1) << (bits - 1)) : 0;
  const __int128 highest = lowest + (static_cast<__int128>(1) << bits) - 1;
  if (std::isnan(y)) return 0;
  if (y >= std::ldexp(1.0, 127)) return highest;
  if (y <= -std::ldexp(1.0, 127)) return lowest;
  const auto t = static_cast<__int128>(y);
  return t < lowest ? lowest : t > highest ? highest : t;
}

TEST_P(ScaleDivideTest, Scale) {
  if (dtype() == DType::Bool) {
    Buffer a = random_buffer(dtype(), 4, rng_);
    EXPECT_THROW(kernels().scale(a.data(), a.data(), 4, dtype(), 2.0), InvalidArgument);
    return;
  }
  for (double factor : {1.0, 0.5, -3.25, 1.0 / 3, 1e20, -1e20, static_cast<double>(NAN)}) {
    for (size_t n : kLengths) {
      Buffer in = random_buffer(dtype(), n, rng_);
      Buffer expected = in;
      for (size_t i = 0; i < n; ++i) {
        Num x = in.at(i);
        if (is_integral(dtype())) {
          x.i = scaled_integer(x.i, factor, dtype());
        } else if (dtype() == DType::Float64) {
          x.f *= factor;
        } else {
          // A float32 product: the factor has more bits than a 16-bit
          // format, so its rounding to float32 is part of the contract.
          x = accumulator(dtype(), Num{0, x.f * static_cast<float>(factor)});
        }
        store(dtype(), expected.bytes, i, x);
      }
      Buffer out{dtype(), std::vector<unsigned char>(in.bytes.size())};
      kernels().scale(out.data(), in.data(), n, dtype(), factor);
      Buffer in_place = in;
      kernels().scale(in_place.data(), in_place.data(), n, dtype(), factor);
      for (size_t i = 0; i < n; ++i) {
        ASSERT_TRUE(same(dtype(), out.at(i), expected.at(i), false))
            << "factor " << factor << ", n=" << n << ", element " << i << ": "
            << show(dtype(), in.at(i)) << " gave " << show(dtype(), out.at(i)) << ", want "
            << show(dtype(), expected.at(i));
        ASSERT_TRUE(same(dtype(), in_place.at(i), expected.at(i), false)) << "in place";
      }
    }
  }
}

TEST_P(ScaleDivideTest, Divide) {
  if (dtype() == DType::Bool) {
    Buffer a = random_buffer(dtype(), 4, rng_);
    EXPECT_THROW(kernels().divide(a.data(), 4, dtype(), 2), InvalidArgument);
    return;
  }
  for (int64_t divisor : {1, 2, 3, 7, 1000}) {
    for (size_t n : kLengths) {
      Buffer data = random_buffer(dtype(), n, rng_);
      Buffer expected = data;
      for (size_t i = 0; i < n; ++i) {
        Num x = data.at(i);
        if (is_integral(dtype())) {
          x.i /= divisor;  // C++ division truncates toward zero
        } else {
          x.f /= static_cast<double>(divisor);
          x = accumulator(dtype(), x);  // 16-bit floats divide in float32
        }
        store(dtype(), expected.bytes, i, x);
      }
      const Buffer original = data;
      kernels().divide(data.data(), n, dtype(), divisor);
      for (size_t i = 0; i < n; ++i) {
        ASSERT_TRUE(same(dtype(), data.at(i), expected.at(i), false))
            << "divisor " << divisor << ", n=" << n << ", element " << i << ": "
            << show(dtype(), original.at(i)) << " gave " << show(dtype(), data.at(i)) << ", want "
            << show(dtype(), expected.at(i));
      }
    }
  }
}

std::string dtype_param_name(const ::testing::TestParamInfo<DTypeParam>& info) {
  static const std::vector<Kernels> all = kernels_under_test();
  return all.at(std::get<0>(info.param)).name + "_" + to_string(std::get<1>(info.param));
}

INSTANTIATE_TEST_SUITE_P(AllKernels, ScaleDivideTest,
                         ::testing::Combine(::testing::Range<size_t>(0,
                                                                     kernels_under_test().size()),
                                            ::testing::ValuesIn(kAllDTypes)),
                         dtype_param_name);

// ---------------------------------------------------------------- named edge cases

template <typename T>
T combine_one(T a, T b, DType dtype, ReduceOp::Kind kind) {
  T out;
  combine(&out, &a, &b, 1, dtype, kind);
  return out;
}

TEST(ReduceEdgeTest, IntegerSumAndProductWrap) {
  EXPECT_EQ(combine_one<int8_t>(100, 100, DType::Int8, ReduceOp::SUM), -56);
  EXPECT_EQ(combine_one<uint8_t>(200, 100, DType::UInt8, ReduceOp::SUM), 44);
  EXPECT_EQ(combine_one<int16_t>(300, 300, DType::Int16, ReduceOp::PRODUCT), 24464);
  EXPECT_EQ(combine_one<int16_t>(-32768, -1, DType::Int16, ReduceOp::PRODUCT), -32768);
  constexpr int32_t kInt32Max = std::numeric_limits<int32_t>::max();
  EXPECT_EQ(combine_one<int32_t>(kInt32Max, 1, DType::Int32, ReduceOp::SUM),
            std::numeric_limits<int32_t>::min());
  constexpr int64_t kInt64Min = std::numeric_limits<int64_t>::min();
  EXPECT_EQ(combine_one<int64_t>(kInt64Min, -1, DType::Int64, ReduceOp::SUM),
            std::numeric_limits<int64_t>::max());
  EXPECT_EQ(combine_one<int64_t>(int64_t{1} << 62, 4, DType::Int64, ReduceOp::PRODUCT), 0);
  EXPECT_EQ(combine_one<int64_t>((int64_t{1} << 32) + 1, (int64_t{1} << 32) + 1, DType::Int64,
                                 ReduceOp::PRODUCT),
            (int64_t{1} << 33) + 1);
  EXPECT_EQ(combine_one<int64_t>(kInt64Min, -1, DType::Int64, ReduceOp::PRODUCT), kInt64Min);
}

TEST(ReduceEdgeTest, MinMaxPropagateNaN) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_TRUE(std::isnan(combine_one(nan, 1.0f, DType::Float32, ReduceOp::MIN)));
  EXPECT_TRUE(std::isnan(combine_one(1.0f, nan, DType::Float32, ReduceOp::MIN)));
  EXPECT_TRUE(std::isnan(combine_one(-inf, nan, DType::Float32, ReduceOp::MAX)));
  EXPECT_TRUE(std::isnan(combine_one(nan, inf, DType::Float32, ReduceOp::MAX)));
  EXPECT_EQ(combine_one(-inf, 3.0f, DType::Float32, ReduceOp::MIN), -inf);
  EXPECT_EQ(combine_one(3.0f, inf, DType::Float32, ReduceOp::MAX), inf);
  EXPECT_TRUE(std::isnan(combine_one(1.0, std::nan(""), DType::Float64, ReduceOp::MAX)));
  // float16: NaN 0x7e00 against 1.0 (0x3c00) and -inf (0xfc00).
  EXPECT_EQ(combine_one<uint16_t>(0x3c00, 0x7e00, DType::Float16, ReduceOp::MIN), 0x7e00);
  EXPECT_EQ(combine_one<uint16_t>(0x7e00, 0xfc00, DType::Float16, ReduceOp::MAX), 0x7e00);
  EXPECT_EQ(combine_one<uint16_t>(0x3c00, 0xfc00, DType::Float16, ReduceOp::MIN), 0xfc00);
  EXPECT_EQ(combine_one<uint16_t>(0x3f80, 0x7fc0, DType::BFloat16, ReduceOp::MAX), 0x7fc0);
}

TEST(ReduceEdgeTest, SixteenBitSumsRoundToNearestEven) {
  // float16: 2048 + 1 and 2050 + 1 are ties between neighbours 2 apart.
  EXPECT_EQ(combine_one<uint16_t>(0x6800, 0x3c00, DType::Float16, ReduceOp::SUM), 0x6800);
  EXPECT_EQ(combine_one<uint16_t>(0x6801, 0x3c00, DType::Float16, ReduceOp::SUM), 0x6802);
  // 65504 + 16 ties between the largest finite and 65536: infinity.
  EXPECT_EQ(combine_one<uint16_t>(0x7bff, 0x4c00, DType::Float16, ReduceOp::SUM), 0x7c00);
  EXPECT_EQ(combine_one<uint16_t>(0x0001, 0x0001, DType::Float16, ReduceOp::SUM), 0x0002);
  // bfloat16: 256 + 1 and 258 + 1.
  EXPECT_EQ(combine_one<uint16_t>(0x4380, 0x3f80, DType::BFloat16, ReduceOp::SUM), 0x4380);
  EXPECT_EQ(combine_one<uint16_t>(0x4381, 0x3f80, DType::BFloat16, ReduceOp::SUM), 0x4382);
}

TEST(ReduceEdgeTest, SixteenBitCombineManyRoundsOnce) {
  // 2048 + 1 + 1 in float16: rounding after each step would stay at 2048.
  const uint16_t big = 0x6800, one = 0x3c00;
  uint16_t out = 0;
  const void* srcs[] = {&big, &one, &one};
  combine_many(&out, srcs, 3, 1, DType::Float16, ReduceOp::SUM);
  EXPECT_EQ(out, 0x6801);  // 2050
}

TEST(ReduceEdgeTest, BoolStaysZeroOrOne) {
  // Any nonzero byte counts as true; results are always 0 or 1.
  const uint8_t a[] = {0, 0, 1, 1, 2, 4};
  const uint8_t b[] = {0, 1, 0, 1, 4, 0};
  const std::pair<ReduceOp::Kind, std::vector<uint8_t>> cases[] = {
      {ReduceOp::SUM, {0, 1, 1, 1, 1, 1}},  {ReduceOp::MAX, {0, 1, 1, 1, 1, 1}},
      {ReduceOp::BOR, {0, 1, 1, 1, 1, 1}},  {ReduceOp::PRODUCT, {0, 0, 0, 1, 1, 0}},
      {ReduceOp::MIN, {0, 0, 0, 1, 1, 0}},  {ReduceOp::BAND, {0, 0, 0, 1, 1, 0}},
      {ReduceOp::BXOR, {0, 1, 1, 0, 0, 1}},
  };
  for (const auto& [kind, want] : cases) {
    std::vector<uint8_t> out(6, 0xff);
    combine(out.data(), a, b, 6, DType::Bool, kind);
    EXPECT_EQ(out, want) << to_string(kind);
  }
}

TEST(ReduceEdgeTest, IntegerDivideTruncatesTowardZero) {
  int32_t data[] = {7, -7, 5, -5, std::numeric_limits<int32_t>::min()};
  divide(data, 5, DType::Int32, 2);
  EXPECT_EQ(data[0], 3);
  EXPECT_EQ(data[1], -3);
  EXPECT_EQ(data[2], 2);
  EXPECT_EQ(data[3], -2);
  EXPECT_EQ(data[4], std::numeric_limits<int32_t>::min() / 2);
}

// ---------------------------------------------------------------- validation

TEST(ReduceSupportTest, TableAndErrors) {
  for (DType dtype : kAllDTypes) {
    for (ReduceOp::Kind kind : kAllKinds) {
      const bool bitwise =
          kind == ReduceOp::BAND || kind == ReduceOp::BOR || kind == ReduceOp::BXOR;
      const bool numeric_only = kind == ReduceOp::AVG || kind == ReduceOp::PREMUL_SUM;
      const bool expected = bitwise        ? dtype == DType::Bool || is_integral(dtype)
                            : numeric_only ? dtype != DType::Bool
                                           : true;
      EXPECT_EQ(supports(kind, dtype), expected) << to_string(kind) << " " << to_string(dtype);
      if (expected) {
        EXPECT_NO_THROW(check_supported(kind, dtype, "allreduce"));
      } else {
        EXPECT_THROW(check_supported(kind, dtype, "allreduce"), InvalidArgument);
      }
    }
  }
}

TEST(ReduceSupportTest, MessagesSayWhatAndWhy) {
  try {
    check_supported(ReduceOp::BAND, DType::Float32, "allreduce");
    FAIL() << "BAND on float32 accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_STREQ(e.what(),
                 "allreduce: cannot use ReduceOp.BAND on dtype float32; bitwise ops need bool or "
                 "integer tensors");
  }
  try {
    check_supported(ReduceOp::premul_sum(2.0), DType::Bool, "reduce_scatter");
    FAIL() << "PREMUL_SUM on bool accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("reduce_scatter: cannot use ReduceOp.PREMUL_SUM on "
                                         "dtype bool"),
              std::string::npos)
        << e.what();
  }
}

TEST(ReduceSupportTest, DispatchRejectsMisuse) {
  float x[2] = {1, 2};
  const void* srcs[] = {x};
  EXPECT_THROW(combine(x, x, x, 2, DType::Float32, ReduceOp::AVG), InvalidArgument);
  EXPECT_THROW(combine(x, x, x, 2, DType::Float32, ReduceOp::BXOR), InvalidArgument);
  EXPECT_THROW(combine_many(x, srcs, 0, 2, DType::Float32, ReduceOp::SUM), InvalidArgument);
  EXPECT_THROW(divide(x, 2, DType::Float32, 0), InvalidArgument);
  EXPECT_EQ(combine_kind(ReduceOp::AVG), ReduceOp::SUM);
  EXPECT_EQ(combine_kind(ReduceOp::premul_sum(3.0)), ReduceOp::SUM);
  EXPECT_EQ(combine_kind(ReduceOp::MAX), ReduceOp::MAX);
}

TEST(ReduceOpTest, Names) {
  for (ReduceOp::Kind kind : kAllKinds) {
    EXPECT_EQ(reduce_kind_from_string(to_string(kind)), kind);
  }
  EXPECT_STREQ(to_string(ReduceOp::PREMUL_SUM), "premul_sum");
  EXPECT_EQ(reduce_kind_from_string("prod"), ReduceOp::PRODUCT);
  EXPECT_THROW(reduce_kind_from_string("mean"), InvalidArgument);
}

}  // namespace
}  // namespace tutti::kernels
