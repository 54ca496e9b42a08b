// The reduction loops, shared by every kernel variant (see reduce_variants.hpp).
//
// A variant's .cpp file includes this file inside its own namespace
// (tutti::kernels::<variant>), after including <cstddef>, <cstdint>,
// <cstring>, <type_traits> and <limits>, and after defining the four block
// conversions declared in reduce_variants.hpp (half_to_float, float_to_half,
// bf16_to_float, float_to_bf16). Everything here is written so the compiler
// can vectorise it for whatever target the variant is built for.
//
// Each entry point picks one loop per (dtype, kind) pair with a switch and
// runs it over the whole range, so no decision is made per element. The
// loops are plain indexed loops over the elementwise functors below; the
// compiler versions them for aliasing itself (out == a passes its overlap
// check), so in-place combines run the vector code too.
//
// Nothing here may have external linkage other than the entry points at the
// bottom, and nothing may call an inline function with external linkage
// (std::min, the scalar conversions of half.hpp, std::string...). The AVX2
// variant compiles this file with -mavx2; an out-of-line copy of such an
// inline function made there would be merged by the linker with the copies in
// code built for the baseline target, and might be the one that survives,
// putting AVX2 instructions on the path of a CPU without them. Hence the
// anonymous namespace and the hand-written helpers.

namespace {

// Elements per block for the 16-bit float loops: two float32 scratch blocks
// of 2 KiB each stay in L1 while the sources stream past.
constexpr size_t kBlock16 = 512;
// Bytes per block of combine_many's native loops: the destination block stays
// in L1 while every source is folded into it.
constexpr size_t kManyBlockBytes = 8192;

constexpr size_t min_size(size_t a, size_t b) { return a < b ? a : b; }

// The 16-bit loops alternate between streaming a block in from memory (the
// widening) and working on it in L1 (the float32 loop, the narrowing). The
// hardware prefetchers do not run far enough ahead to keep memory busy during
// the L1 phases, so each block asks for the block after next itself.
constexpr size_t kPrefetchDistance = 2 * kBlock16;

void prefetch_ahead(const uint16_t* data, size_t start, size_t n) {
  constexpr size_t kLine = 64 / sizeof(uint16_t);
  const size_t end = min_size(start + kPrefetchDistance + kBlock16, n);
  for (size_t i = start + kPrefetchDistance; i < end; i += kLine) __builtin_prefetch(data + i);
}

// Integer SUM and PRODUCT wrap: compute in the unsigned type of the same
// width, where overflow is defined, and convert back (modular since C++20).
// Types narrower than int would be promoted to int, whose overflow is UB
// (65535 * 65535 does overflow), so they compute in unsigned int.
template <typename T>
using WrapType =
    std::conditional_t<(sizeof(T) < sizeof(unsigned)), unsigned, std::make_unsigned_t<T>>;

// ---------------------------------------------------------------- functors
// One per elementwise kind. Float MIN and MAX propagate NaN (as
// torch.minimum/maximum) in select form, which vectorises to compare + blend:
// a NaN `a` wins through `a != a`, a NaN `b` through the failed comparison.

struct Sum {
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (std::is_integral_v<T>) {
      return static_cast<T>(static_cast<WrapType<T>>(a) + static_cast<WrapType<T>>(b));
    } else {
      return a + b;
    }
  }
};

struct Product {
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (std::is_integral_v<T>) {
      return static_cast<T>(static_cast<WrapType<T>>(a) * static_cast<WrapType<T>>(b));
    } else {
      return a * b;
    }
  }
};

struct Min {
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (std::is_floating_point_v<T>) {
      return (a < b || a != a) ? a : b;
    } else {
      return a < b ? a : b;
    }
  }
};

struct Max {
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (std::is_floating_point_v<T>) {
      return (a > b || a != a) ? a : b;
    } else {
      return a > b ? a : b;
    }
  }
};

struct BitAnd {
  template <typename T>
  T operator()(T a, T b) const {
    return static_cast<T>(a & b);
  }
};

struct BitOr {
  template <typename T>
  T operator()(T a, T b) const {
    return static_cast<T>(a | b);
  }
};

