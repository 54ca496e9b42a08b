#include "tutti/tcp_store.hpp"

#include <fmt/format.h>

#include <cstdlib>

#include "core/logging.hpp"
#include "store/store_util.hpp"
#include "store/tcp/keys.hpp"
#include "store/tcp/protocol.hpp"
#include "store/tcp/server.hpp"
#include "store/tcp/socket.hpp"
#include "tutti/errors.hpp"

namespace tutti {

using tcpstore::Op;
using tcpstore::Request;
using tcpstore::Response;
using Clock = std::chrono::steady_clock;

class TCPStoreServerHandle {
 public:
  explicit TCPStoreServerHandle(tcpstore::ServerOptions options) : server(std::move(options)) {}
  tcpstore::Server server;
};

namespace {

// Waiting requests are timed by the server; the client allows this much more
// before it gives up on a server that does not answer at all.
constexpr auto kServerGrace = std::chrono::seconds(5);
// Reply polling (see Client::receive).
constexpr auto kSpin = std::chrono::microseconds(50);
constexpr auto kNoSpin = std::chrono::microseconds(0);
constexpr auto kFastReply = std::chrono::microseconds(100);
// How often a blocked receive wakes to check its deadline.
constexpr auto kDeadlineCheck = std::chrono::milliseconds(100);

Clock::time_point deadline_after(std::chrono::milliseconds timeout) {
  if (timeout <= std::chrono::milliseconds::zero()) return Clock::time_point::max();
  return Clock::now() + timeout;
}

std::string resolve_token(const TCPStoreOptions& opts) {
  if (opts.token) return *opts.token;
  const char* env = std::getenv("TUTTI_STORE_TOKEN");
  return env != nullptr ? env : "";
}

Request make(Op op, std::vector<std::string> keys = {},
             std::vector<std::vector<uint8_t>> values = {}, int64_t number = 0) {
  Request q;
  q.op = op;
  q.keys = std::move(keys);
  q.values = std::move(values);
  q.number = number;
  return q;
}

}  // namespace

// One connection to the server. Not thread-safe: TCPStore serialises calls.
class TCPStore::Client {
 public:
  Client(std::string host, uint16_t port, std::string token, tcpstore::Limits limits)
      : host_(std::move(host)),
        port_(port),
        token_(std::move(token)),
        limits_(limits),
        server_name_(fmt::format("the store at {}", net::endpoint(host_, port_))) {}

  const std::string& server_name() const { return server_name_; }

  void connect(Clock::time_point deadline) {
    fd_ = net::connect_with_retry(host_, port_, deadline);
    // Blocking receives with a short timeout: one system call per reply,
    // and the deadline is still checked every kDeadlineCheck.
    net::set_blocking(fd_.get());
    net::set_receive_timeout(fd_.get(), kDeadlineCheck);
    in_.clear();
    auto hello = tcpstore::encode_hello(token_);
    try {
      net::send_all(fd_.get(), hello.data(), hello.size(), deadline, server_name_);
      uint16_t version = 0;
      tcpstore::HelloStatus status{};
      std::string message;
      while (true) {
        auto r = tcpstore::parse_hello_reply(in_.data(), in_.size(), &version, &status, &message);
        if (r.status == tcpstore::ParseStatus::kOk) {
          in_.erase(in_.begin(), in_.begin() + static_cast<std::ptrdiff_t>(r.consumed));
          break;
        }
        if (r.status == tcpstore::ParseStatus::kMalformed) {
          throw DistNetworkError(fmt::format("{}: {}", server_name_, r.reason));
        }
        receive(deadline);
      }
      if (status != tcpstore::HelloStatus::OK) {
        throw DistStoreError(fmt::format("{} refused the connection: {}", server_name_, message));
      }
    } catch (...) {
      fd_.reset();
      throw;
    }
  }

  // Sends one request and returns its response. After any failure the
  // connection is dropped (its state is unknown) and the next call reconnects.
  Response call(const Request& q, Clock::time_point connect_deadline,
                Clock::time_point reply_deadline) {
    try {
      if (!fd_.valid()) connect(connect_deadline);
      out_.clear();
      tcpstore::encode_request(q, &out_);
      net::send_all(fd_.get(), out_.data(), out_.size(), reply_deadline, server_name_);
      Response a;
      while (true) {
        auto r = tcpstore::parse_response(q.op, in_.data(), in_.size(), limits_, &a);
        if (r.status == tcpstore::ParseStatus::kOk) {
          in_.erase(in_.begin(), in_.begin() + static_cast<std::ptrdiff_t>(r.consumed));
          return a;
        }
        if (r.status == tcpstore::ParseStatus::kMalformed ||
            r.status == tcpstore::ParseStatus::kRejected) {
          throw DistNetworkError(
              fmt::format("{} sent a malformed reply: {}", server_name_, r.reason));
        }
        receive(reply_deadline);
      }
    } catch (...) {
      fd_.reset();
      in_.clear();
      throw;
    }
  }

