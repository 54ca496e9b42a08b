#include "tutti/types.hpp"

#include <fmt/format.h>

#include <array>
#include <string_view>
#include <utility>

#include "tutti/errors.hpp"

namespace tutti {
namespace {

struct DTypeInfo {
  const char* name;
  size_t size;
};

constexpr std::array<DTypeInfo, kNumDTypes> kDTypes = {{
    {"bool", 1},
    {"uint8", 1},
    {"int8", 1},
    {"int16", 2},
    {"int32", 4},
    {"int64", 8},
    {"float16", 2},
    {"bfloat16", 2},
    {"float32", 4},
    {"float64", 8},
}};

const DTypeInfo& info(DType dtype) {
  auto index = static_cast<size_t>(dtype);
  if (index >= kDTypes.size()) {
    throw InvalidArgument(fmt::format("unknown dtype code {}", static_cast<int>(dtype)));
  }
  return kDTypes[index];
}

}  // namespace

size_t itemsize(DType dtype) { return info(dtype).size; }

const char* to_string(DType dtype) { return info(dtype).name; }

DType dtype_from_string(const std::string& name) {
  for (size_t i = 0; i < kDTypes.size(); ++i) {
    if (name == kDTypes[i].name) return static_cast<DType>(i);
  }
  static constexpr std::pair<std::string_view, DType> kAliases[] = {
      {"half", DType::Float16},  {"fp16", DType::Float16}, {"bf16", DType::BFloat16},
      {"float", DType::Float32}, {"fp32", DType::Float32}, {"double", DType::Float64},
      {"fp64", DType::Float64},  {"int", DType::Int32},    {"long", DType::Int64},
      {"char", DType::Int8},     {"byte", DType::UInt8},   {"short", DType::Int16},
  };
  for (const auto& [alias, dtype] : kAliases) {
    if (name == alias) return dtype;
  }
  throw InvalidArgument(
      fmt::format("unknown dtype '{}'; expected one of bool, uint8, int8, int16, int32, "
                  "int64, float16, bfloat16, float32, float64",
                  name));
}

bool is_floating_point(DType dtype) {
  return dtype == DType::Float16 || dtype == DType::BFloat16 || dtype == DType::Float32 ||
         dtype == DType::Float64;
}

bool is_integral(DType dtype) {
  return dtype == DType::UInt8 || dtype == DType::Int8 || dtype == DType::Int16 ||
         dtype == DType::Int32 || dtype == DType::Int64;
}

const char* to_string(DeviceType type) {
  switch (type) {
    case DeviceType::CPU:
      return "cpu";
    case DeviceType::CUDA:
      return "cuda";
  }
  return "unknown";
}

std::string to_string(const Device& device) {
  if (device.index < 0) return to_string(device.type);
  return fmt::format("{}:{}", to_string(device.type), device.index);
}

}  // namespace tutti
