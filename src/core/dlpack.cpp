#include "tutti/dlpack.hpp"

#include <dlpack/dlpack.h>
#include <fmt/format.h>

#include <memory>
#include <optional>

namespace tutti {
namespace {

// DLPack 0.8 added kDLBool = 6; Debian ships 0.6, so the code is spelled out.
constexpr uint8_t kDLBoolCode = 6;

DLDataType to_dl_dtype(DType dtype) {
  auto bits = static_cast<uint8_t>(itemsize(dtype) * 8);
  switch (dtype) {
    case DType::Bool:
      return {kDLBoolCode, 8, 1};
    case DType::UInt8:
      return {kDLUInt, bits, 1};
    case DType::Int8:
    case DType::Int16:
    case DType::Int32:
    case DType::Int64:
      return {kDLInt, bits, 1};
    case DType::Float16:
    case DType::Float32:
    case DType::Float64:
      return {kDLFloat, bits, 1};
    case DType::BFloat16:
      return {kDLBfloat, 16, 1};
  }
  throw InvalidArgument("to_dlpack: unknown dtype");
}

std::optional<DType> from_dl_dtype(DLDataType t) {
  if (t.lanes != 1) return std::nullopt;
  switch (t.code) {
    case kDLInt:
      if (t.bits == 8) return DType::Int8;
      if (t.bits == 16) return DType::Int16;
      if (t.bits == 32) return DType::Int32;
      if (t.bits == 64) return DType::Int64;
      break;
    case kDLUInt:
      if (t.bits == 8) return DType::UInt8;
      break;
    case kDLFloat:
      if (t.bits == 16) return DType::Float16;
      if (t.bits == 32) return DType::Float32;
      if (t.bits == 64) return DType::Float64;
      break;
    case kDLBfloat:
      if (t.bits == 16) return DType::BFloat16;
      break;
    case kDLBoolCode:
      if (t.bits == 8) return DType::Bool;
      break;
    default:
      break;
  }
  return std::nullopt;
}

// Owns what a DLManagedTensor points into: the tensor (so its storage stays
// alive) and the shape and strides arrays.
struct ExportContext {
  Tensor tensor;
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;
  DLManagedTensor managed{};
};

}  // namespace

DLManagedTensor* to_dlpack(const Tensor& t) {
  if (!t.defined()) throw InvalidArgument("to_dlpack: undefined tensor");
  auto ctx = std::make_unique<ExportContext>();
  ctx->tensor = t;
  ctx->shape = t.sizes();
  ctx->strides = t.strides();
  DLTensor& dl = ctx->managed.dl_tensor;
  dl.data = ctx->tensor.data_ptr();
  switch (t.device().type) {
    case DeviceType::CPU:
      dl.device = {kDLCPU, 0};
      break;
    case DeviceType::CUDA:
      dl.device = {kDLCUDA, std::max(t.device().index, 0)};
      break;
  }
  dl.ndim = static_cast<int>(t.dim());
  dl.dtype = to_dl_dtype(t.dtype());
  dl.shape = ctx->shape.data();
  dl.strides = ctx->strides.data();
  dl.byte_offset = 0;
  ctx->managed.manager_ctx = ctx.get();
  ctx->managed.deleter = [](DLManagedTensor* self) {
    delete static_cast<ExportContext*>(self->manager_ctx);
  };
  return &ctx.release()->managed;
}

Tensor from_dlpack(DLManagedTensor* managed) {
  if (managed == nullptr) throw InvalidArgument("from_dlpack: null DLManagedTensor");
  // From here on the deleter runs exactly once: when the last tensor copy
  // goes away, or right now if the import is refused.
  std::shared_ptr<void> owner(managed, [](void* p) {
    auto* m = static_cast<DLManagedTensor*>(p);
    if (m->deleter != nullptr) m->deleter(m);
  });
  const DLTensor& dl = managed->dl_tensor;
  auto dtype = from_dl_dtype(dl.dtype);
  if (!dtype) {
    throw InvalidArgument(
        fmt::format("from_dlpack: unsupported DLPack dtype (code {}, bits {}, lanes {})",
                    dl.dtype.code, dl.dtype.bits, dl.dtype.lanes));
  }
  Device device;
  switch (dl.device.device_type) {
    case kDLCPU:
    case kDLCUDAHost:
      device = {DeviceType::CPU, -1};
      break;
    case kDLCUDA:
      device = {DeviceType::CUDA, dl.device.device_id};
      break;
    default:
      throw InvalidArgument(fmt::format("from_dlpack: unsupported DLPack device type {}",
                                        static_cast<int>(dl.device.device_type)));
  }
  if (dl.ndim < 0 || (dl.ndim > 0 && dl.shape == nullptr)) {
    throw InvalidArgument("from_dlpack: malformed shape");
  }
  std::vector<int64_t> sizes(dl.shape, dl.shape + dl.ndim);
  std::vector<int64_t> strides;
  if (dl.strides != nullptr) strides.assign(dl.strides, dl.strides + dl.ndim);
  void* data = static_cast<char*>(dl.data) + dl.byte_offset;
  return Tensor::from_blob(data, std::move(sizes), *dtype, std::move(strides), std::move(owner),
                           device);
}

}  // namespace tutti