struct BitXor {
  template <typename T>
  T operator()(T a, T b) const {
    return static_cast<T>(a ^ b);
  }
};

// Bool elements are bytes holding 0 or 1. The logical forms also map any
// other nonzero byte (from a careless producer) to 1, so outputs are always
// 0 or 1; the comparisons vectorise to byte compares.
struct LogicalOr {
  uint8_t operator()(uint8_t a, uint8_t b) const { return (a | b) != 0; }
};

struct LogicalAnd {
  uint8_t operator()(uint8_t a, uint8_t b) const { return (a != 0) & (b != 0); }
};

struct LogicalXor {
  uint8_t operator()(uint8_t a, uint8_t b) const { return (a != 0) ^ (b != 0); }
};

// ---------------------------------------------------------------- kind dispatch
// Call visit(functor) for the functor implementing `kind` on elements of
// type T, once per call; unsupported pairs raise InvalidArgument.

template <typename T, typename Visit>
void visit_kind(ReduceOp::Kind kind, DType dtype, const char* function, Visit&& visit) {
  switch (kind) {
    case ReduceOp::SUM:
      return visit(Sum{});
    case ReduceOp::PRODUCT:
      return visit(Product{});
    case ReduceOp::MIN:
      return visit(Min{});
    case ReduceOp::MAX:
      return visit(Max{});
    case ReduceOp::BAND:
      if constexpr (std::is_integral_v<T>) return visit(BitAnd{});
      break;
    case ReduceOp::BOR:
      if constexpr (std::is_integral_v<T>) return visit(BitOr{});
      break;
    case ReduceOp::BXOR:
      if constexpr (std::is_integral_v<T>) return visit(BitXor{});
      break;
    case ReduceOp::AVG:
    case ReduceOp::PREMUL_SUM:
      break;
  }
  throw_unsupported(function, kind, dtype);
}

template <typename Visit>
void visit_bool_kind(ReduceOp::Kind kind, const char* function, Visit&& visit) {
  switch (kind) {
    case ReduceOp::SUM:
    case ReduceOp::MAX:
    case ReduceOp::BOR:
      return visit(LogicalOr{});
    case ReduceOp::PRODUCT:
    case ReduceOp::MIN:
    case ReduceOp::BAND:
      return visit(LogicalAnd{});
    case ReduceOp::BXOR:
      return visit(LogicalXor{});
    case ReduceOp::AVG:
    case ReduceOp::PREMUL_SUM:
      break;
  }
  throw_unsupported(function, kind, DType::Bool);
}

// ---------------------------------------------------------------- loops

template <typename T, typename Op>
void binary_loop(T* out, const T* a, const T* b, size_t n, Op op) {
  for (size_t i = 0; i < n; ++i) out[i] = op(a[i], b[i]);
}

template <typename T, typename Op>
void accumulate_loop(T* acc, const T* x, size_t n, Op op) {
  for (size_t i = 0; i < n; ++i) acc[i] = op(acc[i], x[i]);
}

// The two 16-bit float formats, as their block conversions to and from
// float32 (this variant's, defined by the including file).
struct Half {
  static void widen(const uint16_t* in, float* out, size_t n) { half_to_float(in, out, n); }
  static void narrow(const float* in, uint16_t* out, size_t n) { float_to_half(in, out, n); }
};

struct BFloat16 {
  static void widen(const uint16_t* in, float* out, size_t n) { bf16_to_float(in, out, n); }
  static void narrow(const float* in, uint16_t* out, size_t n) { float_to_bf16(in, out, n); }
};

// A block of each input is widened to float32, combined by the float32 loop
// and rounded back. Each block is read completely before its output is
// written, so out may alias a or b.
template <typename Format, typename Op>
void combine_16bit(uint16_t* out, const uint16_t* a, const uint16_t* b, size_t n, Op op) {
  alignas(64) float wide_a[kBlock16];
  alignas(64) float wide_b[kBlock16];
  for (size_t start = 0; start < n; start += kBlock16) {
    const size_t m = min_size(kBlock16, n - start);
    prefetch_ahead(a, start, n);
    prefetch_ahead(b, start, n);
    Format::widen(a + start, wide_a, m);
    Format::widen(b + start, wide_b, m);
    accumulate_loop(wide_a, wide_b, m, op);
    Format::narrow(wide_a, out + start, m);
  }
}