 private:
  void receive(Clock::time_point deadline) {
    // A reusable scratch buffer: growing in_ by a chunk would zero-fill it on
    // every call, which costs more than the bytes that arrive.
    constexpr size_t kChunk = 64 << 10;
    scratch_.resize(kChunk);
    // A reply that comes within tens of microseconds is cheaper to poll for
    // than to sleep for: waking a sleeping thread costs about as much again
    // on a virtual machine with idle cores. Poll only while replies have
    // been coming that fast, so busy servers (many clients, replies queued)
    // do not have their clients burn the CPU they need.
    const auto start = Clock::now();
    const size_t n = net::recv_blocking(fd_.get(), scratch_.data(), kChunk, deadline, server_name_,
                                        fast_replies_ ? kSpin : kNoSpin);
    fast_replies_ = Clock::now() - start < kFastReply;
    in_.insert(in_.end(), scratch_.data(), scratch_.data() + n);
  }

  const std::string host_;
  const uint16_t port_;
  const std::string token_;
  const tcpstore::Limits limits_;
  const std::string server_name_;
  net::Fd fd_;
  std::vector<uint8_t> in_;
  std::vector<uint8_t> out_;
  std::vector<uint8_t> scratch_;
  bool fast_replies_ = true;
};

TCPStore::TCPStore(std::string host, const TCPStoreOptions& opts)
    : Store(opts.timeout),
      host_(std::move(host)),
      port_(opts.port),
      max_value_bytes_(opts.max_value_bytes) {
  tcpstore::Limits limits;
  limits.max_value_bytes = opts.max_value_bytes;
  const std::string token = resolve_token(opts);
  if (opts.num_workers && *opts.num_workers < 1) {
    throw InvalidArgument(
        fmt::format("TCPStore: num_workers must be at least 1, got {}", *opts.num_workers));
  }
  if (opts.is_server) {
    tcpstore::ServerOptions server_options;
    server_options.port = opts.port;
    server_options.token = token;
    server_options.limits = limits;
    server_ = std::make_unique<TCPStoreServerHandle>(std::move(server_options));
    port_ = server_->server.port();
    TUTTI_LOG(LogLevel::INFO, -1, "store", "TCPStore server listening on port {}", port_);
  } else if (port_ == 0) {
    throw InvalidArgument("TCPStore: a client needs the server's port; port 0 is for servers");
  }
  token_ = token;
  // Connect now, so a constructor that returns means the server is there.
  auto first = std::make_unique<Client>(host_, port_, token_, limits);
  first->connect(deadline_after(opts.timeout));
  release(std::move(first));
  const int64_t joined = add(tcpstore::kWorkersKey, 1);
  if (opts.num_workers && joined == *opts.num_workers) {
    set(tcpstore::kAllJoinedKey, std::string("1"));
  }
  if (opts.is_server && opts.wait_workers && opts.num_workers) {
    try {
      wait({tcpstore::kAllJoinedKey}, opts.timeout);
    } catch (const TimeoutError&) {
      const int64_t now_joined = add(tcpstore::kWorkersKey, 0);
      throw TimeoutError(fmt::format(
          "TCPStore server on port {}: {} of {} workers connected within {} ms; check that "
          "every rank was started and points at this host and port",
          port_, now_joined, *opts.num_workers, opts.timeout.count()));
    }
  }
}

TCPStore::~TCPStore() = default;

std::unique_ptr<TCPStore::Client> TCPStore::acquire() {
  {
    std::lock_guard<std::mutex> lock(pool_mutex_);
    if (!idle_.empty()) {
      auto client = std::move(idle_.back());
      idle_.pop_back();
      return client;
    }
  }
  tcpstore::Limits limits;
  limits.max_value_bytes = max_value_bytes_;
  return std::make_unique<Client>(host_, port_, token_, limits);
}

void TCPStore::release(std::unique_ptr<Client> client) {
  std::lock_guard<std::mutex> lock(pool_mutex_);
  idle_.push_back(std::move(client));
}

template <class F>
auto TCPStore::with_client(F&& f) {
  auto client = acquire();
  // A failed call leaves its client disconnected; it reconnects on next use.
  struct Return {
    TCPStore* store;
    std::unique_ptr<Client>& client;
    ~Return() { store->release(std::move(client)); }
  } give_back{this, client};
  return f(*client);
}

bool TCPStore::is_server() const { return server_ != nullptr; }

namespace {

// Runs one request, translating the server's refusals into exceptions.
template <class Client>
Response run(Client& client, const Request& q, std::chrono::milliseconds timeout, bool waits) {
  const auto connect_deadline = deadline_after(timeout);
  const auto reply_deadline = waits && timeout > std::chrono::milliseconds::zero()
                                  ? connect_deadline + kServerGrace
                                  : connect_deadline;
  Response a;
  try {
    a = client.call(q, connect_deadline, reply_deadline);
  } catch (const TimeoutError& e) {
    throw TimeoutError(fmt::format("TCPStore {}{}: {}", tcpstore::to_string(q.op),
                                   q.keys.empty() ? "" : " of " + store_util::quote_keys(q.keys),
                                   e.what()));
  } catch (const DistNetworkError& e) {
    throw DistNetworkError(fmt::format("TCPStore {}: {}", tcpstore::to_string(q.op), e.what()));
  }
  switch (a.status) {
    case tcpstore::Status::OK:
      return a;
    case tcpstore::Status::TIMEOUT:
      throw TimeoutError(fmt::format("TCPStore {}: timed out after {} ms waiting for keys {} at {}",
                                     tcpstore::to_string(q.op), timeout.count(),
                                     store_util::quote_keys(a.keys), client.server_name()));
    case tcpstore::Status::INVALID:
      throw InvalidArgument(a.error);
    case tcpstore::Status::ERROR:
      break;
  }
  throw DistStoreError(fmt::format("TCPStore {} failed at {}: {}", tcpstore::to_string(q.op),
                                   client.server_name(), a.error));
}

}  // namespace

void TCPStore::check_value_size(const char* op, const std::string& key,
                                const std::vector<uint8_t>& value) const {
  if (value.size() > max_value_bytes_) {
    throw InvalidArgument(
        fmt::format("TCPStore {} of {}: the value has {} bytes, more than the limit of {} "
                    "(TCPStoreOptions::max_value_bytes)",
                    op, store_util::quote_key(key), value.size(), max_value_bytes_));
  }
}

void TCPStore::set(const std::string& key, const std::vector<uint8_t>& value) {
  check_value_size("set", key, value);
  const auto t = timeout();
  with_client([&](Client& c) { return run(c, make(Op::SET, {key}, {value}), t, false); });
}

std::vector<uint8_t> TCPStore::get(const std::string& key) {
  const auto t = timeout();
  return with_client([&](Client& c) {
    return std::move(run(c, make(Op::GET, {key}, {}, t.count()), t, true).values.at(0));
  });
}

int64_t TCPStore::add(const std::string& key, int64_t delta) {
  const auto t = timeout();
  return with_client(
      [&](Client& c) { return run(c, make(Op::ADD, {key}, {}, delta), t, false).number; });
}

std::vector<uint8_t> TCPStore::compare_set(const std::string& key,
                                           const std::vector<uint8_t>& expected,
                                           const std::vector<uint8_t>& desired) {
  check_value_size("compare_set", key, expected);
  check_value_size("compare_set", key, desired);
  const auto t = timeout();
  return with_client([&](Client& c) {
    return std::move(
        run(c, make(Op::COMPARE_SET, {key}, {expected, desired}), t, false).values.at(0));
  });
}

bool TCPStore::delete_key(const std::string& key) {
  const auto t = timeout();
  return with_client(
      [&](Client& c) { return run(c, make(Op::DELETE_KEY, {key}), t, false).number != 0; });
}

bool TCPStore::check(const std::vector<std::string>& keys) {
  const auto t = timeout();
  return with_client(
      [&](Client& c) { return run(c, make(Op::CHECK, keys), t, false).number != 0; });
}

void TCPStore::wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout) {
  with_client(
      [&](Client& c) { return run(c, make(Op::WAIT, keys, {}, timeout.count()), timeout, true); });
}

