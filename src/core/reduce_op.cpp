#include "tutti/reduce_op.hpp"

#include <fmt/format.h>

#include <array>
#include <cstring>

#include "tutti/errors.hpp"

namespace tutti {
namespace {

// Indexed by ReduceOp::Kind.
constexpr std::array<const char*, 9> kKindNames = {
    "sum", "avg", "product", "min", "max", "band", "bor", "bxor", "premul_sum",
};

bool valid(DType dtype) {
  const auto code = static_cast<int>(dtype);
  return code >= 0 && code < kNumDTypes;
}

}  // namespace

const char* to_string(ReduceOp::Kind kind) {
  return kind < kKindNames.size() ? kKindNames[kind] : "unknown";
}

ReduceOp::Kind reduce_kind_from_string(const char* name) {
  if (name == nullptr) throw InvalidArgument("reduce op name is null");
  for (size_t i = 0; i < kKindNames.size(); ++i) {
    if (std::strcmp(name, kKindNames[i]) == 0) return static_cast<ReduceOp::Kind>(i);
  }
  if (std::strcmp(name, "prod") == 0) return ReduceOp::PRODUCT;  // torch's spelling
  throw InvalidArgument(fmt::format(
      "unknown reduce op '{}'; expected one of sum, avg, product (or prod), min, max, band, "
      "bor, bxor, premul_sum",
      name));
}

bool supports(ReduceOp op, DType dtype) {
  if (!valid(dtype)) return false;
  switch (op.kind) {
    case ReduceOp::SUM:
    case ReduceOp::PRODUCT:
    case ReduceOp::MIN:
    case ReduceOp::MAX:
      return true;
    case ReduceOp::AVG:
    case ReduceOp::PREMUL_SUM:
      return dtype != DType::Bool;
    case ReduceOp::BAND:
    case ReduceOp::BOR:
    case ReduceOp::BXOR:
      return dtype == DType::Bool || is_integral(dtype);
  }
  return false;
}

}  // namespace tutti
