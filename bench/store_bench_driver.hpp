// The one interface store_bench drives every store through, so tutti's
// TCPStore and PyTorch's c10d::TCPStore run the very same loops.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace store_bench {

// One store handle (a server or a client) in the calling process. Calls
// throw on failure, as the stores underneath do.
class Driver {
 public:
  virtual ~Driver() = default;
  virtual void set(const std::string& key, const std::vector<uint8_t>& value) = 0;
  virtual std::vector<uint8_t> get(const std::string& key) = 0;
  virtual int64_t add(const std::string& key, int64_t delta) = 0;
  virtual void wait(const std::vector<std::string>& keys) = 0;
  // The server's port (the bound one for a server started on port 0).
  virtual uint16_t port() const = 0;
};

// How to start a server and connect clients of one store implementation.
struct StoreKind {
  const char* name;
  // Starts a server on a free port. The caller keeps the handle alive for as
  // long as the server should run; it starts threads, so call it only in a
  // process that will not fork afterwards.
  std::unique_ptr<Driver> (*serve)(std::chrono::milliseconds timeout);
  // Connects a client; returns once the connection is up.
  std::unique_ptr<Driver> (*connect)(const std::string& host, uint16_t port,
                                     std::chrono::milliseconds timeout);
};

// Each defined in its own file and linked into its own binary: store_bench
// (tutti) and store_bench_c10d (libtorch).
StoreKind tutti_store_kind();
StoreKind c10d_store_kind();

}  // namespace store_bench
