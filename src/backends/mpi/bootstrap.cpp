// init_process_group(backend="mpi") under mpirun: rank and size from MPI,
// and a TCPStore for the group (hosted by rank 0 on a free port, its
// address sent to every rank over MPI), so nothing needs to be set in the
// environment.
#include <fmt/format.h>
#include <unistd.h>

#include <array>
#include <cstring>

#include "backends/mpi/backend.hpp"
#include "backends/mpi/runtime.hpp"
#include "tutti/errors.hpp"
#include "tutti/tcp_store.hpp"

namespace tutti::mpi_backend {

BackendInfo::Bootstrap bootstrap(std::chrono::milliseconds timeout) {
  ensure_initialized();
  BackendInfo::Bootstrap boot;
  {
    CallLock call;
    check(MPI_Comm_rank(MPI_COMM_WORLD, &boot.rank), "MPI_Comm_rank");
    check(MPI_Comm_size(MPI_COMM_WORLD, &boot.size), "MPI_Comm_size");
  }
  // Rank 0's host name and store port, as one message.
  struct Address {
    std::array<char, 256> host{};
    uint16_t port = 0;
  } address;
  std::array<char, 256> own_host{};
  if (::gethostname(own_host.data(), own_host.size() - 1) != 0) {
    std::strncpy(own_host.data(), "localhost", own_host.size() - 1);
  }
  std::shared_ptr<TCPStore> server;
  if (boot.rank == 0) {
    TCPStoreOptions opts;
    opts.port = 0;
    opts.is_server = true;
    opts.num_workers = boot.size;
    opts.wait_workers = false;
    opts.timeout = timeout;
    server = std::make_shared<TCPStore>("127.0.0.1", opts);
    address.host = own_host;
    address.port = server->port();
  }
  {
    CallLock call;
    check(MPI_Bcast(&address, sizeof address, MPI_BYTE, 0, MPI_COMM_WORLD),
          "init_process_group(mpi): MPI_Bcast of the store address");
  }
  if (server) {
    boot.store = server;
    return boot;
  }
  // Ranks on rank 0's host use loopback; the others its host name.
  const bool same_host = std::strncmp(address.host.data(), own_host.data(), own_host.size()) == 0;
  TCPStoreOptions opts;
  opts.port = address.port;
  opts.timeout = timeout;
  boot.store = std::make_shared<TCPStore>(same_host ? "127.0.0.1" : address.host.data(), opts);
  return boot;
}

}  // namespace tutti::mpi_backend
