// Argument checks shared by the ProcessGroup front end and the backends.
//
// A Validator names one call ("allreduce on group 'default' rank 1/4") and
// raises InvalidArgument with that context for the first problem it finds.
// Tensor names are formatted only when a check fails, so passing checks cost
// no allocation.
#pragma once

#include <fmt/format.h>

#include <string>
#include <string_view>
#include <vector>

#include "tutti/errors.hpp"
#include "tutti/reduce_op.hpp"
#include "tutti/tensor.hpp"
#include "tutti/work.hpp"

namespace tutti {

// "inputs", "inputs[2]" or "outputs[1][3]", built on failure only.
struct TensorName {
  const char* base;
  int64_t i = -1;
  int64_t j = -1;
  std::string str() const;
};

class Validator {
 public:
  // `where`: the group context, e.g. "group 'default' rank 1/4".
  Validator(OpType op, std::string_view where) : op_(op), where_(where) {}

  template <class... Args>
  [[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) const {
    fail_message(fmt::format(format, std::forward<Args>(args)...));
  }
  [[noreturn]] void fail_message(const std::string& message) const;

  // A defined, contiguous tensor; all tensors of a call share one device.
  void tensor(const Tensor& t, TensorName name);
  // A non-empty list of tensors with one dtype and one shape.
  void uniform_list(const std::vector<Tensor>& list, const char* name);
  // `t` has the dtype and shape of `ref`.
  void matches(const Tensor& t, TensorName name, const Tensor& ref, TensorName ref_name) const;
  void same_dtype(const Tensor& t, TensorName name, const Tensor& ref, TensorName ref_name) const;
  void count(size_t actual, size_t expected, const char* what) const;
  void rank_in_range(int64_t rank, int size, const char* what) const;
  void index_in_range(int64_t index, size_t size, const char* what) const;
  void reduce_op(ReduceOp op, DType dtype) const;

  // The device of the tensors seen so far (CPU when there were none).
  Device device() const { return device_; }

 private:
  OpType op_;
  std::string_view where_;
  Device device_;
  bool have_device_ = false;
  TensorName device_source_{""};
};

}  // namespace tutti
