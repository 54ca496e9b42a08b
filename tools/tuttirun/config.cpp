#include "tuttirun/config.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <string_view>
#include <system_error>
#include <utility>

#include "tuttirun/fd.hpp"

namespace tuttirun {

std::optional<std::string> validate(const LaunchConfig& config) {
  if (config.command.empty())
    return "no PROGRAM given (usage: tuttirun [OPTIONS] PROGRAM [ARGS...])";
  if (config.nproc_per_node < 1) {
    return fmt::format("--nproc-per-node must be at least 1, not {}", config.nproc_per_node);
  }
  if (config.nnodes < 1) return fmt::format("--nnodes must be at least 1, not {}", config.nnodes);
  if (config.node_rank < 0 || config.node_rank >= config.nnodes) {
    return fmt::format("--node-rank {} is out of range for --nnodes {} (valid: 0 to {})",
                       config.node_rank, config.nnodes, config.nnodes - 1);
  }
  if (config.nnodes > 1 && !config.master_port) {
    return fmt::format(
        "--master-port is required with --nnodes {}: every node must use the same port, and a "
        "free port picked on this node is unknown to the others",
        config.nnodes);
  }
  if (config.master_port && *config.master_port == 0) return "--master-port must be 1 to 65535";
  if (config.master_addr.empty()) return "--master-addr must not be empty";
  if (config.kill_timeout.count() < 0) return "--kill-timeout must not be negative";
  return std::nullopt;
}

uint16_t find_free_port() {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) throw std::system_error(errno, std::system_category(), "socket");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    throw std::system_error(errno, std::system_category(), "bind 127.0.0.1:0");
  }
  socklen_t length = sizeof address;
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    throw std::system_error(errno, std::system_category(), "getsockname");
  }
  return ntohs(address.sin_port);
}

std::vector<std::string> rank_environment(const LaunchConfig& config, int local_rank,
                                          char** base_environment) {
  const std::pair<std::string_view, std::string> launch_variables[] = {
      {"RANK", std::to_string(config.global_rank(local_rank))},
      {"WORLD_SIZE", std::to_string(config.world_size())},
      {"LOCAL_RANK", std::to_string(local_rank)},
      {"LOCAL_WORLD_SIZE", std::to_string(config.nproc_per_node)},
      {"GROUP_RANK", std::to_string(config.node_rank)},
      {"NODE_RANK", std::to_string(config.node_rank)},
      {"MASTER_ADDR", config.master_addr},
      {"MASTER_PORT", std::to_string(config.master_port.value())},
  };
  auto is_launch_variable = [&](std::string_view entry) {
    for (const auto& [name, value] : launch_variables) {
      if (entry.size() > name.size() && entry.starts_with(name) && entry[name.size()] == '=') {
        return true;
      }
    }
    return false;
  };

  std::vector<std::string> environment;
  for (char** entry = base_environment; entry != nullptr && *entry != nullptr; ++entry) {
    if (!is_launch_variable(*entry)) environment.emplace_back(*entry);
  }
  for (const auto& [name, value] : launch_variables) {
    environment.push_back(fmt::format("{}={}", name, value));
  }
  return environment;
}

}  // namespace tuttirun
