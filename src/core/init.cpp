#include "tutti/init.hpp"

#include <fmt/format.h>

#include <cstdlib>
#include <optional>

#include "core/env_parse.hpp"
#include "core/logging.hpp"
#include "tutti/errors.hpp"
#include "tutti/file_store.hpp"
#include "tutti/tcp_store.hpp"

namespace tutti {
namespace {

using env_parse::parse_int32;
using env_parse::parse_port;
using env_parse::parse_tcp_url;

// A variable with a usage example for messages.
struct Variable {
  const char* name;
  const char* example;
};

constexpr Variable kMasterAddr{"MASTER_ADDR", "MASTER_ADDR=10.0.0.1 (the host of rank 0)"};
constexpr Variable kMasterPort{"MASTER_PORT", "MASTER_PORT=29500"};
constexpr Variable kRank{"RANK", "RANK=0 (this process's rank, 0 to WORLD_SIZE-1)"};
constexpr Variable kWorldSize{"WORLD_SIZE", "WORLD_SIZE=4 (the number of processes)"};

const char* lookup(const Variable& v) {
  const char* value = std::getenv(v.name);
  return value != nullptr && *value != '\0' ? value : nullptr;
}

[[noreturn]] void missing(const Variable& v, const std::string& method) {
  throw InvalidArgument(fmt::format(
      "init_process_group({}): the environment variable {} is not set; set it, e.g. {}, or "
      "start the job with tuttirun, which sets it",
      method, v.name, v.example));
}

int env_int(const Variable& v, const std::string& method) {
  const char* text = lookup(v);
  if (text == nullptr) missing(v, method);
  return parse_int32(text, v.name, v.example);
}

// rank and world size: the options' when set, else the environment's.
std::pair<int, int> rank_and_size(const InitOptions& o, const std::string& method) {
  const int rank = o.rank >= 0 ? o.rank : env_int(kRank, method);
  const int size = o.world_size >= 0 ? o.world_size : env_int(kWorldSize, method);
  if (size < 1) {
    throw InvalidArgument(
        fmt::format("init_process_group: world size {} must be at least 1; "
                    "e.g. {}",
                    size, kWorldSize.example));
  }
  if (rank < 0 || rank >= size) {
    throw InvalidArgument(fmt::format(
        "init_process_group: rank {} is out of range for world size {} (ranks are 0 to {})", rank,
        size, size - 1));
  }
  return {rank, size};
}

std::shared_ptr<Store> tcp_store(const std::string& host, uint16_t port, int rank, int size,
                                 std::chrono::milliseconds timeout) {
  TCPStoreOptions opts;
  opts.port = port;
  opts.is_server = rank == 0;
  opts.num_workers = size;
  opts.wait_workers = true;
  opts.timeout = timeout;
  return std::make_shared<TCPStore>(host, opts);
}

}  // namespace

std::string resolve_auto_backend() {
  const BackendInfo* best = nullptr;
  for (const auto& name : registered_backends()) {
    const BackendInfo* info = find_backend(name);
    if (info == nullptr || (info->available && !info->available())) continue;
    if (best == nullptr || info->auto_priority > best->auto_priority) best = info;
  }
  if (best == nullptr) {
    throw InvalidArgument(
        "init_process_group(backend=\"auto\"): no backend is available in this build");
  }
  return best->name;
}

std::shared_ptr<ProcessGroup> init_process_group(const InitOptions& o) {
  if (o.timeout <= std::chrono::milliseconds::zero()) {
    throw InvalidArgument(
        fmt::format("init_process_group: timeout must be positive, got {} ms", o.timeout.count()));
  }
  const std::string backend = o.backend == "auto" ? resolve_auto_backend() : o.backend;
  if (backend.find(':') == std::string::npos && find_backend(backend) == nullptr) {
    auto names = registered_backends();
    std::string known;
    for (const auto& n : names) known += (known.empty() ? "" : ", ") + n;
    throw InvalidArgument(
        fmt::format("init_process_group: unknown backend '{}'; available: {} (or \"auto\")",
                    backend, known.empty() ? "(none)" : known));
  }
  const std::string& method = o.init_method;
  std::shared_ptr<Store> store;
  int rank = 0, size = 1;
  const BackendInfo* info = find_backend(backend);
  if (method == "env://" && lookup(kMasterAddr) == nullptr && info != nullptr && info->bootstrap) {
    // The backend's launcher (mpirun) already told every rank who it is.
    auto boot = info->bootstrap(o.timeout);
    if ((o.rank >= 0 && o.rank != boot.rank) || (o.world_size >= 0 && o.world_size != boot.size)) {
      throw InvalidArgument(fmt::format(
          "init_process_group: rank {} / world_size {} given, but the {} launcher started this "
          "process as rank {} of {}",
          o.rank, o.world_size, backend, boot.rank, boot.size));
    }
    rank = boot.rank;
    size = boot.size;
    store = std::move(boot.store);
  } else if (method == "env://") {
    const char* addr = lookup(kMasterAddr);
    if (addr == nullptr) missing(kMasterAddr, method);
    const char* port_text = lookup(kMasterPort);
    if (port_text == nullptr) missing(kMasterPort, method);
    const uint16_t port = parse_port(port_text, kMasterPort.name, kMasterPort.example);
    std::tie(rank, size) = rank_and_size(o, method);
    store = tcp_store(addr, port, rank, size, o.timeout);
  } else if (method.rfind("tcp://", 0) == 0) {
    auto [host, port] = parse_tcp_url(method);
    std::tie(rank, size) = rank_and_size(o, method);
    store = tcp_store(host, port, rank, size, o.timeout);
  } else if (method.rfind("file://", 0) == 0) {
    const std::string path = method.substr(7);
    if (path.empty() || path[0] != '/') {
      throw InvalidArgument(fmt::format(
          "init_method '{}' needs an absolute path; e.g. file:///tmp/tutti-job-42", method));
    }
    std::tie(rank, size) = rank_and_size(o, method);
    store = std::make_shared<FileStore>(path, size);
    store->set_timeout(o.timeout);
  } else {
    throw InvalidArgument(fmt::format(
        "init_method '{}' is not one of env://, tcp://host:port, file:///path", method));
  }
  ProcessGroup::Options options;
  options.backend = backend;
  options.timeout = o.timeout;
  options.group_name = o.group_name;
  auto pg = std::make_shared<ProcessGroup>(std::move(store), rank, size, std::move(options));
  TUTTI_LOG(LogLevel::INFO, rank, o.group_name, "initialised: {} ranks, backend {}, {}", size,
            backend, method);
  return pg;
}

}  // namespace tutti
