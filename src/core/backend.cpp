#include "tutti/backend.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <mutex>

#include "backends/builtin.hpp"

namespace tutti {

bool Backend::supports(OpType op) const {
  switch (op) {
    case OpType::ALLREDUCE_SPARSE:
    case OpType::ALLREDUCE_COALESCED:
    case OpType::ALLGATHER_INTO_TENSOR:
    case OpType::ALLGATHER_COALESCED:
    case OpType::ALLGATHER_INTO_TENSOR_COALESCED:
    case OpType::REDUCE_SCATTER_TENSOR:
    case OpType::REDUCE_SCATTER_TENSOR_COALESCED:
    case OpType::MONITORED_BARRIER:
    case OpType::UNKNOWN:
      return false;
    default:
      return true;
  }
}

void Backend::throw_unsupported(OpType op) const {
  throw InvalidArgument(fmt::format("the {} backend does not support {}", name(), to_string(op)));
}

std::shared_ptr<Work> Backend::allreduce_sparse(std::vector<SparseTensor>&,
                                                const AllreduceOptions&) {
  throw_unsupported(OpType::ALLREDUCE_SPARSE);
}

std::shared_ptr<Work> Backend::allreduce_coalesced(std::vector<Tensor>&,
                                                   const AllreduceCoalescedOptions&) {
  throw_unsupported(OpType::ALLREDUCE_COALESCED);
}

std::shared_ptr<Work> Backend::allgather_into_tensor(Tensor&, Tensor&, const AllgatherOptions&) {
  throw_unsupported(OpType::ALLGATHER_INTO_TENSOR);
}

std::shared_ptr<Work> Backend::allgather_coalesced(std::vector<std::vector<Tensor>>&,
                                                   std::vector<Tensor>&, const AllgatherOptions&) {
  throw_unsupported(OpType::ALLGATHER_COALESCED);
}

std::shared_ptr<Work> Backend::allgather_into_tensor_coalesced(std::vector<Tensor>&,
                                                               std::vector<Tensor>&,
                                                               const AllgatherOptions&) {
  throw_unsupported(OpType::ALLGATHER_INTO_TENSOR_COALESCED);
}

std::shared_ptr<Work> Backend::reduce_scatter_tensor(Tensor&, Tensor&,
                                                     const ReduceScatterOptions&) {
  throw_unsupported(OpType::REDUCE_SCATTER_TENSOR);
}

std::shared_ptr<Work> Backend::reduce_scatter_tensor_coalesced(std::vector<Tensor>&,
                                                               std::vector<Tensor>&,
                                                               const ReduceScatterOptions&) {
  throw_unsupported(OpType::REDUCE_SCATTER_TENSOR_COALESCED);
}

void Backend::monitored_barrier(const BarrierOptions&, bool) {
  throw_unsupported(OpType::MONITORED_BARRIER);
}

std::shared_ptr<Backend> Backend::create_subgroup(const std::vector<int>&, const BackendConfig&) {
  return nullptr;
}

// ---------------------------------------------------------------- registry

namespace {

class Registry {
 public:
  static Registry& instance() {
    static Registry registry;
    return registry;
  }

  void add(BackendInfo info) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (info.name.empty()) throw InvalidArgument("register_backend: empty backend name");
    if (!info.factory) {
      throw InvalidArgument(
          fmt::format("register_backend: backend '{}' has no factory", info.name));
    }
    if (info.devices.empty()) {
      throw InvalidArgument(
          fmt::format("register_backend: backend '{}' serves no device type", info.name));
    }
    auto name = info.name;
    if (!entries_.emplace(name, std::move(info)).second) {
      throw InvalidArgument(
          fmt::format("register_backend: a backend named '{}' is already registered", name));
    }
  }

  const BackendInfo* find(const std::string& name) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = entries_.find(name);
    // std::map never moves its nodes, so the pointer stays valid.
    return it == entries_.end() ? nullptr : &it->second;
  }

  std::vector<std::string> names() {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<std::string> names;
    for (const auto& [name, info] : entries_) names.push_back(name);
    return names;
  }

 private:
  Registry() {
    for (auto& info : builtin_backends()) {
      auto name = info.name;
      entries_.emplace(std::move(name), std::move(info));
    }
  }

  std::mutex mutex_;
  std::map<std::string, BackendInfo> entries_;  // GUARDED_BY(mutex_)
};

}  // namespace

void register_backend(BackendInfo info) { Registry::instance().add(std::move(info)); }

const BackendInfo* find_backend(const std::string& name) { return Registry::instance().find(name); }

std::vector<std::string> registered_backends() { return Registry::instance().names(); }

}  // namespace tutti
