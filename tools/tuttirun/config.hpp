// What to launch: the job's shape, the rendezvous address and the command,
// and the environment each rank gets from it.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tuttirun {

struct LaunchConfig {
  int nproc_per_node = 1;
  int nnodes = 1;
  int node_rank = 0;
  std::string master_addr = "127.0.0.1";
  // Unset: pick a free port (single node only; see validate()).
  std::optional<uint16_t> master_port;
  // How long ranks get to exit after SIGTERM before they are sent SIGKILL.
  std::chrono::milliseconds kill_timeout{3000};
  // PROGRAM followed by its arguments.
  std::vector<std::string> command;

  int world_size() const { return nnodes * nproc_per_node; }
  int global_rank(int local_rank) const { return node_rank * nproc_per_node + local_rank; }
};

// Returns an error message for the user if the configuration cannot be
// launched, nullopt if it can.
std::optional<std::string> validate(const LaunchConfig& config);

// A TCP port that was free on 127.0.0.1 a moment ago (bind to port 0, read
// the port back, close). Another process may take it in between, as with
// torchrun's choice. Throws std::system_error.
uint16_t find_free_port();

// The environment of one local rank: tuttirun's own environment with RANK,
// WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK, NODE_RANK, MASTER_ADDR
// and MASTER_PORT replaced, as "NAME=value" strings.
// REQUIRES: config.master_port is set.
std::vector<std::string> rank_environment(const LaunchConfig& config, int local_rank,
                                          char** base_environment);

}  // namespace tuttirun
