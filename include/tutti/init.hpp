// Start-up: create the default process group of a job, as
// torch.distributed.init_process_group does.
//
//   auto pg = tutti::init_process_group();          // torchrun / tuttirun variables
//   auto pg = tutti::init_process_group({.backend = "gloo",
//                                        .init_method = "tcp://10.0.0.1:29500",
//                                        .rank = r, .world_size = n});
//
// Init methods:
//   env://              MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE from the
//                       environment (LOCAL_RANK, LOCAL_WORLD_SIZE optional)
//   tcp://host:port     rank 0 hosts a TCPStore there; rank and world_size
//                       from the options or RANK / WORLD_SIZE
//   file:///path        a FileStore at path, shared by all ranks
// Rank 0 hosts the TCPStore (env:// and tcp://). Under mpirun with backend
// "mpi", rank and size come from MPI and no variable is needed.
//
// Errors: a missing or malformed variable or URL raises InvalidArgument that
// names it and shows an example; an unreachable rank 0 raises
// DistNetworkError; ranks that do not all arrive within the timeout raise
// TimeoutError.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "tutti/process_group.hpp"

namespace tutti {

struct InitOptions {
  std::string backend = "auto";        // "gloo", "mpi", ...; "auto" picks the best available
  std::string init_method = "env://";  // "env://", "tcp://host:port", "file:///path"
  int rank = -1, world_size = -1;      // -1: from the environment
  std::chrono::milliseconds timeout = std::chrono::minutes(30);
  std::string group_name = "default";
};

std::shared_ptr<ProcessGroup> init_process_group(const InitOptions& options = {});

// The backend "auto" resolves to in this process: the available registered
// backend with the highest priority.
std::string resolve_auto_backend();

}  // namespace tutti
