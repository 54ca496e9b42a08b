// The TCPStore server: one thread running an epoll loop over every client
// connection. Waiting requests (get, wait, multi_get on missing keys) are
// parked, never blocking the loop, and answered when their keys appear or
// their deadline passes. A malformed or oversized frame closes only the
// connection that sent it, with a logged reason.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "store/tcp/protocol.hpp"
#include "store/tcp/socket.hpp"

namespace tutti::tcpstore {

struct ServerOptions {
  uint16_t port = 0;  // 0 picks a free port
  std::string token;  // empty: no token required
  Limits limits;
};

class Server {
 public:
  // Binds and starts serving on a background thread. Throws
  // DistNetworkError if the port cannot be bound.
  explicit Server(ServerOptions options);
  // Stops the loop and closes every connection.
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  uint16_t port() const { return port_; }

  // Counters, for tests and the standalone binary's log.
  struct Stats {
    uint64_t connections_accepted = 0;
    uint64_t connections_rejected = 0;  // bad hello, version or token; malformed frames
    uint64_t requests = 0;
  };
  Stats stats() const;

 private:
  class Loop;
  std::unique_ptr<Loop> loop_;
  uint16_t port_ = 0;
  std::thread thread_;
};

}  // namespace tutti::tcpstore