// The destination block stays in L1 (or in the float32 accumulator) while
// each source streams past once, so memory traffic is one read per source
// and one write, whatever count is.
template <typename T, typename Op>
void combine_many_native(T* dst, const void* const* srcs, size_t count, size_t n, Op op) {
  constexpr size_t kBlock = kManyBlockBytes / sizeof(T);
  for (size_t start = 0; start < n; start += kBlock) {
    const size_t m = min_size(kBlock, n - start);
    binary_loop(dst + start, static_cast<const T*>(srcs[0]) + start,
                static_cast<const T*>(srcs[1]) + start, m, op);
    for (size_t k = 2; k < count; ++k) {
      accumulate_loop(dst + start, static_cast<const T*>(srcs[k]) + start, m, op);
    }
  }
}

// Float16/BFloat16 accumulate in float32 across all sources and round once.
template <typename Format, typename Op>
void combine_many_16bit(uint16_t* dst, const void* const* srcs, size_t count, size_t n, Op op) {
  alignas(64) float acc[kBlock16];
  alignas(64) float wide[kBlock16];
  for (size_t start = 0; start < n; start += kBlock16) {
    const size_t m = min_size(kBlock16, n - start);
    for (size_t k = 0; k < count; ++k)
      prefetch_ahead(static_cast<const uint16_t*>(srcs[k]), start, n);
    Format::widen(static_cast<const uint16_t*>(srcs[0]) + start, acc, m);
    for (size_t k = 1; k < count; ++k) {
      Format::widen(static_cast<const uint16_t*>(srcs[k]) + start, wide, m);
      accumulate_loop(acc, wide, m, op);
    }
    Format::narrow(acc, dst + start, m);
  }
}

template <typename Format>
void scale_16bit(uint16_t* out, const uint16_t* in, size_t n, float factor) {
  alignas(64) float wide[kBlock16];
  for (size_t start = 0; start < n; start += kBlock16) {
    const size_t m = min_size(kBlock16, n - start);
    prefetch_ahead(in, start, n);
    Format::widen(in + start, wide, m);
    for (size_t i = 0; i < m; ++i) wide[i] *= factor;
    Format::narrow(wide, out + start, m);
  }
}

template <typename Format>
void divide_16bit(uint16_t* data, size_t n, float divisor) {
  alignas(64) float wide[kBlock16];
  for (size_t start = 0; start < n; start += kBlock16) {
    const size_t m = min_size(kBlock16, n - start);
    prefetch_ahead(data, start, n);
    Format::widen(data + start, wide, m);
    for (size_t i = 0; i < m; ++i) wide[i] /= divisor;
    Format::narrow(wide, data + start, m);
  }
}

// in * factor computed in double and truncated toward zero. Results outside
// T's range saturate and NaN becomes 0, where a plain conversion would be
// undefined behaviour.
template <typename T>
T scale_integer(T x, double factor) {
  constexpr T kLowest = std::numeric_limits<T>::lowest();
  constexpr T kMax = std::numeric_limits<T>::max();
  // 2^digits is one past kMax and exact in double for every integer type;
  // kMax itself is not for int64.
  constexpr double kPastMax = static_cast<double>(uint64_t{1} << std::numeric_limits<T>::digits);
  // Anything above lowest - 1 truncates to at least lowest (for int64 the
  // subtraction rounds back to -2^63, which is then converted exactly).
  constexpr double kBelowLowest = static_cast<double>(kLowest) - 1.0;
  const double y = static_cast<double>(x) * factor;
  if (y != y) return 0;
  if (y >= kPastMax) return kMax;
  if (y <= kBelowLowest) return kLowest;
  return static_cast<T>(y);
}

