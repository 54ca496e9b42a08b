#include "backends/mpi/backend.hpp"
#include "backends/mpi/runtime.hpp"

namespace tutti::mpi_backend {

BackendInfo::Bootstrap bootstrap(std::chrono::milliseconds timeout);

BackendInfo backend_info() {
  BackendInfo info;
  info.name = "mpi";
  info.devices = {DeviceType::CPU};
  info.factory = [](const BackendConfig& config) -> std::shared_ptr<Backend> {
    return MpiBackend::create_world(config);
  };
  // Under mpirun, "auto" means MPI; elsewhere it is not available.
  info.auto_priority = 20;
  info.available = launched_by_mpi;
  info.optional_ops = {OpType::ALLREDUCE_COALESCED,   OpType::ALLGATHER_INTO_TENSOR,
                       OpType::ALLGATHER_COALESCED,   OpType::ALLGATHER_INTO_TENSOR_COALESCED,
                       OpType::REDUCE_SCATTER_TENSOR, OpType::REDUCE_SCATTER_TENSOR_COALESCED,
                       OpType::MONITORED_BARRIER};
  info.needs_store = false;
  info.bootstrap = bootstrap;
  return info;
}

}  // namespace tutti::mpi_backend
