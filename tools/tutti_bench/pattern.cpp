#include "tutti_bench/pattern.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <vector>

namespace tutti::bench {
namespace {

uint64_t mix(uint64_t x) {  // splitmix64's finaliser
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

bool is_unsigned(DType d) { return d == DType::UInt8; }

// v reduced to the width of an integer dtype (two's complement wrap-around),
// sign- or zero-extended back to 64 bits.
int64_t wrap(DType dtype, int64_t v) {
  switch (dtype) {
    case DType::UInt8:
      return static_cast<uint8_t>(v);
    case DType::Int8:
      return static_cast<int8_t>(v);
    case DType::Int16:
      return static_cast<int16_t>(v);
    case DType::Int32:
      return static_cast<int32_t>(v);
    default:
      return v;
  }
}

// Bool reductions: which of OR, AND, XOR each kind is.
enum class Logic { Or, And, Xor };
Logic bool_logic(ReduceOp::Kind kind) {
  switch (kind) {
    case ReduceOp::PRODUCT:
    case ReduceOp::MIN:
    case ReduceOp::BAND:
      return Logic::And;
    case ReduceOp::BXOR:
      return Logic::Xor;
    default:
      return Logic::Or;
  }
}

uint64_t float_bits(DType dtype, double v) {
  const auto f = static_cast<float>(v);
  switch (dtype) {
    case DType::Float16:
      return float_to_half_bits(f);
    case DType::BFloat16:
      return float_to_bfloat16_bits(f);
    case DType::Float32: {
      uint32_t u;
      std::memcpy(&u, &f, sizeof u);
      return u;
    }
    default: {
      uint64_t u;
      std::memcpy(&u, &v, sizeof u);
      return u;
    }
  }
}

// The bits of one element of `dtype` holding the integer v (floats: rounded).
uint64_t encode(DType dtype, int64_t v) {
  if (is_floating_point(dtype)) return float_bits(dtype, static_cast<double>(v));
  return static_cast<uint64_t>(wrap(dtype, v));  // the low itemsize bytes are the element
}

// Counts elements of t that differ from table[(i mod period)], where table
// holds min(period, numel) encoded elements. Whole periods are compared with
// memcmp first; only a period that differs is counted element by element.
int64_t count_mismatches(const Tensor& t, const std::vector<uint8_t>& table) {
  const size_t item = t.element_size();
  const auto* data = static_cast<const uint8_t*>(t.data_ptr());
  const auto total = static_cast<size_t>(t.numel());
  const size_t period = table.size() / std::max<size_t>(item, 1);
  int64_t wrong = 0;
  for (size_t start = 0; start < total; start += period) {
    const size_t n = std::min(period, total - start);
    const uint8_t* block = data + start * item;
    if (std::memcmp(block, table.data(), n * item) == 0) continue;
    for (size_t i = 0; i < n; ++i) {
      if (std::memcmp(block + i * item, table.data() + i * item, item) != 0) ++wrong;
    }
  }
  return wrong;
}

template <class Element>
std::vector<uint8_t> make_table(const Tensor& t, int64_t offset, Element&& element) {
  const size_t item = t.element_size();
  const int64_t n = std::min(t.numel(), kPatternPeriod);
  std::vector<uint8_t> table(static_cast<size_t>(n) * item);
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t bits = element(offset + i);
    std::memcpy(table.data() + static_cast<size_t>(i) * item, &bits, item);
  }
  return table;
}

}  // namespace

uint16_t float_to_half_bits(float value) {
  uint32_t x;
  std::memcpy(&x, &value, sizeof x);
  const auto sign = static_cast<uint16_t>((x >> 16) & 0x8000);
  const uint32_t magnitude = x & 0x7fffffff;
  if (magnitude > 0x7f800000) return sign | 0x7e00;   // NaN
  if (magnitude >= 0x477ff000) return sign | 0x7c00;  // >= 65520 rounds to infinity
  if (magnitude < 0x38800000) {                       // below 2^-14: subnormal
    float a;
    std::memcpy(&a, &magnitude, sizeof a);
    // Multiples of 2^-24; scaling by a power of two is exact, nearbyint
    // rounds to nearest even.
    return sign | static_cast<uint16_t>(std::nearbyint(a * 16777216.0f));
  }
  // Round the 23-bit mantissa to 10 bits, ties to even, then rebias the
  // exponent from 127 to 15; a carry out of the mantissa bumps the exponent.
  const uint32_t rounded = magnitude + 0xfff + ((magnitude >> 13) & 1);
  return sign | static_cast<uint16_t>((rounded - 0x38000000) >> 13);
}

uint16_t float_to_bfloat16_bits(float value) {
  uint32_t x;
  std::memcpy(&x, &value, sizeof x);
  if ((x & 0x7fffffff) > 0x7f800000) return static_cast<uint16_t>((x >> 16) | 0x40);  // NaN
  x += 0x7fff + ((x >> 16) & 1);
  return static_cast<uint16_t>(x >> 16);
}

Pattern::Pattern(DType dtype, std::optional<ReduceOp::Kind> reduction, int world_size)
    : dtype_(dtype), reduction_(reduction), world_size_(world_size) {}

int64_t Pattern::input(int rank, int64_t index) const {
  const uint64_t h = mix((static_cast<uint64_t>(rank) << 32) ^
                         static_cast<uint64_t>(index % kPatternPeriod) ^ 0x7475747469ULL);
  const bool floating = is_floating_point(dtype_);
  const auto small = [&](int64_t modulus) { return static_cast<int64_t>(h % modulus); };
  if (dtype_ == DType::Bool) {
    if (!reduction_ || bool_logic(*reduction_) == Logic::Xor) return h & 1;
    // Mostly the value that does not decide the result, so that results vary.
    return bool_logic(*reduction_) == Logic::And ? (h % 8 != 0) : (h % 8 == 0);
  }
  if (!reduction_) {
    // Moved, not combined: every bit of an integer; floats: integers of
    // magnitude up to 2^15 (finite in float16), rounded to the dtype when it
    // has fewer significant bits.
    return floating ? small(int64_t{1} << 16) - (int64_t{1} << 15) : static_cast<int64_t>(h);
  }
  switch (*reduction_) {
    case ReduceOp::PRODUCT:
      // Floats: +-1, so products never leave the dtype's range and signed
      // zeros never appear. Integers wrap, which is exact.
      if (floating) return (h & 1) != 0 ? -1 : 1;
      if (is_unsigned(dtype_)) return 1 + small(3);
      return std::array<int64_t, 4>{-1, 1, 2, 3}[h % 4];
    case ReduceOp::MIN:
    case ReduceOp::MAX:
      return is_unsigned(dtype_) ? small(201) : small(101) - 50;
    case ReduceOp::BAND:
    case ReduceOp::BOR:
    case ReduceOp::BXOR:
      // Integers only: every bit.
      return static_cast<int64_t>(h);
    default:
      // SUM, AVG, PREMUL_SUM (factor 1).
      return is_unsigned(dtype_) ? small(4) : small(5) - 2;
  }
}

uint64_t Pattern::encode_input(int rank, int64_t index) const {
  return encode(dtype_, input(rank, index));
}

uint64_t Pattern::encode_reduced(int64_t index) const {
  const ReduceOp::Kind kind = *reduction_;
  if (dtype_ == DType::Bool) {
    const Logic logic = bool_logic(kind);
    int64_t acc = input(0, index);
    for (int r = 1; r < world_size_; ++r) {
      const int64_t v = input(r, index);
      acc = logic == Logic::Or ? (acc | v) : logic == Logic::And ? (acc & v) : (acc ^ v);
    }
    return static_cast<uint64_t>(acc);
  }
  // Integers are combined in uint64_t, whose wrap-around is the dtype's
  // modulo its width; floats stay small integers, exact in int64_t.
  uint64_t acc = static_cast<uint64_t>(input(0, index));
  int64_t extreme = input(0, index);
  for (int r = 1; r < world_size_; ++r) {
    const int64_t v = input(r, index);
    const auto u = static_cast<uint64_t>(v);
    switch (kind) {
      case ReduceOp::PRODUCT:
        acc *= u;
        break;
      case ReduceOp::MIN:
        extreme = std::min(extreme, v);
        break;
      case ReduceOp::MAX:
        extreme = std::max(extreme, v);
        break;
      case ReduceOp::BAND:
        acc &= u;
        break;
      case ReduceOp::BOR:
        acc |= u;
        break;
      case ReduceOp::BXOR:
        acc ^= u;
        break;
      default:  // SUM, AVG, PREMUL_SUM
        acc += u;
        break;
    }
  }
  if (kind == ReduceOp::MIN || kind == ReduceOp::MAX) return encode(dtype_, extreme);
  const int64_t combined = wrap(dtype_, static_cast<int64_t>(acc));
  if (kind != ReduceOp::AVG) return encode(dtype_, combined);
  if (!is_floating_point(dtype_)) return encode(dtype_, combined / world_size_);  // truncates
  // The exact quotient rounded once to double and then to the dtype: the same
  // as tutti's division in the dtype (float32 for the 16-bit floats), since
  // double carries more than twice their precision plus two bits.
  return float_bits(dtype_, static_cast<double>(combined) / world_size_);
}

void Pattern::fill(Tensor& t, int rank, int64_t offset) const {
  const auto table = make_table(t, offset, [&](int64_t i) { return encode_input(rank, i); });
  auto* data = static_cast<uint8_t*>(t.data_ptr());
  const size_t total = t.nbytes();
  for (size_t start = 0; start < total; start += table.size()) {
    std::memcpy(data + start, table.data(), std::min(table.size(), total - start));
  }
}

void Pattern::poison(Tensor& t) {
  std::memset(t.data_ptr(), is_floating_point(t.dtype()) ? 0xff : 0xa5, t.nbytes());
}

int64_t Pattern::count_wrong_input(const Tensor& t, int rank, int64_t offset) const {
  return count_mismatches(t,
                          make_table(t, offset, [&](int64_t i) { return encode_input(rank, i); }));
}

int64_t Pattern::count_wrong_reduced(const Tensor& t, int64_t offset) const {
  return count_mismatches(t, make_table(t, offset, [&](int64_t i) { return encode_reduced(i); }));
}

}  // namespace tutti::bench