// Truncating division. Below 64 bits it goes through double, which the
// compiler vectorises where integer division would stay scalar, and is exact:
// for |x| < 2^53 the true quotient x/d is an integer or at least 1/d away from
// one, while its rounding error is at most |x/d| * 2^-53 < 1/d, so truncating
// the rounded quotient gives the truncated true quotient.
template <typename T>
void divide_integer(T* data, size_t n, int64_t divisor) {
  if constexpr (sizeof(T) < sizeof(int64_t)) {
    const double d = static_cast<double>(divisor);
    for (size_t i = 0; i < n; ++i) data[i] = static_cast<T>(static_cast<double>(data[i]) / d);
  } else {
    for (size_t i = 0; i < n; ++i) data[i] = static_cast<T>(data[i] / divisor);
  }
}

// ---------------------------------------------------------------- typed entry points

template <typename T>
void combine_typed(void* out, const void* a, const void* b, size_t n, DType dtype,
                   ReduceOp::Kind kind) {
  visit_kind<T>(kind, dtype, "combine", [&](auto op) {
    binary_loop(static_cast<T*>(out), static_cast<const T*>(a), static_cast<const T*>(b), n, op);
  });
}

template <typename Format>
void combine_16bit_typed(void* out, const void* a, const void* b, size_t n, DType dtype,
                         ReduceOp::Kind kind) {
  visit_kind<float>(kind, dtype, "combine", [&](auto op) {
    combine_16bit<Format>(static_cast<uint16_t*>(out), static_cast<const uint16_t*>(a),
                          static_cast<const uint16_t*>(b), n, op);
  });
}

template <typename T>
void combine_many_typed(void* dst, const void* const* srcs, size_t count, size_t n, DType dtype,
                        ReduceOp::Kind kind) {
  visit_kind<T>(kind, dtype, "combine_many",
                [&](auto op) { combine_many_native(static_cast<T*>(dst), srcs, count, n, op); });
}

template <typename Format>
void combine_many_16bit_typed(void* dst, const void* const* srcs, size_t count, size_t n,
                              DType dtype, ReduceOp::Kind kind) {
  visit_kind<float>(kind, dtype, "combine_many", [&](auto op) {
    combine_many_16bit<Format>(static_cast<uint16_t*>(dst), srcs, count, n, op);
  });
}

template <typename T>
void scale_float(void* out, const void* in, size_t n, T factor) {
  T* o = static_cast<T*>(out);
  const T* x = static_cast<const T*>(in);
  for (size_t i = 0; i < n; ++i) o[i] = x[i] * factor;
}

template <typename T>
void scale_integer_typed(void* out, const void* in, size_t n, double factor) {
  T* o = static_cast<T*>(out);
  const T* x = static_cast<const T*>(in);
  for (size_t i = 0; i < n; ++i) o[i] = scale_integer(x[i], factor);
}

template <typename T>
void divide_float(void* data, size_t n, T divisor) {
  T* d = static_cast<T*>(data);
  for (size_t i = 0; i < n; ++i) d[i] /= divisor;
}

}  // namespace

// ---------------------------------------------------------------- entry points
// The contracts are those of reduce.hpp; reduce.cpp has validated the inputs.

void combine(void* out, const void* a, const void* b, size_t n, DType dtype, ReduceOp::Kind kind) {
  switch (dtype) {
    case DType::Bool:
      return visit_bool_kind(kind, "combine", [&](auto op) {
        binary_loop(static_cast<uint8_t*>(out), static_cast<const uint8_t*>(a),
                    static_cast<const uint8_t*>(b), n, op);
      });
    case DType::UInt8:
      return combine_typed<uint8_t>(out, a, b, n, dtype, kind);
    case DType::Int8:
      return combine_typed<int8_t>(out, a, b, n, dtype, kind);
    case DType::Int16:
      return combine_typed<int16_t>(out, a, b, n, dtype, kind);
    case DType::Int32:
      return combine_typed<int32_t>(out, a, b, n, dtype, kind);
    case DType::Int64:
      return combine_typed<int64_t>(out, a, b, n, dtype, kind);
    case DType::Float16:
      return combine_16bit_typed<Half>(out, a, b, n, dtype, kind);
    case DType::BFloat16:
      return combine_16bit_typed<BFloat16>(out, a, b, n, dtype, kind);
    case DType::Float32:
      return combine_typed<float>(out, a, b, n, dtype, kind);
    case DType::Float64:
      return combine_typed<double>(out, a, b, n, dtype, kind);
  }
  throw_unsupported("combine", kind, dtype);
}

