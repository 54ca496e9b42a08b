#include "core/pack.hpp"

#include <cstdint>
#include <cstring>

namespace tutti {

Tensor pack(const std::vector<Tensor>& tensors, DType dtype) {
  size_t total = 0;
  for (const auto& t : tensors) total += t.nbytes();
  Tensor flat = Tensor::empty({static_cast<int64_t>(total / itemsize(dtype))}, dtype);
  auto* cursor = static_cast<uint8_t*>(flat.data_ptr());
  for (const auto& t : tensors) {
    if (t.nbytes() > 0) std::memcpy(cursor, t.data_ptr(), t.nbytes());
    cursor += t.nbytes();
  }
  return flat;
}

size_t unpack(const Tensor& flat, size_t offset, std::vector<Tensor>& tensors) {
  const auto* cursor = static_cast<const uint8_t*>(flat.data_ptr()) + offset;
  for (auto& t : tensors) {
    if (t.nbytes() > 0) std::memcpy(t.data_ptr(), cursor, t.nbytes());
    cursor += t.nbytes();
    offset += t.nbytes();
  }
  return offset;
}

}  // namespace tutti
