#include "backends/gloo/backend.hpp"

namespace tutti::gloo_backend {

BackendInfo backend_info() {
  BackendInfo info;
  info.name = "gloo";
  info.devices = {DeviceType::CPU};
  info.factory = [](const BackendConfig& config) -> std::shared_ptr<Backend> {
    Options options = Options::from_env(config.timeout);
    options.roll_call = config.roll_call;
    return std::make_shared<GlooBackend>(config.store, config.rank, config.size, config.group_name,
                                         std::move(options));
  };
  info.auto_priority = 10;
  info.optional_ops = {OpType::ALLREDUCE_SPARSE,
                       OpType::ALLREDUCE_COALESCED,
                       OpType::ALLGATHER_INTO_TENSOR,
                       OpType::ALLGATHER_COALESCED,
                       OpType::ALLGATHER_INTO_TENSOR_COALESCED,
                       OpType::REDUCE_SCATTER_TENSOR,
                       OpType::REDUCE_SCATTER_TENSOR_COALESCED,
                       OpType::MONITORED_BARRIER};
  return info;
}

}  // namespace tutti::gloo_backend