void combine_many(void* dst, const void* const* srcs, size_t count, size_t n, DType dtype,
                  ReduceOp::Kind kind) {
  if (count == 1) {
    // Nothing to combine, and no rounding to do: a copy, unless in place.
    if (n != 0 && dst != srcs[0]) std::memmove(dst, srcs[0], n * itemsize(dtype));
    return;
  }
  switch (dtype) {
    case DType::Bool:
      return visit_bool_kind(kind, "combine_many", [&](auto op) {
        combine_many_native(static_cast<uint8_t*>(dst), srcs, count, n, op);
      });
    case DType::UInt8:
      return combine_many_typed<uint8_t>(dst, srcs, count, n, dtype, kind);
    case DType::Int8:
      return combine_many_typed<int8_t>(dst, srcs, count, n, dtype, kind);
    case DType::Int16:
      return combine_many_typed<int16_t>(dst, srcs, count, n, dtype, kind);
    case DType::Int32:
      return combine_many_typed<int32_t>(dst, srcs, count, n, dtype, kind);
    case DType::Int64:
      return combine_many_typed<int64_t>(dst, srcs, count, n, dtype, kind);
    case DType::Float16:
      return combine_many_16bit_typed<Half>(dst, srcs, count, n, dtype, kind);
    case DType::BFloat16:
      return combine_many_16bit_typed<BFloat16>(dst, srcs, count, n, dtype, kind);
    case DType::Float32:
      return combine_many_typed<float>(dst, srcs, count, n, dtype, kind);
    case DType::Float64:
      return combine_many_typed<double>(dst, srcs, count, n, dtype, kind);
  }
  throw_unsupported("combine_many", kind, dtype);
}

void scale(void* out, const void* in, size_t n, DType dtype, double factor) {
  switch (dtype) {
    case DType::UInt8:
      return scale_integer_typed<uint8_t>(out, in, n, factor);
    case DType::Int8:
      return scale_integer_typed<int8_t>(out, in, n, factor);
    case DType::Int16:
      return scale_integer_typed<int16_t>(out, in, n, factor);
    case DType::Int32:
      return scale_integer_typed<int32_t>(out, in, n, factor);
    case DType::Int64:
      return scale_integer_typed<int64_t>(out, in, n, factor);
    case DType::Float16:
      return scale_16bit<Half>(static_cast<uint16_t*>(out), static_cast<const uint16_t*>(in), n,
                               static_cast<float>(factor));
    case DType::BFloat16:
      return scale_16bit<BFloat16>(static_cast<uint16_t*>(out), static_cast<const uint16_t*>(in), n,
                                   static_cast<float>(factor));
    case DType::Float32:
      return scale_float<float>(out, in, n, static_cast<float>(factor));
    case DType::Float64:
      return scale_float<double>(out, in, n, factor);
    case DType::Bool:
      break;
  }
  throw_unsupported("scale", ReduceOp::PREMUL_SUM, dtype);
}

void divide(void* data, size_t n, DType dtype, int64_t divisor) {
  switch (dtype) {
    case DType::UInt8:
      return divide_integer(static_cast<uint8_t*>(data), n, divisor);
    case DType::Int8:
      return divide_integer(static_cast<int8_t*>(data), n, divisor);
    case DType::Int16:
      return divide_integer(static_cast<int16_t*>(data), n, divisor);
    case DType::Int32:
      return divide_integer(static_cast<int32_t*>(data), n, divisor);
    case DType::Int64:
      return divide_integer(static_cast<int64_t*>(data), n, divisor);
    case DType::Float16:
      return divide_16bit<Half>(static_cast<uint16_t*>(data), n, static_cast<float>(divisor));
    case DType::BFloat16:
      return divide_16bit<BFloat16>(static_cast<uint16_t*>(data), n, static_cast<float>(divisor));
    case DType::Float32:
      return divide_float<float>(data, n, static_cast<float>(divisor));
    case DType::Float64:
      return divide_float<double>(data, n, static_cast<double>(divisor));
    case DType::Bool:
      break;
  }
  throw_unsupported("divide", ReduceOp::AVG, dtype);
}
