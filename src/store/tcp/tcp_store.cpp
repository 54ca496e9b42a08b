#include "tutti/tcp_store.hpp"

#include <fmt/format.h>

#include <algorithm>
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

// Waiting requests are timed by the server; the client allows a quarter of
// the timeout more (at least 250 ms, at most 5 s) before it gives up on a
// server that does not answer at all (stopped, or its host unreachable).
std::chrono::milliseconds server_grace(std::chrono::milliseconds timeout) {
  return std::clamp(timeout / 4, std::chrono::milliseconds(250), std::chrono::milliseconds(5000));
}
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
  Client(TCPStore* owner, std::string host, uint16_t port, std::string token,
         tcpstore::Limits limits)
      : owner_(owner),
        host_(std::move(host)),
        port_(port),
        token_(std::move(token)),
        limits_(limits),
        server_name_(fmt::format("the store at {}", net::endpoint(host_, port_))) {}

  const std::string& server_name() const { return server_name_; }

  void connect(Clock::time_point deadline) {
    // A server that answered once and now refuses has exited: say so at
    // once rather than retrying until the deadline.
    fd_ = net::connect_with_retry(host_, port_, deadline, owner_->reached_.load());
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
        auto r = tcpstore::parse_hello_reply(in_.data(), in_.size(), &version, &status, &message,
                                             &server_limits_);
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
      version_ = version;
      owner_->reached_ = true;
    } catch (...) {
      fd_.reset();
      throw;
    }
  }

  // Sends a set that gets no response (SET_QUIET), if the server takes such
  // requests and this key and value (else it must answer with a refusal);
  // false when it sent nothing. The connection is then unsettled until the
  // server next answers on it.
  bool try_post(const Request& q, Clock::time_point deadline) {
    try {
      if (!fd_.valid()) connect(deadline);
      if (version_ < 2 || q.keys.at(0).size() > server_limits_.max_key_bytes ||
          q.values.at(0).size() > server_limits_.max_value_bytes ||
          !owner_->claim_unsettled(this)) {
        return false;
      }
      unsettled_ = true;
      send(q, deadline, deadline);
      return true;
    } catch (...) {
      drop();
      throw;
    }
  }

  // Sends one request and returns its response. After any failure the
  // connection is dropped (its state is unknown) and the next call reconnects.
  Response call(const Request& q, Clock::time_point connect_deadline,
                Clock::time_point reply_deadline) {
    try {
      send(q, connect_deadline, reply_deadline);
      Response a;
      while (true) {
        auto r = tcpstore::parse_response(q.op, in_.data(), in_.size(), limits_, &a);
        if (r.status == tcpstore::ParseStatus::kOk) {
          in_.erase(in_.begin(), in_.begin() + static_cast<std::ptrdiff_t>(r.consumed));
          // Any answer means the server has applied every earlier request.
          settle();
          if (a.status == tcpstore::Status::PARKED) continue;
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
      drop();
      throw;
    }
  }

 private:
  void send(const Request& q, Clock::time_point connect_deadline, Clock::time_point deadline) {
    if (!fd_.valid()) connect(connect_deadline);
    out_.clear();
    tcpstore::encode_request(q, &out_);
    net::send_all(fd_.get(), out_.data(), out_.size(), deadline, server_name_);
  }

  void settle() {
    if (!unsettled_) return;
    unsettled_ = false;
    owner_->settled(this);
  }

  // Forgets the connection after a failure. Sets it carried are lost or
  // applied; either way no later request can overtake them on it.
  void drop() {
    fd_.reset();
    in_.clear();
    settle();
  }

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

  TCPStore* const owner_;
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
  bool unsettled_ = false;  // quiet requests sent, no answer since
  uint16_t version_ = 0;    // the protocol version the server speaks
  tcpstore::Limits server_limits_;
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
  auto first = std::make_unique<Client>(this, host_, port_, token_, limits);
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
    std::unique_lock<std::mutex> lock(pool_mutex_);
    auto take = [&](std::vector<std::unique_ptr<Client>>::iterator it) {
      auto client = std::move(*it);
      idle_.erase(it);
      return client;
    };
    // Held only for one request's round trip (see the header), so the wait
    // is short; the store's timeout bounds it all the same.
    const auto t = timeout();
    const auto deadline = deadline_after(t);
    while (unsettled_ != nullptr) {
      auto it = std::find_if(idle_.begin(), idle_.end(),
                             [&](const auto& c) { return c.get() == unsettled_; });
      if (it != idle_.end()) return take(it);
      if (deadline == Clock::time_point::max()) {
        pool_cv_.wait(lock);
      } else if (pool_cv_.wait_until(lock, deadline) == std::cv_status::timeout &&
                 unsettled_ != nullptr) {
        throw TimeoutError(fmt::format(
            "TCPStore at {}: a call waited {} ms for another thread's call, which holds the "
            "connection its earlier sets went out on",
            net::endpoint(host_, port_), t.count()));
      }
    }
    if (!idle_.empty()) return take(idle_.end() - 1);
  }
  tcpstore::Limits limits;
  limits.max_value_bytes = max_value_bytes_;
  return std::make_unique<Client>(this, host_, port_, token_, limits);
}

void TCPStore::release(std::unique_ptr<Client> client) {
  {
    std::lock_guard<std::mutex> lock(pool_mutex_);
    idle_.push_back(std::move(client));
    if (unsettled_ == nullptr) return;
  }
  pool_cv_.notify_all();
}

bool TCPStore::claim_unsettled(Client* client) {
  std::lock_guard<std::mutex> lock(pool_mutex_);
  if (unsettled_ != nullptr && unsettled_ != client) return false;
  unsettled_ = client;
  return true;
}

void TCPStore::settled(Client* client) {
  {
    std::lock_guard<std::mutex> lock(pool_mutex_);
    if (unsettled_ != client) return;
    unsettled_ = nullptr;
  }
  pool_cv_.notify_all();
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

// Runs f (which sends q), naming the request in its network errors.
template <class F>
auto naming_request(const Request& q, F&& f) {
  try {
    return f();
  } catch (const TimeoutError& e) {
    throw TimeoutError(fmt::format("TCPStore {}{}: {}", tcpstore::to_string(q.op),
                                   q.keys.empty() ? "" : " of " + store_util::quote_keys(q.keys),
                                   e.what()));
  } catch (const DistNetworkError& e) {
    throw DistNetworkError(fmt::format("TCPStore {}: {}", tcpstore::to_string(q.op), e.what()));
  }
}

// Sends a request that has no response, if the connection can; false if not.
template <class Client>
bool try_post(Client& client, const Request& q, std::chrono::milliseconds timeout) {
  const auto deadline = deadline_after(timeout);
  return naming_request(q, [&] { return client.try_post(q, deadline); });
}

// Runs one request, translating the server's refusals into exceptions.
template <class Client>
Response run(Client& client, const Request& q, std::chrono::milliseconds timeout, bool waits) {
  const auto connect_deadline = deadline_after(timeout);
  const auto reply_deadline = waits && timeout > std::chrono::milliseconds::zero()
                                  ? connect_deadline + server_grace(timeout)
                                  : connect_deadline;
  Response a = naming_request(q, [&] { return client.call(q, connect_deadline, reply_deadline); });
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
    case tcpstore::Status::PARKED:  // consumed by Client::call
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
  with_client([&](Client& c) {
    // A set the server would refuse goes out acknowledged, so that the
    // refusal has a response to travel in.
    Request q = make(Op::SET_QUIET, {key}, {value});
    if (!try_post(c, q, t)) {
      q.op = Op::SET;
      run(c, q, t, false);
    }
  });
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
