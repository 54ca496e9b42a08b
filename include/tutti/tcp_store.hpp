// TCPStore: a store served over TCP, for ranks on many machines.
//
// One process hosts the server (rank 0 with is_server = true, or the
// standalone `tutti-store --port P`); every rank, the host included, talks to
// it as a client. The server runs one epoll loop, so thousands of clients can
// wait on missing keys without blocking one another.
//
// Errors: a server that cannot be reached within the timeout, or that goes
// away, raises DistNetworkError naming host and port; a blocking call past
// its deadline raises TimeoutError naming the keys and the server. A server
// with a token (TUTTI_STORE_TOKEN) refuses clients without the same token.
//
// set() does not wait for the server's answer (as c10d's): it returns once
// the request is sent, and every later call of this TCPStore object, from
// any thread, sees its effect. A set that the server could not apply (the
// server went away) surfaces as an error of the next call.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "tutti/store.hpp"

namespace tutti {

struct TCPStoreOptions {
  uint16_t port = 29500;  // 0 with is_server: pick a free port (see port())
  bool is_server = false;
  // With is_server and wait_workers, the constructor returns once this many
  // clients (the server's own included) have connected, or throws
  // TimeoutError after `timeout`.
  std::optional<int> num_workers;
  bool wait_workers = true;
  std::chrono::milliseconds timeout = kDefaultStoreTimeout;
  // Shared secret; unset: the TUTTI_STORE_TOKEN environment variable, if any.
  std::optional<std::string> token;
  // Largest value accepted (server) and expected (client).
  size_t max_value_bytes = size_t{64} << 20;
};

class TCPStore : public Store {
 public:
  TCPStore(std::string host, const TCPStoreOptions& opts);
  ~TCPStore() override;

  // The port the server listens on (the bound one when opts.port was 0).
  uint16_t port() const { return port_; }
  const std::string& host() const { return host_; }
  bool is_server() const;

  using Store::set;
  void set(const std::string& key, const std::vector<uint8_t>& value) override;
  std::vector<uint8_t> get(const std::string& key) override;
  int64_t add(const std::string& key, int64_t delta) override;
  std::vector<uint8_t> compare_set(const std::string& key, const std::vector<uint8_t>& expected,
                                   const std::vector<uint8_t>& desired) override;
  bool delete_key(const std::string& key) override;
  bool check(const std::vector<std::string>& keys) override;
  using Store::wait;
  void wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout) override;
  int64_t num_keys() override;
  void append(const std::string& key, const std::vector<uint8_t>& value) override;
  // Atomic on the server: one request each.
  std::vector<std::vector<uint8_t>> multi_get(const std::vector<std::string>& keys) override;
  void multi_set(const std::vector<std::string>& keys,
                 const std::vector<std::vector<uint8_t>>& values) override;

  // Round trip with no effect; throws like any call if the server is gone.
  void ping();

 private:
  class Client;

  // InvalidArgument before sending a value the server would refuse.
  void check_value_size(const char* op, const std::string& key,
                        const std::vector<uint8_t>& value) const;

  std::string host_;
  uint16_t port_ = 0;
  size_t max_value_bytes_;
  std::string token_;
  // A connection for one call: an idle one, or a new one. Each thread's
  // call has its own connection, so a blocking wait() in one thread never
  // holds up another thread's calls. The exception is a connection with
  // unsettled sets (sent without an answer, so perhaps not yet applied):
  // until the server answers anything on it, calls wait for that
  // connection and use it, so they cannot overtake the sets. The server
  // answers a parked wait on it at once with a PARKED notice, so the wait
  // is at most one round trip.
  std::unique_ptr<Client> acquire();
  void release(std::unique_ptr<Client> client);
  template <class F>
  auto with_client(F&& f);
  // Whether `client` may send a set without an answer: true if no other
  // connection has unsettled sets; `client` then becomes the one that has.
  bool claim_unsettled(Client* client);
  // The server answered on `client`: its sets are applied.
  void settled(Client* client);

  std::unique_ptr<class TCPStoreServerHandle> server_;
  std::mutex pool_mutex_;
  std::condition_variable pool_cv_;
  std::vector<std::unique_ptr<Client>> idle_;  // GUARDED_BY(pool_mutex_)
  Client* unsettled_ = nullptr;                // GUARDED_BY(pool_mutex_)
  // The server has answered a connection of this store: a later refused
  // connection means it has exited (no retrying until the deadline).
  std::atomic<bool> reached_{false};
};

}  // namespace tutti
