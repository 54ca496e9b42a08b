// Helpers shared by the algorithm files.
#pragma once

#include <cstdint>
#include <functional>

#include "core/reduce.hpp"
#include "tutti/errors.hpp"
#include "tutti/reduce_op.hpp"
#include "tutti/tensor.hpp"

namespace tutti::gloo_backend {

// gloo's typed setters only use sizeof(T); calls fn with a value of the
// unsigned type whose size is `bytes`.
template <class Fn>
void with_element_type(size_t bytes, Fn&& fn) {
  switch (bytes) {
    case 1:
      return fn(uint8_t{});
    case 2:
      return fn(uint16_t{});
    case 4:
      return fn(uint32_t{});
    case 8:
      return fn(uint64_t{});
    default:
      throw DistBackendError("gloo: unsupported element size");
  }
}

// gloo's reduce function (out = a op b over n elements) for one dtype and
// ReduceOp, run by tutti's vectorised kernels.
inline std::function<void(void*, const void*, const void*, size_t)> reduce_function(DType dtype,
                                                                                    ReduceOp op) {
  const ReduceOp::Kind kind = kernels::combine_kind(op);
  return [dtype, kind](void* out, const void* a, const void* b, size_t n) {
    kernels::combine(out, a, b, n, dtype, kind);
  };
}

// PREMUL_SUM's local step before the sum.
inline void premultiply(Tensor& t, ReduceOp op) {
  if (op.kind == ReduceOp::PREMUL_SUM) {
    kernels::scale(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()), t.dtype(),
                   op.factor);
  }
}

// AVG's final step after the sum.
inline void finish_average(Tensor& t, ReduceOp op, int size) {
  if (op.kind == ReduceOp::AVG) {
    kernels::divide(t.data_ptr(), static_cast<size_t>(t.numel()), t.dtype(), size);
  }
}

}  // namespace tutti::gloo_backend
