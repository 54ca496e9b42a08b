#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstring>
#include <numeric>

#include "core/reduce.hpp"
#include "tutti/tensor.hpp"

namespace tutti {
namespace {

Tensor contiguous(const Tensor& t) { return t.is_contiguous() ? t : t.clone(); }

// Elements in one values row: the product of the dense sizes.
size_t row_elements(const Tensor& values) {
  const auto& sizes = values.sizes();
  return static_cast<size_t>(
      std::accumulate(sizes.begin() + 1, sizes.end(), int64_t{1}, std::multiplies<>()));
}

}  // namespace

SparseTensor::SparseTensor(Tensor indices, Tensor values, std::vector<int64_t> sizes)
    : sizes_(std::move(sizes)) {
  if (!indices.defined() || !values.defined()) {
    throw InvalidArgument("SparseTensor: indices and values must be defined tensors");
  }
  if (indices.dtype() != DType::Int64 || indices.dim() != 2) {
    throw InvalidArgument(
        fmt::format("SparseTensor: indices must be an int64 tensor [sparse_dim, nnz], got {}[{}]",
                    to_string(indices.dtype()), fmt::join(indices.sizes(), ", ")));
  }
  if (indices.device().type != DeviceType::CPU || values.device().type != DeviceType::CPU) {
    throw InvalidArgument("SparseTensor: indices and values must be CPU tensors");
  }
  if (values.dim() < 1 || values.size(0) != indices.size(1)) {
    throw InvalidArgument(
        fmt::format("SparseTensor: values must be [nnz, dense sizes...] with nnz = {}, got [{}]",
                    indices.size(1), fmt::join(values.sizes(), ", ")));
  }
  const int64_t sparse_dim = indices.size(0);
  const int64_t dense_dim = values.dim() - 1;
  if (static_cast<int64_t>(sizes_.size()) != sparse_dim + dense_dim) {
    throw InvalidArgument(
        fmt::format("SparseTensor: sizes [{}] must have sparse_dim ({}) + dense_dim ({}) entries",
                    fmt::join(sizes_, ", "), sparse_dim, dense_dim));
  }
  for (int64_t d = 0; d < dense_dim; ++d) {
    if (sizes_[static_cast<size_t>(sparse_dim + d)] != values.size(d + 1)) {
      throw InvalidArgument(
          fmt::format("SparseTensor: dense sizes of values [{}] do not match sizes [{}]",
                      fmt::join(values.sizes(), ", "), fmt::join(sizes_, ", ")));
    }
  }
  indices_ = contiguous(indices);
  values_ = contiguous(values);
  const int64_t nnz = indices_.size(1);
  const int64_t* idx = indices_.data<int64_t>();
  for (int64_t d = 0; d < sparse_dim; ++d) {
    for (int64_t i = 0; i < nnz; ++i) {
      int64_t v = idx[d * nnz + i];
      if (v < 0 || v >= sizes_[static_cast<size_t>(d)]) {
        throw InvalidArgument(
            fmt::format("SparseTensor: index {} in sparse dimension {} (entry {}) is out of range "
                        "for size {}",
                        v, d, i, sizes_[static_cast<size_t>(d)]));
      }
    }
  }
}

int64_t SparseTensor::nnz() const { return indices_.size(1); }
int64_t SparseTensor::sparse_dim() const { return indices_.size(0); }
int64_t SparseTensor::dense_dim() const { return values_.dim() - 1; }

SparseTensor SparseTensor::coalesce() const {
  if (coalesced_) return *this;
  const int64_t n = nnz();
  const int64_t sd = sparse_dim();
  const int64_t* idx = indices_.data<int64_t>();
  auto column_less = [&](int64_t a, int64_t b) {
    for (int64_t d = 0; d < sd; ++d) {
      if (idx[d * n + a] != idx[d * n + b]) return idx[d * n + a] < idx[d * n + b];
    }
    return false;
  };
  auto column_equal = [&](int64_t a, int64_t b) {
    for (int64_t d = 0; d < sd; ++d) {
      if (idx[d * n + a] != idx[d * n + b]) return false;
    }
    return true;
  };
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), column_less);

  // Group runs of equal columns; each run becomes one output entry.
  std::vector<std::pair<int64_t, int64_t>> runs;  // [begin, end) in `order`
  for (int64_t i = 0; i < n;) {
    int64_t j = i + 1;
    while (j < n && column_equal(order[static_cast<size_t>(i)], order[static_cast<size_t>(j)])) {
      ++j;
    }
    runs.emplace_back(i, j);
    i = j;
  }
  const auto unique = static_cast<int64_t>(runs.size());
  std::vector<int64_t> value_sizes = values_.sizes();
  value_sizes[0] = unique;
  Tensor new_indices = Tensor::empty({sd, unique}, DType::Int64);
  Tensor new_values = Tensor::empty(value_sizes, values_.dtype());
  int64_t* out_idx = new_indices.data<int64_t>();
  const size_t row_elems = row_elements(values_);
  const size_t row = row_elems * values_.element_size();
  const auto* in_values = static_cast<const char*>(values_.data_ptr());
  auto* out_values = static_cast<char*>(new_values.data_ptr());
  std::vector<const void*> rows;
  for (int64_t r = 0; r < unique; ++r) {
    auto [begin, end] = runs[static_cast<size_t>(r)];
    const int64_t first = order[static_cast<size_t>(begin)];
    for (int64_t d = 0; d < sd; ++d) out_idx[d * unique + r] = idx[d * n + first];
    rows.clear();
    for (int64_t k = begin; k < end; ++k) {
      rows.push_back(in_values + static_cast<size_t>(order[static_cast<size_t>(k)]) * row);
    }
    if (row_elems > 0) {
      kernels::combine_many(out_values + static_cast<size_t>(r) * row, rows.data(), rows.size(),
                            row_elems, values_.dtype(), ReduceOp::SUM);
    }
  }
  SparseTensor result(std::move(new_indices), std::move(new_values), sizes_);
  result.coalesced_ = true;
  return result;
}

Tensor SparseTensor::to_dense() const {
  Tensor dense = Tensor::zeros(sizes_, values_.dtype());
  const int64_t n = nnz();
  const int64_t sd = sparse_dim();
  const int64_t* idx = indices_.data<int64_t>();
  const size_t row_elems = row_elements(values_);
  const size_t row = row_elems * values_.element_size();
  if (row_elems == 0) return dense;
  const auto& strides = dense.strides();
  const auto* in_values = static_cast<const char*>(values_.data_ptr());
  auto* out = static_cast<char*>(dense.data_ptr());
  for (int64_t i = 0; i < n; ++i) {
    int64_t offset = 0;
    for (int64_t d = 0; d < sd; ++d) offset += idx[d * n + i] * strides[static_cast<size_t>(d)];
    kernels::combine_into(out + static_cast<size_t>(offset) * values_.element_size(),
                          in_values + static_cast<size_t>(i) * row, row_elems, values_.dtype(),
                          ReduceOp::SUM);
  }
  return dense;
}

}  // namespace tutti
