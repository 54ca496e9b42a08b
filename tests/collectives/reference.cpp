#include "collectives/reference.hpp"

#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <vector>

namespace tutti::testing {
namespace {

// Independent rounding from double to the 16-bit float formats (ties to
// even), written here rather than taken from tutti's kernels.
uint16_t round_to_bf16(double v) {
  float f = static_cast<float>(v);  // exact for the small values used here
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if (std::isnan(f)) return static_cast<uint16_t>((u >> 16) | 0x40);
  const uint32_t lower = u & 0xffff;
  uint32_t upper = u >> 16;
  if (lower > 0x8000 || (lower == 0x8000 && (upper & 1))) ++upper;
  return static_cast<uint16_t>(upper);
}

uint16_t round_to_fp16(double v) {
  const uint16_t sign = std::signbit(v) ? 0x8000 : 0;
  double a = std::fabs(v);
  if (std::isnan(v)) return 0x7e00;
  if (a >= 65520.0) return sign | 0x7c00;  // rounds to infinity
  if (a < std::ldexp(1.0, -14)) {          // subnormal: multiples of 2^-24
    double q = a / std::ldexp(1.0, -24);
    double r = std::nearbyint(q);  // default rounding mode: ties to even
    return sign | static_cast<uint16_t>(r);
  }
  int e;
  double m = std::frexp(a, &e);                // a = m * 2^e, m in [0.5, 1)
  double scaled = std::nearbyint(m * 2048.0);  // 11 significant bits
  if (scaled >= 2048.0) {
    scaled /= 2.0;
    ++e;
  }
  const int exponent = e - 1 + 15;
  if (exponent >= 31) return sign | 0x7c00;
  return sign | static_cast<uint16_t>((exponent << 10) | (static_cast<int>(scaled) - 1024));
}

bool is_signed_int(DType d) {
  return d == DType::Int8 || d == DType::Int16 || d == DType::Int32 || d == DType::Int64;
}

// The reference value of one reduction, in double (floats) or exact integers
// carried in double (all values here stay far below 2^53).
double reduce_values(DType dtype, ReduceOp op, int size, int64_t index) {
  // PREMUL_SUM scales each contribution; integers truncate the product.
  auto premul = [&](double v) {
    double scaled = v * op.factor;
    return is_floating_point(dtype) ? scaled : std::trunc(scaled);
  };
  double acc = input_value(dtype, op, 0, index);
  if (op.kind == ReduceOp::PREMUL_SUM) acc = premul(acc);
  for (int r = 1; r < size; ++r) {
    double v = input_value(dtype, op, r, index);
    switch (op.kind) {
      case ReduceOp::SUM:
      case ReduceOp::AVG:
        acc += v;
        break;
      case ReduceOp::PREMUL_SUM:
        acc += premul(v);
        break;
      case ReduceOp::PRODUCT:
        acc *= v;
        break;
      case ReduceOp::MIN:
        acc = std::min(acc, v);
        break;
      case ReduceOp::MAX:
        acc = std::max(acc, v);
        break;
      case ReduceOp::BAND:
        acc = static_cast<double>(static_cast<int64_t>(acc) & static_cast<int64_t>(v));
        break;
      case ReduceOp::BOR:
        acc = static_cast<double>(static_cast<int64_t>(acc) | static_cast<int64_t>(v));
        break;
      case ReduceOp::BXOR:
        acc = static_cast<double>(static_cast<int64_t>(acc) ^ static_cast<int64_t>(v));
        break;
    }
  }
  if (op.kind == ReduceOp::AVG) {
    if (is_floating_point(dtype)) {
      acc /= size;
    } else {
      acc = std::trunc(acc / size);
    }
  }
  if (dtype == DType::Bool) acc = acc != 0 ? 1 : 0;
  return acc;
}

uint64_t bits_of(DType dtype, double v) {
  switch (dtype) {
    case DType::Bool:
    case DType::UInt8:
      return static_cast<uint8_t>(static_cast<int64_t>(v));
    case DType::Int8:
      return static_cast<uint8_t>(static_cast<int8_t>(static_cast<int64_t>(v)));
    case DType::Int16:
      return static_cast<uint16_t>(static_cast<int16_t>(static_cast<int64_t>(v)));
    case DType::Int32:
      return static_cast<uint32_t>(static_cast<int32_t>(static_cast<int64_t>(v)));
    case DType::Int64:
      return static_cast<uint64_t>(static_cast<int64_t>(v));
    case DType::Float16:
      return round_to_fp16(v);
    case DType::BFloat16:
      return round_to_bf16(v);
    case DType::Float32: {
      float f = static_cast<float>(v);
      uint32_t u;
      std::memcpy(&u, &f, 4);
      return u;
    }
    case DType::Float64: {
      uint64_t u;
      std::memcpy(&u, &v, 8);
      return u;
    }
  }
  return 0;
}

}  // namespace

double input_value(DType dtype, ReduceOp op, int rank, int64_t index) {
  const int64_t h = (index * 7 + rank * 13 + (index / 5) * 3) % 17;
  switch (op.kind) {
    case ReduceOp::PRODUCT: {
      if (dtype == DType::Bool) return (h % 4) != 0 ? 1 : 0;
      // |product| <= 2^4: exact in every dtype.
      static constexpr double kFactors[] = {1, 2, -1, -2, 1, 1};
      double v = kFactors[h % 6];
      return is_signed_int(dtype) || is_floating_point(dtype) ? v : std::fabs(v);
    }
    case ReduceOp::BAND:
    case ReduceOp::BOR:
    case ReduceOp::BXOR:
      if (dtype == DType::Bool) return h % 2;
      return static_cast<double>((h * 37 + rank) % 120);
    default:
      break;
  }
  if (dtype == DType::Bool) return (h % 3) == 0 ? 1 : 0;
  if (dtype == DType::UInt8) return static_cast<double>(h % 60);
  return static_cast<double>(h - 8);  // [-8, 8]
}

Tensor make_input(DType dtype, ReduceOp op, int rank, int64_t count, int64_t offset) {
  Tensor t = Tensor::empty({count}, dtype);
  auto* bytes = static_cast<uint8_t*>(t.data_ptr());
  const size_t item = itemsize(dtype);
  // One period of the pattern, then copies of it (large inputs stay cheap).
  std::vector<uint64_t> period(static_cast<size_t>(kInputPeriod));
  for (int64_t j = 0; j < kInputPeriod; ++j) {
    period[static_cast<size_t>(j)] = bits_of(dtype, input_value(dtype, op, rank, j));
  }
  for (int64_t i = 0; i < count; ++i) {
    const uint64_t bits = period[static_cast<size_t>((i + offset) % kInputPeriod)];
    std::memcpy(bytes + static_cast<size_t>(i) * item, &bits, item);  // little-endian
  }
  return t;
}

uint64_t expected_bits(DType dtype, ReduceOp op, int size, int64_t index) {
  return bits_of(dtype, reduce_values(dtype, op, size, index));
}

uint64_t element_bits(const Tensor& t, int64_t i) {
  uint64_t bits = 0;
  std::memcpy(&bits, static_cast<const uint8_t*>(t.data_ptr()) + i * t.element_size(),
              t.element_size());
  return bits;
}

double element_value(const Tensor& t, int64_t i) {
  const uint64_t b = element_bits(t, i);
  switch (t.dtype()) {
    case DType::Bool:
    case DType::UInt8:
      return static_cast<double>(static_cast<uint8_t>(b));
    case DType::Int8:
      return static_cast<int8_t>(b);
    case DType::Int16:
      return static_cast<int16_t>(b);
    case DType::Int32:
      return static_cast<int32_t>(b);
    case DType::Int64:
      return static_cast<double>(static_cast<int64_t>(b));
    case DType::Float32: {
      float f;
      uint32_t u = static_cast<uint32_t>(b);
      std::memcpy(&f, &u, 4);
      return f;
    }
    case DType::Float64: {
      double d;
      std::memcpy(&d, &b, 8);
      return d;
    }
    case DType::BFloat16: {
      uint32_t u = static_cast<uint32_t>(b) << 16;
      float f;
      std::memcpy(&f, &u, 4);
      return f;
    }
    case DType::Float16: {
      const int e = static_cast<int>((b >> 10) & 0x1f);
      const int m = static_cast<int>(b & 0x3ff);
      double v = e == 0 ? std::ldexp(m, -24) : std::ldexp(1024 + m, e - 25);
      if (e == 31) v = m == 0 ? INFINITY : NAN;
      return (b & 0x8000) ? -v : v;
    }
  }
  return 0;
}

namespace {

// Compares t with want(j), a function of the pattern index j in
// [0, kInputPeriod), for element i at pattern index (i + offset) % period.
template <class Expected>
std::string compare(const Tensor& t, int64_t offset, Expected&& expected, const std::string& what) {
  std::vector<uint64_t> want(static_cast<size_t>(kInputPeriod));
  for (int64_t j = 0; j < kInputPeriod; ++j) want[static_cast<size_t>(j)] = expected(j);
  int64_t wrong = 0;
  std::string first;
  for (int64_t i = 0; i < t.numel(); ++i) {
    const uint64_t w = want[static_cast<size_t>((i + offset) % kInputPeriod)];
    if (element_bits(t, i) == w) continue;
    if (++wrong <= 3) {
      first += fmt::format(" [{}] got {} (bits {:#x}) want bits {:#x};", i, element_value(t, i),
                           element_bits(t, i), w);
    }
  }
  if (wrong == 0) return {};
  return fmt::format("{} {} of {} {} elements wrong:{}", what, wrong, t.numel(),
                     to_string(t.dtype()), first);
}

}  // namespace

std::string compare_reduced(const Tensor& t, ReduceOp op, int size, int64_t offset) {
  return compare(
      t, offset, [&](int64_t i) { return expected_bits(t.dtype(), op, size, i); }, "reduced:");
}

std::string compare_input(const Tensor& t, ReduceOp op, int rank, int64_t offset) {
  return compare(
      t, offset, [&](int64_t i) { return bits_of(t.dtype(), input_value(t.dtype(), op, rank, i)); },
      fmt::format("rank {}'s data:", rank));
}

}  // namespace tutti::testing
