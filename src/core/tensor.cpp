#include "tutti/tensor.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>

#include "core/storage.hpp"

namespace tutti {
namespace {

std::vector<int64_t> contiguous_strides(const std::vector<int64_t>& sizes) {
  std::vector<int64_t> strides(sizes.size());
  int64_t stride = 1;
  for (size_t i = sizes.size(); i-- > 0;) {
    strides[i] = stride;
    stride *= std::max<int64_t>(sizes[i], 1);
  }
  return strides;
}

int64_t checked_numel(const std::vector<int64_t>& sizes) {
  int64_t numel = 1;
  for (int64_t s : sizes) {
    if (s < 0) {
      throw InvalidArgument(
          fmt::format("negative size in tensor sizes [{}]", fmt::join(sizes, ", ")));
    }
    if (s != 0 && numel > std::numeric_limits<int64_t>::max() / s) {
      throw InvalidArgument(
          fmt::format("tensor sizes [{}] overflow int64", fmt::join(sizes, ", ")));
    }
    numel *= s;
  }
  return numel;
}

// Calls fn(element_offset) for every element in row-major order.
template <class Fn>
void for_each_offset(const std::vector<int64_t>& sizes, const std::vector<int64_t>& strides,
                     Fn&& fn) {
  const size_t dims = sizes.size();
  for (int64_t s : sizes) {
    if (s == 0) return;
  }
  std::vector<int64_t> index(dims, 0);
  int64_t offset = 0;
  while (true) {
    fn(offset);
    size_t d = dims;
    while (d > 0) {
      --d;
      if (++index[d] < sizes[d]) {
        offset += strides[d];
        break;
      }
      offset -= strides[d] * (sizes[d] - 1);
      index[d] = 0;
      if (d == 0) return;
    }
    if (dims == 0) return;
  }
}

// Copies the elements of a strided view into contiguous memory at dst.
void gather_to_contiguous(const Tensor& src, void* dst) {
  const size_t item = src.element_size();
  if (src.is_contiguous()) {
    std::memcpy(dst, src.data_ptr(), src.nbytes());
    return;
  }
  auto* out = static_cast<char*>(dst);
  const auto* base = static_cast<const char*>(src.data_ptr());
  for_each_offset(src.sizes(), src.strides(), [&](int64_t offset) {
    std::memcpy(out, base + offset * static_cast<int64_t>(item), item);
    out += item;
  });
}

}  // namespace

namespace detail {

void throw_dtype_mismatch(DType have, const char* want) {
  throw InvalidArgument(
      fmt::format("tensor has dtype {} but was accessed as {}", to_string(have), want));
}

bool dtype_matches(DType have, DType want) { return have == want; }

}  // namespace detail

const Tensor::Shape Tensor::kNoShape{};

namespace {

bool strides_are_contiguous(const std::vector<int64_t>& sizes,
                            const std::vector<int64_t>& strides) {
  int64_t expected = 1;
  for (size_t i = sizes.size(); i-- > 0;) {
    if (sizes[i] == 1) continue;  // any stride is fine for a size-1 dimension
    if (sizes[i] == 0) return true;
    if (strides[i] != expected) return false;
    expected *= sizes[i];
  }
  return true;
}

}  // namespace

Tensor::Tensor(std::shared_ptr<void> storage, void* data, std::vector<int64_t> sizes,
               std::vector<int64_t> strides, DType dtype, Device device)
    : storage_(std::move(storage)),
      data_(data),
      numel_(checked_numel(sizes)),
      dtype_(dtype),
      dtype_set_(true),
      device_(device) {
  (void)itemsize(dtype);  // rejects an out-of-range dtype code
  const bool contiguous = strides_are_contiguous(sizes, strides);
  shape_ = std::make_shared<const Shape>(Shape{std::move(sizes), std::move(strides), contiguous});
}

Tensor Tensor::empty(std::vector<int64_t> sizes, DType dtype, Device device) {
  if (device.type != DeviceType::CPU) {
    throw InvalidArgument(
        fmt::format("cannot allocate a tensor on {}: tutti allocates CPU memory only; wrap device "
                    "memory with Tensor::from_blob",
                    to_string(device)));
  }
  int64_t numel = checked_numel(sizes);
  auto storage = detail::allocate_storage(static_cast<size_t>(numel) * itemsize(dtype));
  void* data = storage.get();
  auto strides = contiguous_strides(sizes);
  return Tensor(std::move(storage), data, std::move(sizes), std::move(strides), dtype, device);
}

Tensor Tensor::zeros(std::vector<int64_t> sizes, DType dtype, Device device) {
  Tensor t = empty(std::move(sizes), dtype, device);
  std::memset(t.data_ptr(), 0, t.nbytes());
  return t;
}

Tensor Tensor::from_blob(void* data, std::vector<int64_t> sizes, DType dtype,
                         std::vector<int64_t> strides, Device device) {
  return from_blob(data, std::move(sizes), dtype, std::move(strides), nullptr, device);
}

Tensor Tensor::from_blob(void* data, std::vector<int64_t> sizes, DType dtype,
                         std::vector<int64_t> strides, std::shared_ptr<void> keep_alive,
                         Device device) {
  if (strides.empty()) {
    strides = contiguous_strides(sizes);
  } else if (strides.size() != sizes.size()) {
    throw InvalidArgument(
        fmt::format("from_blob: {} strides given for {} dimensions", strides.size(), sizes.size()));
  }
  for (int64_t s : strides) {
    if (s < 0) {
      throw InvalidArgument(
          fmt::format("from_blob: negative stride in [{}]", fmt::join(strides, ", ")));
    }
  }
  int64_t numel = checked_numel(sizes);
  if (data == nullptr && numel > 0) {
    throw InvalidArgument("from_blob: null data pointer for a non-empty tensor");
  }
  return Tensor(std::move(keep_alive), data, std::move(sizes), std::move(strides), dtype, device);
}

int64_t Tensor::size(int64_t dim) const {
  if (dim < 0) dim += this->dim();
  if (dim < 0 || dim >= this->dim()) {
    throw InvalidArgument(
        fmt::format("dimension {} out of range for a {}-d tensor", dim, this->dim()));
  }
  return sizes()[static_cast<size_t>(dim)];
}

Tensor Tensor::clone() const {
  if (!defined()) return Tensor();
  if (device_.type != DeviceType::CPU) {
    throw InvalidArgument(fmt::format(
        "clone: cannot copy a tensor on {}; tutti copies CPU memory only", to_string(device_)));
  }
  Tensor copy = empty(sizes(), dtype_, device_);
  gather_to_contiguous(*this, copy.data_ptr());
  return copy;
}

bool Tensor::equal(const Tensor& other) const {
  if (defined() != other.defined()) return false;
  if (!defined()) return true;
  if (dtype_ != other.dtype_ || sizes() != other.sizes()) return false;
  if (is_contiguous() && other.is_contiguous()) {
    return nbytes() == 0 || std::memcmp(data_, other.data_, nbytes()) == 0;
  }
  Tensor a = is_contiguous() ? *this : clone();
  Tensor b = other.is_contiguous() ? other : other.clone();
  return std::memcmp(a.data_, b.data_, nbytes()) == 0;
}

Tensor Tensor::narrow(int64_t dim, int64_t start, int64_t length) const {
  const int64_t extent = size(dim);
  if (dim < 0) dim += this->dim();
  if (start < 0 || length < 0 || start > extent || length > extent - start) {
    throw InvalidArgument(fmt::format("narrow: [{}, {}) out of range for dimension {} of size {}",
                                      start, start + length, dim, extent));
  }
  std::vector<int64_t> sizes = this->sizes();
  sizes[static_cast<size_t>(dim)] = length;
  auto* data = static_cast<char*>(data_) +
               start * strides()[static_cast<size_t>(dim)] * static_cast<int64_t>(element_size());
  return Tensor(storage_, data, std::move(sizes), strides(), dtype_, device_);
}

Tensor Tensor::view(std::vector<int64_t> sizes) const {
  if (!is_contiguous()) {
    throw InvalidArgument("view: the tensor is not contiguous; clone() it first");
  }
  if (checked_numel(sizes) != numel_) {
    throw InvalidArgument(
        fmt::format("view: cannot view {} elements as [{}]", numel_, fmt::join(sizes, ", ")));
  }
  auto strides = contiguous_strides(sizes);
  return Tensor(storage_, data_, std::move(sizes), std::move(strides), dtype_, device_);
}

void Tensor::copy_(const Tensor& src) {
  if (!defined() || !src.defined()) throw InvalidArgument("copy_: undefined tensor");
  if (src.dtype_ != dtype_ || src.numel_ != numel_) {
    throw InvalidArgument(fmt::format("copy_: cannot copy {}[{}] into {}[{}]",
                                      to_string(src.dtype_), src.numel_, to_string(dtype_),
                                      numel_));
  }
  if (device_.type != DeviceType::CPU || src.device_.type != DeviceType::CPU) {
    throw InvalidArgument("copy_: tutti copies CPU memory only");
  }
  if (is_contiguous()) {
    if (src.is_contiguous()) {
      if (nbytes() > 0) std::memmove(data_, src.data_, nbytes());
    } else {
      gather_to_contiguous(src, data_);
    }
    return;
  }
  Tensor staged = src.is_contiguous() ? src : src.clone();
  const size_t item = element_size();
  const auto* in = static_cast<const char*>(staged.data_);
  auto* base = static_cast<char*>(data_);
  for_each_offset(sizes(), strides(), [&](int64_t offset) {
    std::memcpy(base + offset * static_cast<int64_t>(item), in, item);
    in += item;
  });
}

}  // namespace tutti
