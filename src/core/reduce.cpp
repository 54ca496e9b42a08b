// Validation and run-time dispatch for the reduction kernels. The loops
// themselves are in reduce_kernels.inl, compiled once per variant.
#include "core/reduce.hpp"

#include <fmt/format.h>

#ifdef TUTTI_HAVE_AVX2_VARIANT
#include <cpuid.h>
#endif

#include <cctype>
#include <string>
#include <vector>

#include "core/reduce_variants.hpp"
#include "tutti/errors.hpp"

namespace tutti::kernels {
namespace {

// "ReduceOp.BAND": the spelling torch users know from Python.
std::string op_name(ReduceOp::Kind kind) {
  std::string name = to_string(kind);
  if (name == "unknown") return fmt::format("ReduceOp kind {}", static_cast<int>(kind));
  for (char& c : name) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return "ReduceOp." + name;
}

bool is_elementwise(ReduceOp::Kind kind) {
  return kind != ReduceOp::AVG && kind != ReduceOp::PREMUL_SUM;
}

constexpr KernelVariant kGeneric = {
    "generic",
    generic::combine,
    generic::combine_many,
    generic::scale,
    generic::divide,
    generic::half_to_float,
    generic::float_to_half,
    generic::bf16_to_float,
    generic::float_to_bf16,
};

#ifdef TUTTI_HAVE_AVX2_VARIANT
constexpr KernelVariant kAvx2 = {
    "avx2",
    avx2::combine,
    avx2::combine_many,
    avx2::scale,
    avx2::divide,
    avx2::half_to_float,
    avx2::float_to_half,
    avx2::bf16_to_float,
    avx2::float_to_bf16,
};

bool cpu_runs_avx2_variant() {
  __builtin_cpu_init();
  // The compiler's AVX2 check includes the OS saving the YMM registers
  // (XCR0). F16C is read from CPUID directly: not every compiler's
  // __builtin_cpu_supports knows it.
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_F16C) != 0;
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
}
#endif

std::vector<KernelVariant> detect_variants() {
  std::vector<KernelVariant> variants = {kGeneric};
#ifdef TUTTI_HAVE_AVX2_VARIANT
  if (cpu_runs_avx2_variant()) variants.push_back(kAvx2);
#endif
  return variants;
}

}  // namespace

void throw_unsupported(const char* function, ReduceOp::Kind kind, DType dtype) {
  check_supported(kind, dtype, function);
  throw InvalidArgument(fmt::format(
      "{}: {} is not elementwise; combine with combine_kind() and finish with scale() or "
      "divide()",
      function, op_name(kind)));
}

void check_supported(ReduceOp op, DType dtype, const char* context) {
  if (supports(op, dtype)) return;
  const auto dtype_code = static_cast<int>(dtype);
  if (dtype_code < 0 || dtype_code >= kNumDTypes) {
    throw InvalidArgument(fmt::format("{}: unknown dtype code {}", context, dtype_code));
  }
  switch (op.kind) {
    case ReduceOp::BAND:
    case ReduceOp::BOR:
    case ReduceOp::BXOR:
      throw InvalidArgument(
          fmt::format("{}: cannot use {} on dtype {}; bitwise ops need bool or integer tensors",
                      context, op_name(op.kind), to_string(dtype)));
    case ReduceOp::AVG:
    case ReduceOp::PREMUL_SUM:
      throw InvalidArgument(fmt::format(
          "{}: cannot use {} on dtype {}; it needs numeric tensors (use SUM or BOR on bool, or "
          "convert to an integer dtype)",
          context, op_name(op.kind), to_string(dtype)));
    default:
      throw InvalidArgument(
          fmt::format("{}: unknown {}; expected one of SUM, AVG, PRODUCT, "
                      "MIN, MAX, BAND, BOR, BXOR, PREMUL_SUM",
                      context, op_name(op.kind)));
  }
}

ReduceOp::Kind combine_kind(ReduceOp op) {
  return is_elementwise(op.kind) ? op.kind : ReduceOp::SUM;
}

std::span<const KernelVariant> available_variants() {
  static const std::vector<KernelVariant> variants = detect_variants();
  return variants;
}

const KernelVariant& active_variant() {
  static const KernelVariant& active = available_variants().back();
  return active;
}

bool using_vectorized_kernels() { return active_variant().combine != generic::combine; }

// The checks below cost a few compares per call, not per element, and turn a
// caller's mistake into an exception instead of a wrong loop.

void combine(void* out, const void* a, const void* b, size_t n, DType dtype, ReduceOp::Kind kind) {
  if (!is_elementwise(kind) || !supports(kind, dtype)) throw_unsupported("combine", kind, dtype);
  active_variant().combine(out, a, b, n, dtype, kind);
}

void combine_many(void* dst, const void* const* srcs, size_t count, size_t n, DType dtype,
                  ReduceOp::Kind kind) {
  if (!is_elementwise(kind) || !supports(kind, dtype)) {
    throw_unsupported("combine_many", kind, dtype);
  }
  if (count == 0) throw InvalidArgument("combine_many: needs at least one source");
  active_variant().combine_many(dst, srcs, count, n, dtype, kind);
}

void scale(void* out, const void* in, size_t n, DType dtype, double factor) {
  check_supported(ReduceOp::premul_sum(factor), dtype, "scale");
  active_variant().scale(out, in, n, dtype, factor);
}

void divide(void* data, size_t n, DType dtype, int64_t divisor) {
  check_supported(ReduceOp::AVG, dtype, "divide");
  if (divisor <= 0) {
    throw InvalidArgument(fmt::format("divide: divisor must be positive, got {}", divisor));
  }
  active_variant().divide(data, n, dtype, divisor);
}

}  // namespace tutti::kernels
