#include "tutti/process_group.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <set>

#include "core/checks.hpp"
#include "core/logging.hpp"
#include "debug/debug_backend.hpp"
#include "debug/group_tracer.hpp"
#include "tutti/prefix_store.hpp"

namespace tutti {
namespace {

size_t device_slot(DeviceType type) { return static_cast<size_t>(type); }

DeviceType parse_device_type(const std::string& text, const std::string& spec) {
  if (text == "cpu") return DeviceType::CPU;
  if (text == "cuda") return DeviceType::CUDA;
  throw InvalidArgument(
      fmt::format("backend spec '{}': unknown device type '{}'; expected cpu or cuda", spec, text));
}

const BackendInfo& require_backend(const std::string& name, const std::string& spec) {
  const BackendInfo* info = find_backend(name);
  if (info == nullptr) {
    auto known = registered_backends();
    throw InvalidArgument(fmt::format(
        "unknown backend '{}' in '{}'; registered backends: {}", name, spec,
        known.empty() ? std::string("(none)") : fmt::format("{}", fmt::join(known, ", "))));
  }
  return *info;
}

// Splits "gloo" or "cpu:gloo,cuda:nccl" into (device type, backend) pairs.
std::vector<std::pair<DeviceType, const BackendInfo*>> parse_backend_spec(const std::string& spec) {
  std::vector<std::pair<DeviceType, const BackendInfo*>> result;
  if (spec.empty()) return result;
  if (spec.find(':') == std::string::npos) {
    const BackendInfo& info = require_backend(spec, spec);
    for (DeviceType type : info.devices) result.emplace_back(type, &info);
    return result;
  }
  size_t start = 0;
  while (start <= spec.size()) {
    size_t comma = spec.find(',', start);
    std::string item =
        spec.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    size_t colon = item.find(':');
    if (colon == std::string::npos) {
      throw InvalidArgument(fmt::format(
          "backend spec '{}': entry '{}' is not device:backend (e.g. cpu:gloo)", spec, item));
    }
    DeviceType type = parse_device_type(item.substr(0, colon), spec);
    const BackendInfo& info = require_backend(item.substr(colon + 1), spec);
    if (std::find(info.devices.begin(), info.devices.end(), type) == info.devices.end()) {
      throw InvalidArgument(fmt::format("backend spec '{}': backend '{}' does not serve {}", spec,
                                        info.name, to_string(type)));
    }
    result.emplace_back(type, &info);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return result;
}

}  // namespace

ProcessGroup::ProcessGroup(std::shared_ptr<Store> store, int rank, int size, Options options)
    : ProcessGroup(std::move(store), rank, size, std::move(options), BackendSlots{}) {}

ProcessGroup::ProcessGroup(std::shared_ptr<Store> store, int rank, int size, Options options,
                           BackendSlots prebuilt)
    : store_(std::move(store)),
      rank_(rank),
      size_(size),
      options_(std::move(options)),
      description_(fmt::format("group '{}' rank {}/{}", options_.group_name, rank_, size_)) {
  if (size_ < 1) throw InvalidArgument(fmt::format("ProcessGroup: size {} < 1", size_));
  if (rank_ < 0 || rank_ >= size_) {
    throw InvalidArgument(
        fmt::format("ProcessGroup: rank {} is out of range for size {}", rank_, size_));
  }
  if (options_.timeout <= std::chrono::milliseconds::zero()) {
    throw InvalidArgument(
        fmt::format("ProcessGroup: timeout must be positive, got {} ms", options_.timeout.count()));
  }
  for (const auto& [type, info] : parse_backend_spec(options_.backend)) {
    if (!store_ && info->needs_store) {
      throw InvalidArgument(
          fmt::format("ProcessGroup: backend '{}' needs a store, got null", info->name));
    }
    BackendConfig config;
    if (store_) {
      config.store =
          std::make_shared<PrefixStore>(fmt::format("{}/{}", info->name, to_string(type)), store_);
    }
    config.rank = rank_;
    config.size = size_;
    config.timeout = options_.timeout;
    config.group_name = options_.group_name;
    // One backend instance serves every device type it was named for.
    std::shared_ptr<Backend> backend = prebuilt[device_slot(type)];
    for (const auto& slot : backends_) {
      if (slot && slot->name() == info->name) backend = slot;
    }
    if (!backend) backend = info->factory(config);
    backends_[device_slot(type)] = std::move(backend);
  }
  // TUTTI_DEBUG: logs the group and, at DETAIL, wraps its backends in checks.
  debug::instrument_group(backends_, {store_, rank_, size_, options_.timeout, options_.group_name},
                          backend_name());
  {
    std::lock_guard<std::mutex> lock(backends_mutex_);
    publish_routes_locked();
  }
  tracer_ = trace::GroupTracer::create(store_, rank_, size_, options_.group_name);
  TUTTI_LOG(LogLevel::INFO, rank_, options_.group_name,
            "created process group of size {} with backend '{}'", size_, backend_name());
}

ProcessGroup::~ProcessGroup() = default;

std::string ProcessGroup::backend_name() const {
  if (!options_.backend.empty()) return options_.backend;
  std::lock_guard<std::mutex> lock(backends_mutex_);
  std::string name;
  for (size_t i = 0; i < backends_.size(); ++i) {
    if (!backends_[i]) continue;
    if (!name.empty()) name += ",";
    name += fmt::format("{}:{}", to_string(static_cast<DeviceType>(i)), backends_[i]->name());
  }
  return name.empty() ? "undefined" : name;
}

void ProcessGroup::set_backend(DeviceType type, std::shared_ptr<Backend> backend) {
  if (backend && (backend->rank() != rank_ || backend->size() != size_)) {
    throw InvalidArgument(
        fmt::format("set_backend on {}: backend '{}' is rank {} of {}, the group is rank {} of {}",
                    describe(), backend->name(), backend->rank(), backend->size(), rank_, size_));
  }
  std::lock_guard<std::mutex> lock(backends_mutex_);
  auto& slot = backends_[device_slot(type)];
  if (slot) replaced_.push_back(std::move(slot));
  slot = std::move(backend);
  publish_routes_locked();
}

void ProcessGroup::publish_routes_locked() {
  for (size_t i = 0; i < backends_.size(); ++i) {
    routes_[i].store(backends_[i].get(), std::memory_order_release);
  }
}

std::shared_ptr<Backend> ProcessGroup::get_backend(DeviceType type) const {
  std::lock_guard<std::mutex> lock(backends_mutex_);
  return backends_[device_slot(type)];
}

Backend& ProcessGroup::route(OpType op, Device device) const {
  // The backend outlives the call: groups keep their backends until
  // destroyed (no lock and no reference count traffic per call).
  Backend* backend = routes_[device_slot(device.type)].load(std::memory_order_acquire);
  if (!backend) {
    throw InvalidArgument(fmt::format("{} on {}: no backend serves {} tensors (backends: {})",
                                      to_string(op), describe(), to_string(device.type),
                                      backend_name()));
  }
  if (!backend->supports(op)) {
    std::vector<std::string> others;
    for (const auto& name : registered_backends()) {
      const BackendInfo* info = find_backend(name);
      if (info && std::find(info->optional_ops.begin(), info->optional_ops.end(), op) !=
                      info->optional_ops.end()) {
        others.push_back(name);
      }
    }
    throw InvalidArgument(fmt::format(
        "{} on {}: the {} backend does not support {}{}", to_string(op), describe(),
        backend->name(), to_string(op),
        others.empty() ? std::string()
                       : fmt::format("; backends that do: {}", fmt::join(others, ", "))));
  }
  return *backend;
}

Backend& ProcessGroup::route_tensorless(OpType op) const {
  Device device;  // CPU when it has a backend, else the first device that does
  {
    std::lock_guard<std::mutex> lock(backends_mutex_);
    if (!backends_[device_slot(DeviceType::CPU)]) {
      for (size_t i = 0; i < backends_.size(); ++i) {
        if (backends_[i]) {
          device.type = static_cast<DeviceType>(i);
          break;
        }
      }
    }
  }
  return route(op, device);
}

// ------------------------------------------------------------- collectives

std::shared_ptr<Work> ProcessGroup::broadcast(std::vector<Tensor>& tensors,
                                              const BroadcastOptions& opts) {
  const std::string& where = describe();
  Validator check(OpType::BROADCAST, where);
  check.uniform_list(tensors, "tensors");
  check.rank_in_range(opts.root_rank, size_, "root_rank");
  check.index_in_range(opts.root_tensor, tensors.size(), "root_tensor");
  Backend& backend = route(OpType::BROADCAST, check.device());
  auto traced = trace::describe_op(OpType::BROADCAST, tensors);
  traced.root = static_cast<int32_t>(opts.root_rank);
  return tracer_->issue(next_sequence(), traced, [&] { return backend.broadcast(tensors, opts); });
}

std::shared_ptr<Work> ProcessGroup::allreduce(std::vector<Tensor>& tensors,
                                              const AllreduceOptions& opts) {
  const std::string& where = describe();
  Validator check(OpType::ALLREDUCE, where);
  check.uniform_list(tensors, "tensors");
  check.reduce_op(opts.reduce_op, tensors[0].dtype());
  Backend& backend = route(OpType::ALLREDUCE, check.device());
  return tracer_->issue(next_sequence(), trace::describe_op(OpType::ALLREDUCE, tensors),
                        [&] { return backend.allreduce(tensors, opts); });
}

std::shared_ptr<Work> ProcessGroup::allreduce_sparse(std::vector<SparseTensor>& tensors,
                                                     const AllreduceOptions& opts) {
  const std::string& where = describe();
  Validator check(OpType::ALLREDUCE_SPARSE, where);
  if (tensors.empty()) check.fail("requires a non-empty list of tensors");
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    check.tensor(t.values(), {"tensors.values", static_cast<int64_t>(i)});
    if (t.sizes() != tensors[0].sizes() || t.dtype() != tensors[0].dtype() ||
        t.sparse_dim() != tensors[0].sparse_dim()) {
      check.fail(
          "tensors[{}] is {}[{}] with sparse_dim {} but tensors[0] is {}[{}] with "
          "sparse_dim {}",
          i, to_string(t.dtype()), fmt::join(t.sizes(), ", "), t.sparse_dim(),
          to_string(tensors[0].dtype()), fmt::join(tensors[0].sizes(), ", "),
          tensors[0].sparse_dim());
    }
  }
  if (opts.reduce_op.kind != ReduceOp::SUM) {
    check.fail("sparse tensors support ReduceOp.SUM only, got {}", to_string(opts.reduce_op.kind));
  }
  Backend& backend = route(OpType::ALLREDUCE_SPARSE, check.device());
  return tracer_->issue(next_sequence(), trace::describe_op(OpType::ALLREDUCE_SPARSE, tensors),
                        [&] { return backend.allreduce_sparse(tensors, opts); });
}

std::shared_ptr<Work> ProcessGroup::allreduce_coalesced(std::vector<Tensor>& tensors,
                                                        const AllreduceCoalescedOptions& opts) {
  const std::string& where = describe();
  Validator check(OpType::ALLREDUCE_COALESCED, where);
  if (tensors.empty()) check.fail("requires a non-empty list of tensors");
  for (size_t i = 0; i < tensors.size(); ++i) {
    check.tensor(tensors[i], {"tensors", static_cast<int64_t>(i)});
    check.same_dtype(tensors[i], {"tensors", static_cast<int64_t>(i)}, tensors[0], {"tensors", 0});
  }
  check.reduce_op(opts.reduce_op, tensors[0].dtype());
  Backend& backend = route(OpType::ALLREDUCE_COALESCED, check.device());
  return tracer_->issue(next_sequence(), trace::describe_op(OpType::ALLREDUCE_COALESCED, tensors),
                        [&] { return backend.allreduce_coalesced(tensors, opts); });
}

std::shared_ptr<Work> ProcessGroup::reduce(std::vector<Tensor>& tensors,
                                           const ReduceOptions& opts) {
  const std::string& where = describe();
  Validator check(OpType::REDUCE, where);
  check.uniform_list(tensors, "tensors");
  check.rank_in_range(opts.root_rank, size_, "root_rank");
  check.index_in_range(opts.root_tensor, tensors.size(), "root_tensor");
  check.reduce_op(opts.reduce_op, tensors[0].dtype());
  Backend& backend = route(OpType::REDUCE, check.device());
  auto traced = trace::describe_op(OpType::REDUCE, tensors);
  traced.root = static_cast<int32_t>(opts.root_rank);
  return tracer_->issue(next_sequence(), traced, [&] { return backend.reduce(tensors, opts); });
}

std::shared_ptr<Work> ProcessGroup::allgather(std::vector<std::vector<Tensor>>& outputs,
                                              std::vector<Tensor>& inputs,
                                              const AllgatherOptions& opts) {
  const std::string& where = describe();
  Validator check(OpType::ALLGATHER, where);
  check.uniform_list(inputs, "inputs");
  check.count(outputs.size(), inputs.size(), "output lists (one per input tensor)");
  for (size_t i = 0; i < outputs.size(); ++i) {
    check.count(outputs[i].size(), static_cast<size_t>(size_),
                "tensors in each output list (one per rank)");
    for (size_t r = 0; r < outputs[i].size(); ++r) {
      TensorName name{"outputs", static_cast<int64_t>(i), static_cast<int64_t>(r)};
      check.tensor(outputs[i][r], name);
      check.matches(outputs[i][r], name, inputs[i], {"inputs", static_cast<int64_t>(i)});
    }
  }
  Backend& backend = route(OpType::ALLGATHER, check.device());
  return tracer_->issue(next_sequence(), trace::describe_op(OpType::ALLGATHER, inputs),
                        [&] { return backend.allgather(outputs, inputs, opts); });
}

namespace {

// output holds size * input.numel() elements of input's dtype.
void check_gathered_pair(Validator& check, const Tensor& output, TensorName out_name,
                         const Tensor& input, TensorName in_name, int size) {
  check.tensor(input, in_name);
  check.tensor(output, out_name);
  check.same_dtype(output, out_name, input, in_name);
  if (output.numel() != input.numel() * size) {
    check.fail("{} has {} elements but must have world size ({}) x {} elements of {} = {}",
               out_name.str(), output.numel(), size, input.numel(), in_name.str(),
               input.numel() * size);
  }
}

}  // namespace

std::shared_ptr<Work> ProcessGroup::allgather_into_tensor(Tensor& output, Tensor& input,
                                                          const AllgatherOptions& opts) {
  const std::string& where = describe();
  Validator check(OpType::ALLGATHER_INTO_TENSOR, where);
  check_gathered_pair(check, output, {"output"}, input, {"input"}, size_);
  Backend& backend = route(OpType::ALLGATHER_INTO_TENSOR, check.device());
  return tracer_->issue(next_sequence(), trace::describe_op(OpType::ALLGATHER_INTO_TENSOR, input),
                        [&] { return backend.allgather_into_tensor(output, input, opts); });
}

std::shared_ptr<Work> ProcessGroup::allgather_coalesced(
    std::vector<std::vector<Tensor>>& output_lists, std::vector<Tensor>& inputs,
    const AllgatherOptions& opts) {
  const std::string& where = describe();
  Validator check(OpType::ALLGATHER_COALESCED, where);
  if (inputs.empty()) check.fail("requires a non-empty list of inputs");
  for (size_t j = 0; j < inputs.size(); ++j) {
    check.tensor(inputs[j], {"inputs", static_cast<int64_t>(j)});
  }
  check.count(output_lists.size(), static_cast<size_t>(size_), "output lists (one per rank)");
  for (size_t r = 0; r < output_lists.size(); ++r) {
    check.count(output_lists[r].size(), inputs.size(),
                "tensors in each output list (one per input)");
    for (size_t j = 0; j < inputs.size(); ++j) {
      TensorName name{"output_lists", static_cast<int64_t>(r), static_cast<int64_t>(j)};
      check.tensor(output_lists[r][j], name);
      check.matches(output_lists[r][j], name, inputs[j], {"inputs", static_cast<int64_t>(j)});
    }
  }
  Backend& backend = route(OpType::ALLGATHER_COALESCED, check.device());
  return tracer_->issue(next_sequence(), trace::describe_op(OpType::ALLGATHER_COALESCED, inputs),
                        [&] { return backend.allgather_coalesced(output_lists, inputs, opts); });
}

std::shared_ptr<Work> ProcessGroup::allgather_into_tensor_coalesced(std::vector<Tensor>& outputs,
                                                                    std::vector<Tensor>& inputs,
                                                                    const AllgatherOptions& opts) {
  const std::string& where = describe();
  Validator check(OpType::ALLGATHER_INTO_TENSOR_COALESCED, where);
  if (inputs.empty()) check.fail("requires a non-empty list of inputs");
  check.count(outputs.size(), inputs.size(), "outputs (one per input)");
  for (size_t i = 0; i < inputs.size(); ++i) {
    check_gathered_pair(check, outputs[i], {"outputs", static_cast<int64_t>(i)}, inputs[i],
                        {"inputs", static_cast<int64_t>(i)}, size_);
  }
  Backend& backend = route(OpType::ALLGATHER_INTO_TENSOR_COALESCED, check.device());
  return tracer_->issue(
      next_sequence(), trace::describe_op(OpType::ALLGATHER_INTO_TENSOR_COALESCED, inputs),
      [&] { return backend.allgather_into_tensor_coalesced(outputs, inputs, opts); });
}

std::shared_ptr<Work> ProcessGroup::gather(std::vector<std::vector<Tensor>>& outputs,
                                           std::vector<Tensor>& inputs, const GatherOptions& opts) {
  const std::string& where = describe();
  Validator check(OpType::GATHER, where);
  check.rank_in_range(opts.root_rank, size_, "root_rank");
  check.count(inputs.size(), 1, "input tensors");
  check.tensor(inputs[0], {"inputs", 0});
  if (rank_ == opts.root_rank) {
    check.count(outputs.size(), 1, "output lists on the root");
    check.count(outputs[0].size(), static_cast<size_t>(size_),
                "tensors in the root's output list (one per rank)");
    for (size_t r = 0; r < outputs[0].size(); ++r) {
      TensorName name{"outputs", 0, static_cast<int64_t>(r)};
      check.tensor(outputs[0][r], name);
      check.matches(outputs[0][r], name, inputs[0], {"inputs", 0});
    }
  } else if (!outputs.empty()) {
    check.fail("requires an empty output list on non-root ranks (root is {})", opts.root_rank);
  }
  Backend& backend = route(OpType::GATHER, check.device());
  auto traced = trace::describe_op(OpType::GATHER, inputs);
  traced.root = static_cast<int32_t>(opts.root_rank);
  return tracer_->issue(next_sequence(), traced,
                        [&] { return backend.gather(outputs, inputs, opts); });
}

std::shared_ptr<Work> ProcessGroup::scatter(std::vector<Tensor>& outputs,
                                            std::vector<std::vector<Tensor>>& inputs,
                                            const ScatterOptions& opts) {
  const std::string& where = describe();
  Validator check(OpType::SCATTER, where);
  check.rank_in_range(opts.root_rank, size_, "root_rank");
  check.count(outputs.size(), 1, "output tensors");
  check.tensor(outputs[0], {"outputs", 0});
  if (rank_ == opts.root_rank) {
    check.count(inputs.size(), 1, "input lists on the root");
    check.count(inputs[0].size(), static_cast<size_t>(size_),
                "tensors in the root's input list (one per rank)");
    for (size_t r = 0; r < inputs[0].size(); ++r) {
      TensorName name{"inputs", 0, static_cast<int64_t>(r)};
      check.tensor(inputs[0][r], name);
      check.matches(inputs[0][r], name, outputs[0], {"outputs", 0});
    }
  } else if (!inputs.empty()) {
    check.fail("requires an empty input list on non-root ranks (root is {})", opts.root_rank);
  }
  Backend& backend = route(OpType::SCATTER, check.device());
  auto traced = trace::describe_op(OpType::SCATTER, outputs);
  traced.root = static_cast<int32_t>(opts.root_rank);
  return tracer_->issue(next_sequence(), traced,
                        [&] { return backend.scatter(outputs, inputs, opts); });
}

std::shared_ptr<Work> ProcessGroup::reduce_scatter(std::vector<Tensor>& outputs,
                                                   std::vector<std::vector<Tensor>>& inputs,
                                                   const ReduceScatterOptions& opts) {
  const std::string& where = describe();
  Validator check(OpType::REDUCE_SCATTER, where);
  check.uniform_list(outputs, "outputs");
  check.count(inputs.size(), outputs.size(), "input lists (one per output tensor)");
  for (size_t i = 0; i < inputs.size(); ++i) {
    check.count(inputs[i].size(), static_cast<size_t>(size_),
                "tensors in each input list (one per rank)");
    for (size_t r = 0; r < inputs[i].size(); ++r) {
      TensorName name{"inputs", static_cast<int64_t>(i), static_cast<int64_t>(r)};
      check.tensor(inputs[i][r], name);
      check.matches(inputs[i][r], name, outputs[i], {"outputs", static_cast<int64_t>(i)});
    }
  }
  check.reduce_op(opts.reduce_op, outputs[0].dtype());
  Backend& backend = route(OpType::REDUCE_SCATTER, check.device());
  return tracer_->issue(next_sequence(), trace::describe_op(OpType::REDUCE_SCATTER, outputs),
                        [&] { return backend.reduce_scatter(outputs, inputs, opts); });
}

std::shared_ptr<Work> ProcessGroup::reduce_scatter_tensor(Tensor& output, Tensor& input,
                                                          const ReduceScatterOptions& opts) {
  const std::string& where = describe();
  Validator check(OpType::REDUCE_SCATTER_TENSOR, where);
  check_gathered_pair(check, input, {"input"}, output, {"output"}, size_);
  check.reduce_op(opts.reduce_op, output.dtype());
  Backend& backend = route(OpType::REDUCE_SCATTER_TENSOR, check.device());
  return tracer_->issue(next_sequence(), trace::describe_op(OpType::REDUCE_SCATTER_TENSOR, input),
                        [&] { return backend.reduce_scatter_tensor(output, input, opts); });
}

std::shared_ptr<Work> ProcessGroup::reduce_scatter_tensor_coalesced(
    std::vector<Tensor>& outputs, std::vector<Tensor>& inputs, const ReduceScatterOptions& opts) {
  const std::string& where = describe();
  Validator check(OpType::REDUCE_SCATTER_TENSOR_COALESCED, where);
  if (outputs.empty()) check.fail("requires a non-empty list of outputs");
  check.count(inputs.size(), outputs.size(), "inputs (one per output)");
  for (size_t i = 0; i < outputs.size(); ++i) {
    check_gathered_pair(check, inputs[i], {"inputs", static_cast<int64_t>(i)}, outputs[i],
                        {"outputs", static_cast<int64_t>(i)}, size_);
    check.same_dtype(outputs[i], {"outputs", static_cast<int64_t>(i)}, outputs[0], {"outputs", 0});
  }
  check.reduce_op(opts.reduce_op, outputs[0].dtype());
  Backend& backend = route(OpType::REDUCE_SCATTER_TENSOR_COALESCED, check.device());
  return tracer_->issue(
      next_sequence(), trace::describe_op(OpType::REDUCE_SCATTER_TENSOR_COALESCED, inputs),
      [&] { return backend.reduce_scatter_tensor_coalesced(outputs, inputs, opts); });
}

namespace {

// Split sizes are counts of rows along dimension 0; empty means equal parts.
void check_splits(Validator& check, const Tensor& t, const char* tensor_name,
                  const std::vector<int64_t>& splits, const char* splits_name, int size) {
  if (t.dim() == 0) check.fail("{} must have at least one dimension", tensor_name);
  const int64_t rows = t.size(0);
  if (splits.empty()) {
    if (rows % size != 0) {
      check.fail(
          "{} has {} rows in dimension 0, which do not split into {} equal parts; "
          "pass {}",
          tensor_name, rows, size, splits_name);
    }
    return;
  }
  if (splits.size() != static_cast<size_t>(size)) {
    check.fail("{} has {} entries; it needs one per rank ({})", splits_name, splits.size(), size);
  }
  int64_t total = 0;
  for (size_t r = 0; r < splits.size(); ++r) {
    if (splits[r] < 0) check.fail("{}[{}] = {} is negative", splits_name, r, splits[r]);
    total += splits[r];
  }
  if (total != rows) {
    check.fail("{} [{}] sum to {} but {} has {} rows in dimension 0", splits_name,
               fmt::join(splits, ", "), total, tensor_name, rows);
  }
}

}  // namespace

std::shared_ptr<Work> ProcessGroup::alltoall_base(Tensor& output, Tensor& input,
                                                  std::vector<int64_t> output_split_sizes,
                                                  std::vector<int64_t> input_split_sizes,
                                                  const AllToAllOptions& opts) {
  const std::string& where = describe();
  Validator check(OpType::ALLTOALL_BASE, where);
  check.tensor(input, {"input"});
  check.tensor(output, {"output"});
  check.same_dtype(output, {"output"}, input, {"input"});
  check_splits(check, input, "input", input_split_sizes, "input_split_sizes", size_);
  check_splits(check, output, "output", output_split_sizes, "output_split_sizes", size_);
  const std::vector<int64_t> in_row(input.sizes().begin() + 1, input.sizes().end());
  const std::vector<int64_t> out_row(output.sizes().begin() + 1, output.sizes().end());
  if (in_row != out_row) {
    check.fail("input [{}] and output [{}] must agree in every dimension but the first",
               fmt::join(input.sizes(), ", "), fmt::join(output.sizes(), ", "));
  }
  Backend& backend = route(OpType::ALLTOALL_BASE, check.device());
  return tracer_->issue(next_sequence(), trace::describe_op(OpType::ALLTOALL_BASE, input), [&] {
    return backend.alltoall_base(output, input, std::move(output_split_sizes),
                                 std::move(input_split_sizes), opts);
  });
}

std::shared_ptr<Work> ProcessGroup::alltoall(std::vector<Tensor>& outputs,
                                             std::vector<Tensor>& inputs,
                                             const AllToAllOptions& opts) {
  const std::string& where = describe();
  Validator check(OpType::ALLTOALL, where);
  check.count(inputs.size(), static_cast<size_t>(size_), "input tensors (one per rank)");
  check.count(outputs.size(), static_cast<size_t>(size_), "output tensors (one per rank)");
  for (size_t r = 0; r < inputs.size(); ++r) {
    check.tensor(inputs[r], {"inputs", static_cast<int64_t>(r)});
    check.same_dtype(inputs[r], {"inputs", static_cast<int64_t>(r)}, inputs[0], {"inputs", 0});
    check.tensor(outputs[r], {"outputs", static_cast<int64_t>(r)});
    check.same_dtype(outputs[r], {"outputs", static_cast<int64_t>(r)}, inputs[0], {"inputs", 0});
  }
  if (outputs[static_cast<size_t>(rank_)].numel() != inputs[static_cast<size_t>(rank_)].numel()) {
    check.fail(
        "outputs[{0}] has {1} elements but inputs[{0}], which this rank sends to "
        "itself, has {2}",
        rank_, outputs[static_cast<size_t>(rank_)].numel(),
        inputs[static_cast<size_t>(rank_)].numel());
  }
  Backend& backend = route(OpType::ALLTOALL, check.device());
  return tracer_->issue(next_sequence(), trace::describe_op(OpType::ALLTOALL, inputs),
                        [&] { return backend.alltoall(outputs, inputs, opts); });
}

// ---------------------------------------------------------- point to point

namespace {

void check_p2p(Validator& check, const std::vector<Tensor>& tensors, int tag) {
  check.count(tensors.size(), 1, "tensors (point-to-point takes exactly one)");
  check.tensor(tensors[0], {"tensors", 0});
  if (tag < 0) check.fail("tag {} is negative; tags are >= 0", tag);
}

}  // namespace

std::shared_ptr<Work> ProcessGroup::send(std::vector<Tensor>& tensors, int dst_rank, int tag) {
  const std::string& where = describe();
  Validator check(OpType::SEND, where);
  check_p2p(check, tensors, tag);
  check.rank_in_range(dst_rank, size_, "dst_rank");
  if (dst_rank == rank_)
    check.fail("dst_rank {} is this rank; send to self is not supported", dst_rank);
  Backend& backend = route(OpType::SEND, check.device());
  auto traced = trace::describe_op(OpType::SEND, tensors);
  traced.peer = dst_rank;
  traced.tag = tag;
  return tracer_->issue(tracer_->next_p2p(), traced,
                        [&] { return backend.send(tensors, dst_rank, tag); });
}

std::shared_ptr<Work> ProcessGroup::recv(std::vector<Tensor>& tensors, int src_rank, int tag) {
  const std::string& where = describe();
  Validator check(OpType::RECV, where);
  check_p2p(check, tensors, tag);
  check.rank_in_range(src_rank, size_, "src_rank");
  if (src_rank == rank_) {
    check.fail("src_rank {} is this rank; receive from self is not supported", src_rank);
  }
  Backend& backend = route(OpType::RECV, check.device());
  auto traced = trace::describe_op(OpType::RECV, tensors);
  traced.peer = src_rank;
  traced.tag = tag;
  return tracer_->issue(tracer_->next_p2p(), traced,
                        [&] { return backend.recv(tensors, src_rank, tag); });
}

std::shared_ptr<Work> ProcessGroup::recv_anysource(std::vector<Tensor>& tensors, int tag) {
  const std::string& where = describe();
  Validator check(OpType::RECV_ANYSOURCE, where);
  check_p2p(check, tensors, tag);
  Backend& backend = route(OpType::RECV_ANYSOURCE, check.device());
  auto traced = trace::describe_op(OpType::RECV_ANYSOURCE, tensors);
  traced.tag = tag;
  return tracer_->issue(tracer_->next_p2p(), traced,
                        [&] { return backend.recv_anysource(tensors, tag); });
}

// ------------------------------------------------------------------ barrier

std::shared_ptr<Work> ProcessGroup::barrier(const BarrierOptions& opts) {
  Backend& backend = route_tensorless(OpType::BARRIER);
  return tracer_->issue(next_sequence(), trace::describe_op(OpType::BARRIER),
                        [&] { return backend.barrier(opts); });
}

void ProcessGroup::monitored_barrier(const BarrierOptions& opts, bool wait_all_ranks) {
  Backend& backend = route_tensorless(OpType::MONITORED_BARRIER);
  tracer_->run_blocking(next_sequence(), trace::describe_op(OpType::MONITORED_BARRIER),
                        [&] { backend.monitored_barrier(opts, wait_all_ranks); });
}

// ---------------------------------------------------------------- subgroups

std::shared_ptr<ProcessGroup> ProcessGroup::new_group(const std::vector<int>& ranks) {
  const std::string& where = describe();
  Validator check(OpType::UNKNOWN, where);
  if (ranks.empty()) check.fail("new_group: ranks must not be empty");
  std::set<int> seen;
  for (int r : ranks) {
    check.rank_in_range(r, size_, "new_group: rank");
    if (!seen.insert(r).second) check.fail("new_group: rank {} is listed twice", r);
  }
  if (options_.backend.empty()) {
    check.fail(
        "new_group needs a group created with a backend name; this one has its "
        "backends attached by set_backend()");
  }
  // Every rank of this group calls new_group in the same order, so the counter
  // gives every member the same name for the new group without talking.
  const uint64_t id = ++subgroups_created_;
  auto it = std::find(ranks.begin(), ranks.end(), rank_);
  const int new_rank = it == ranks.end() ? -1 : static_cast<int>(it - ranks.begin());
  Options options = options_;
  options.group_name = fmt::format("{}/{}", options_.group_name, id);
  auto store =
      store_ ? std::make_shared<PrefixStore>(fmt::format("subgroup/{}", id), store_) : nullptr;
  // Backends that carve subgroups out of their own communicator take part
  // on every rank of this group, members or not.
  BackendSlots prebuilt;
  BackendSlots parents;
  {
    std::lock_guard<std::mutex> lock(backends_mutex_);
    parents = backends_;
  }
  for (size_t slot = 0; slot < parents.size(); ++slot) {
    const auto& parent = parents[slot];
    if (!parent || !parent->creates_subgroups()) continue;
    std::shared_ptr<Backend> child;
    for (size_t earlier = 0; earlier < slot; ++earlier) {
      if (parents[earlier] == parent) child = prebuilt[earlier];
    }
    if (!child) {
      BackendConfig config;
      config.store = store;
      config.rank = new_rank;
      config.size = static_cast<int>(ranks.size());
      config.timeout = options_.timeout;
      config.group_name = options.group_name;
      child = parent->create_subgroup(ranks, config);
    }
    prebuilt[slot] = std::move(child);
  }
  if (new_rank < 0) return nullptr;
  return std::shared_ptr<ProcessGroup>(new ProcessGroup(std::move(store), new_rank,
                                                        static_cast<int>(ranks.size()),
                                                        std::move(options), std::move(prebuilt)));
}

}  // namespace tutti