int64_t TCPStore::num_keys() {
  const auto t = timeout();
  return with_client([&](Client& c) { return run(c, make(Op::NUM_KEYS), t, false).number; });
}

void TCPStore::append(const std::string& key, const std::vector<uint8_t>& value) {
  check_value_size("append", key, value);
  const auto t = timeout();
  with_client([&](Client& c) { return run(c, make(Op::APPEND, {key}, {value}), t, false); });
}

std::vector<std::vector<uint8_t>> TCPStore::multi_get(const std::vector<std::string>& keys) {
  const auto t = timeout();
  return with_client([&](Client& c) {
    return std::move(run(c, make(Op::MULTI_GET, keys, {}, t.count()), t, true).values);
  });
}

void TCPStore::multi_set(const std::vector<std::string>& keys,
                         const std::vector<std::vector<uint8_t>>& values) {
  if (keys.size() != values.size()) {
    throw InvalidArgument(
        fmt::format("multi_set: {} keys but {} values", keys.size(), values.size()));
  }
  for (size_t i = 0; i < keys.size(); ++i) check_value_size("multi_set", keys[i], values[i]);
  const auto t = timeout();
  with_client([&](Client& c) { return run(c, make(Op::MULTI_SET, keys, values), t, false); });
}

void TCPStore::ping() {
  const auto t = timeout();
  with_client([&](Client& c) { return run(c, make(Op::PING), t, false); });
}

}  // namespace tutti
