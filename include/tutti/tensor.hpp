// Dense and sparse CPU tensors: the data every operation moves.
//
// A Tensor is a view (data pointer, sizes, strides, dtype, device) over a
// storage that it shares with its copies: copying a Tensor is cheap (two
// reference counts, no allocation) and does not copy elements. A Tensor
// made by empty()/zeros()/clone() owns its storage; one made by from_blob()
// borrows memory the caller keeps alive.
//
// Thread safety: const methods may be called concurrently; writing elements
// from several threads is the caller's business, as with any buffer.
#pragma once

#include <cstdint>
#include <memory>
#include <type_traits>
#include <vector>

#include "tutti/errors.hpp"
#include "tutti/types.hpp"

namespace tutti {

class Tensor {
 public:
  // An undefined tensor: no storage, defined() is false.
  Tensor() = default;

  // Uninitialised contiguous storage. Only CPU memory can be allocated;
  // other devices take memory through from_blob().
  static Tensor empty(std::vector<int64_t> sizes, DType dtype, Device device = {});
  static Tensor zeros(std::vector<int64_t> sizes, DType dtype, Device device = {});
  // Borrows memory the caller keeps alive; strides in elements, empty =
  // contiguous. REQUIRES: sizes and strides non-negative, same length.
  static Tensor from_blob(void* data, std::vector<int64_t> sizes, DType dtype,
                          std::vector<int64_t> strides = {}, Device device = {});
  // Wraps memory kept alive by keep_alive, released when the last copy of the
  // tensor (and of its views) goes away.
  static Tensor from_blob(void* data, std::vector<int64_t> sizes, DType dtype,
                          std::vector<int64_t> strides, std::shared_ptr<void> keep_alive,
                          Device device = {});

  bool defined() const { return dtype_set_; }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  const std::vector<int64_t>& sizes() const { return shape().sizes; }
  const std::vector<int64_t>& strides() const { return shape().strides; }
  int64_t dim() const { return static_cast<int64_t>(shape().sizes.size()); }
  int64_t size(int64_t dim) const;
  int64_t numel() const { return numel_; }
  size_t element_size() const { return itemsize(dtype_); }
  size_t nbytes() const { return static_cast<size_t>(numel_) * itemsize(dtype_); }
  bool is_contiguous() const { return shape().contiguous; }

  void* data_ptr() { return data_; }
  const void* data_ptr() const { return data_; }
  // Typed access; throws InvalidArgument when T does not match dtype().
  // Float16 and BFloat16 are read as uint16_t.
  template <class T>
  T* data();
  template <class T>
  const T* data() const;

  // Deep, contiguous copy on the same device (CPU only).
  Tensor clone() const;
  // Same dtype, same sizes and the same bytes element by element (strides may
  // differ). Compares bytes, so NaNs with equal bits are equal.
  bool equal(const Tensor& other) const;

  // Views sharing storage.
  // Elements [start, start + length) along `dim`.
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  // Same elements, new sizes. REQUIRES: contiguous, same numel.
  Tensor view(std::vector<int64_t> sizes) const;
  // The contiguous tensor's elements as a 1-D view.
  Tensor flatten() const { return view({numel_}); }

  // Copies src's elements into this tensor. REQUIRES: same dtype and numel;
  // either may be strided.
  void copy_(const Tensor& src);

  // Shares storage with other (their element ranges may overlap).
  bool shares_storage(const Tensor& other) const {
    return storage_ != nullptr && storage_ == other.storage_;
  }

 private:
  Tensor(std::shared_ptr<void> storage, void* data, std::vector<int64_t> sizes,
         std::vector<int64_t> strides, DType dtype, Device device);

  // Sizes and strides, never changed once made, shared by a tensor's copies.
  struct Shape {
    std::vector<int64_t> sizes;
    std::vector<int64_t> strides;
    bool contiguous = true;
  };
  static const Shape kNoShape;  // an undefined tensor's
  const Shape& shape() const { return shape_ ? *shape_ : kNoShape; }

  std::shared_ptr<void> storage_;  // owns or keeps alive the memory
  void* data_ = nullptr;
  std::shared_ptr<const Shape> shape_;
  int64_t numel_ = 0;
  DType dtype_ = DType::Float32;
  bool dtype_set_ = false;
  Device device_;
};

// The dtype a C++ element type stands for; used by Tensor::data<T>().
template <class T>
struct DTypeOf;
template <>
struct DTypeOf<bool> {
  static constexpr DType value = DType::Bool;
};
template <>
struct DTypeOf<uint8_t> {
  static constexpr DType value = DType::UInt8;
};
template <>
struct DTypeOf<int8_t> {
  static constexpr DType value = DType::Int8;
};
template <>
struct DTypeOf<int16_t> {
  static constexpr DType value = DType::Int16;
};
template <>
struct DTypeOf<int32_t> {
  static constexpr DType value = DType::Int32;
};
template <>
struct DTypeOf<int64_t> {
  static constexpr DType value = DType::Int64;
};
template <>
struct DTypeOf<float> {
  static constexpr DType value = DType::Float32;
};
template <>
struct DTypeOf<double> {
  static constexpr DType value = DType::Float64;
};

namespace detail {
[[noreturn]] void throw_dtype_mismatch(DType have, const char* want);
bool dtype_matches(DType have, DType want);
}  // namespace detail

template <class T>
T* Tensor::data() {
  return const_cast<T*>(static_cast<const Tensor*>(this)->data<T>());
}

template <class T>
const T* Tensor::data() const {
  if constexpr (std::is_same_v<T, uint16_t>) {
    if (dtype_ != DType::Float16 && dtype_ != DType::BFloat16 && dtype_ != DType::Int16) {
      detail::throw_dtype_mismatch(dtype_, "uint16 (float16/bfloat16 bits)");
    }
  } else {
    if (!detail::dtype_matches(dtype_, DTypeOf<T>::value)) {
      detail::throw_dtype_mismatch(dtype_, to_string(DTypeOf<T>::value));
    }
  }
  return static_cast<const T*>(data_);
}

// COO sparse tensor: indices Int64 [sparse_dim, nnz], values [nnz, dense
// sizes...]. sizes = sparse sizes followed by dense sizes.
class SparseTensor {
 public:
  // Throws InvalidArgument when the parts do not fit together or an index is
  // out of range.
  SparseTensor(Tensor indices, Tensor values, std::vector<int64_t> sizes);

  const Tensor& indices() const { return indices_; }
  const Tensor& values() const { return values_; }
  const std::vector<int64_t>& sizes() const { return sizes_; }
  DType dtype() const { return values_.dtype(); }
  int64_t nnz() const;
  int64_t sparse_dim() const;
  int64_t dense_dim() const;
  bool is_coalesced() const { return coalesced_; }

  // Sorted, unique indices with duplicates summed (Float16/BFloat16 summed in
  // float32; integers wrap; Bool ORed).
  SparseTensor coalesce() const;
  Tensor to_dense() const;

 private:
  Tensor indices_;
  Tensor values_;
  std::vector<int64_t> sizes_;
  bool coalesced_ = false;
};

}  // namespace tutti
