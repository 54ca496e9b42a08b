#include "core/checks.hpp"

#include <fmt/ranges.h>

namespace tutti {

std::string TensorName::str() const {
  if (i < 0) return base;
  if (j < 0) return fmt::format("{}[{}]", base, i);
  return fmt::format("{}[{}][{}]", base, i, j);
}

namespace {

std::string describe(const Tensor& t) {
  return fmt::format("{}[{}]", to_string(t.dtype()), fmt::join(t.sizes(), ", "));
}

}  // namespace

void Validator::fail_message(const std::string& message) const {
  throw InvalidArgument(fmt::format("{} on {}: {}", to_string(op_), where_, message));
}

void Validator::tensor(const Tensor& t, TensorName name) {
  if (!t.defined()) fail("{} is an undefined tensor", name.str());
  if (!t.is_contiguous()) {
    fail("{} ({}) is not contiguous; pass a contiguous tensor (clone() makes one)", name.str(),
         describe(t));
  }
  if (!have_device_) {
    device_ = t.device();
    device_source_ = name;
    have_device_ = true;
  } else if (!(t.device() == device_)) {
    fail("tensors are on different devices: {} is on {} but {} is on {}", name.str(),
         to_string(t.device()), device_source_.str(), to_string(device_));
  }
}

void Validator::uniform_list(const std::vector<Tensor>& list, const char* name) {
  if (list.empty()) fail("requires a non-empty list of {}", name);
  for (size_t i = 0; i < list.size(); ++i) {
    tensor(list[i], {name, static_cast<int64_t>(i)});
    if (i > 0) matches(list[i], {name, static_cast<int64_t>(i)}, list[0], {name, 0});
  }
}

void Validator::matches(const Tensor& t, TensorName name, const Tensor& ref,
                        TensorName ref_name) const {
  if (t.dtype() != ref.dtype() || t.sizes() != ref.sizes()) {
    fail("{} is {} but {} is {}; they must have the same dtype and shape", name.str(), describe(t),
         ref_name.str(), describe(ref));
  }
}

void Validator::same_dtype(const Tensor& t, TensorName name, const Tensor& ref,
                           TensorName ref_name) const {
  if (t.dtype() != ref.dtype()) {
    fail("{} has dtype {} but {} has dtype {}; they must match", name.str(), to_string(t.dtype()),
         ref_name.str(), to_string(ref.dtype()));
  }
}

void Validator::count(size_t actual, size_t expected, const char* what) const {
  if (actual != expected) fail("expected {} {}, got {}", expected, what, actual);
}

void Validator::rank_in_range(int64_t rank, int size, const char* what) const {
  if (rank < 0 || rank >= size) {
    fail("{} {} is out of range; the group has ranks 0 to {}", what, rank, size - 1);
  }
}

void Validator::index_in_range(int64_t index, size_t size, const char* what) const {
  if (index < 0 || static_cast<size_t>(index) >= size) {
    fail("{} {} is out of range for {} tensors", what, index, size);
  }
}

void Validator::reduce_op(ReduceOp op, DType dtype) const {
  if (!supports(op, dtype)) {
    const bool bitwise =
        op.kind == ReduceOp::BAND || op.kind == ReduceOp::BOR || op.kind == ReduceOp::BXOR;
    fail("ReduceOp.{} is not defined on dtype {}{}", to_string(op.kind), to_string(dtype),
         bitwise ? "; bitwise ops need bool or integer tensors" : "");
  }
}

}  // namespace tutti
