// Packing lists of tensors into one contiguous byte buffer and back: how
// backends turn a list operation into a single transfer.
#pragma once

#include <cstddef>
#include <vector>

#include "tutti/tensor.hpp"

namespace tutti {

// A 1-D tensor of `dtype` holding the bytes of every tensor, one after the
// other. REQUIRES: the total is a whole number of `dtype` elements.
Tensor pack(const std::vector<Tensor>& tensors, DType dtype = DType::UInt8);

// Copies bytes of `flat` from `offset` on into each tensor in turn (the
// inverse of pack); returns the offset after the last byte read.
size_t unpack(const Tensor& flat, size_t offset, std::vector<Tensor>& tensors);

}  // namespace tutti
