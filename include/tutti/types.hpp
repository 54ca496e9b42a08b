// Element types and devices.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace tutti {

enum class DType : int8_t {
  Bool,
  UInt8,
  Int8,
  Int16,
  Int32,
  Int64,
  Float16,
  BFloat16,
  Float32,
  Float64,
};

inline constexpr int kNumDTypes = 10;

// Bytes per element.
size_t itemsize(DType dtype);
// "bool", "uint8", ..., "float16", "bfloat16", "float32", "float64".
const char* to_string(DType dtype);
// Inverse of to_string; also accepts the short forms "half", "float",
// "double", "int", "long", "bf16", "fp16", "fp32", "fp64". Throws
// InvalidArgument for an unknown name.
DType dtype_from_string(const std::string& name);

bool is_floating_point(DType dtype);  // Float16, BFloat16, Float32, Float64
bool is_integral(DType dtype);        // UInt8 .. Int64 (not Bool)

enum class DeviceType : int8_t { CPU, CUDA };
inline constexpr int kNumDeviceTypes = 2;

const char* to_string(DeviceType type);  // "cpu", "cuda"

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = -1;  // -1: the current device of that type

  bool operator==(const Device&) const = default;
};

std::string to_string(const Device& device);  // "cpu", "cuda:1"

}  // namespace tutti
