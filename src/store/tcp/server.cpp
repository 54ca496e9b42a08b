#include "store/tcp/server.hpp"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <optional>
#include <unordered_map>
#include <vector>

#include "core/logging.hpp"
#include "store/store_util.hpp"
#include "store/tcp/keys.hpp"
#include "tutti/errors.hpp"

namespace tutti::tcpstore {
namespace {

using Clock = std::chrono::steady_clock;
using Bytes = std::vector<uint8_t>;

constexpr uint64_t kListenId = 0;
constexpr uint64_t kWakeId = 1;
// Stop reading from a client whose replies pile up unread.
constexpr size_t kMaxPendingOutput = 256 << 20;
constexpr size_t kReadChunk = 64 << 10;

// A request parked until its keys exist or its deadline passes.
struct Parked {
  Request request;
  Clock::time_point deadline;  // time_point::max(): no deadline
  uint64_t generation = 0;
};

struct Connection {
  net::Fd fd;
  std::string peer;
  Bytes in;
  size_t in_start = 0;  // parsed up to here
  Bytes out;
  size_t out_start = 0;  // sent up to here
  bool greeted = false;
  // SET_QUIET requests applied since the last response on this connection:
  // a request parked now owes the client a PARKED notice.
  bool quiet_since_response = false;
  bool close_after_flush = false;
  bool writing = false;  // EPOLLOUT registered
  std::optional<Parked> parked;
  uint64_t generation = 0;
};

}  // namespace

class Server::Loop {
 public:
  Loop(ServerOptions options, net::Fd listener)
      : options_(std::move(options)), listener_(std::move(listener)) {
    epoll_ = net::Fd(::epoll_create1(EPOLL_CLOEXEC));
    wake_ = net::Fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!epoll_.valid() || !wake_.valid()) {
      throw DistNetworkError(
          fmt::format("TCPStore server: cannot create epoll: {}", std::strerror(errno)));
    }
    watch(listener_.get(), kListenId, EPOLLIN);
    watch(wake_.get(), kWakeId, EPOLLIN);
  }

  void run() {
    std::vector<epoll_event> events(256);
    while (!stopping_.load()) {
      int n = ::epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()),
                           next_timeout_ms());
      if (n < 0 && errno != EINTR) {
        TUTTI_LOG(LogLevel::ERROR, -1, "store", "TCPStore server: epoll_wait failed: {}",
                  std::strerror(errno));
        return;
      }
      for (int i = 0; i < n; ++i) {
        const uint64_t id = events[static_cast<size_t>(i)].data.u64;
        const uint32_t ev = events[static_cast<size_t>(i)].events;
        if (id == kListenId) {
          accept_all();
        } else if (id != kWakeId) {
          on_event(id, ev);
        }
      }
      expire_deadlines();
    }
  }

  void stop() {
    stopping_.store(true);
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_.get(), &one, sizeof one);
  }

  Stats stats() const {
    Stats s;
    s.connections_accepted = accepted_.load();
    s.connections_rejected = rejected_.load();
    s.requests = requests_.load();
    return s;
  }

 private:
  void watch(int fd, uint64_t id, uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = id;
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev);
  }

  void rewatch(Connection& c, uint64_t id) {
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP | (c.writing ? EPOLLOUT : 0u);
    ev.data.u64 = id;
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, c.fd.get(), &ev);
  }

  void accept_all() {
    while (true) {
      int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
          TUTTI_LOG(LogLevel::WARNING, -1, "store", "TCPStore server: accept failed: {}",
                    std::strerror(errno));
        }
        return;
      }
      net::set_nodelay(fd);
      const uint64_t id = next_id_++;
      Connection& c = connections_[id];
      c.fd.reset(fd);
      c.peer = net::peer_name(fd);
      watch(fd, id, EPOLLIN | EPOLLRDHUP);
      ++accepted_;
    }
  }

  void on_event(uint64_t id, uint32_t events) {
    auto it = connections_.find(id);
    if (it == connections_.end()) return;
    Connection& c = it->second;
    if (events & EPOLLOUT) {
      if (!flush(c, id)) return close(id, nullptr);
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
      const bool open = read_available(c);
      // Requests that arrived with the end of the stream are still carried
      // out: a client may send a quiet set and close at once.
      process(id);
      if (!open) close(id, nullptr);
    }
  }

  // Reads what the socket holds; false when the peer closed or failed.
  bool read_available(Connection& c) {
    if (c.out.size() - c.out_start > kMaxPendingOutput) return true;  // back-pressure
    // Reads go through one scratch buffer: growing c.in by a chunk would
    // zero-fill it on every read.
    scratch_.resize(kReadChunk);
    while (true) {
      ssize_t n = ::recv(c.fd.get(), scratch_.data(), kReadChunk, 0);
      if (n > 0) {
        c.in.insert(c.in.end(), scratch_.data(), scratch_.data() + n);
        if (static_cast<size_t>(n) < kReadChunk) return true;
        continue;
      }
      if (n == 0) return false;
      if (errno == EINTR) continue;
      return errno == EAGAIN || errno == EWOULDBLOCK;
    }
  }

  // Parses and answers buffered frames until one is parked or more bytes are
  // needed. May close the connection.
  void process(uint64_t id) {
    auto it = connections_.find(id);
    if (it == connections_.end()) return;
    Connection& c = it->second;
    while (!c.parked && !c.close_after_flush) {
      const uint8_t* data = c.in.data() + c.in_start;
      const size_t len = c.in.size() - c.in_start;
      if (!c.greeted) {
        if (!greet(c, id, data, len)) return;
        continue;
      }
      Request request;
      ParseResult r = parse_request(data, len, options_.limits, &request);
      if (r.status == ParseStatus::kNeedMore) break;
      if (r.status == ParseStatus::kMalformed) {
        ++rejected_;
        return close(id, r.reason.c_str());
      }
      c.in_start += r.consumed;
      if (r.status == ParseStatus::kRejected) {
        ++rejected_;
        if (data[kFrameHeaderBytes] == static_cast<uint8_t>(Op::SET_QUIET)) {
          // A quiet request has no response to carry the refusal; answering
          // anyway would pair every later response with the wrong request.
          const std::string reason = "a quiet set was rejected: " + r.reason;
          return close(id, reason.c_str());
        }
        TUTTI_LOG(LogLevel::WARNING, -1, "store",
                  "TCPStore server: rejecting a request from {}: {}", c.peer, r.reason);
        Response refusal;
        refusal.status = Status::INVALID;
        refusal.error = "the store server rejected the request: " + r.reason;
        respond(c, Op::PING, refusal);
        continue;
      }
      ++requests_;
      handle(c, id, std::move(request));
    }
    compact(c);
    if (!flush(c, id)) close(id, nullptr);
  }

  // Handles the hello; false when more bytes are needed or the connection
  // was refused.
  bool greet(Connection& c, uint64_t id, const uint8_t* data, size_t len) {
    uint16_t version = 0;
    std::string token;
    ParseResult r = parse_hello(data, len, options_.limits, &version, &token);
    if (r.status == ParseStatus::kNeedMore) return false;
    if (r.status == ParseStatus::kMalformed) {
      ++rejected_;
      close(id, r.reason.c_str());
      return false;
    }
    c.in_start += r.consumed;
    HelloStatus status = HelloStatus::OK;
    std::string message;
    if (version < kMinVersion || version > kVersion) {
      status = HelloStatus::VERSION_MISMATCH;
      message = fmt::format(
          "the store server speaks protocol versions {} to {}, the client {}; use "
          "the same tutti release on every host",
          kMinVersion, kVersion, version);
    } else if (!tokens_match(token)) {
      status = HelloStatus::BAD_TOKEN;
      message = token.empty() ? "the store requires a token: set TUTTI_STORE_TOKEN to the "
                                "server's token"
                              : "the store refused the client's token (TUTTI_STORE_TOKEN "
                                "differs from the server's)";
    }
    // Speak the client's version when it is older than ours.
    const uint16_t spoken = status == HelloStatus::VERSION_MISMATCH ? kVersion : version;
    auto reply = encode_hello_reply(status, message, spoken, options_.limits);
    c.out.insert(c.out.end(), reply.begin(), reply.end());
    if (status != HelloStatus::OK) {
      ++rejected_;
      TUTTI_LOG(LogLevel::WARNING, -1, "store", "TCPStore server: refusing {}: {}", c.peer,
                message);
      c.close_after_flush = true;
      flush(c, id);
      return false;
    }
    c.greeted = true;
    return true;
  }

  bool tokens_match(const std::string& token) const {
    const std::string& expected = options_.token;
    if (expected.empty()) return true;
    // Constant time in the token's content.
    unsigned diff = token.size() == expected.size() ? 0u : 1u;
    for (size_t i = 0; i < expected.size(); ++i) {
      diff |= static_cast<unsigned char>(expected[i]) ^
              static_cast<unsigned char>(i < token.size() ? token[i] : 0);
    }
    return diff == 0;
  }

  void handle(Connection& c, uint64_t id, Request q) {
    Response a;
    switch (q.op) {
      case Op::SET_QUIET:
        data_[q.keys[0]] = std::move(q.values[0]);
        c.quiet_since_response = true;
        changed(q.keys[0]);
        return;  // no response
      case Op::SET:
        data_[q.keys[0]] = std::move(q.values[0]);
        changed(q.keys[0]);
        break;
      case Op::GET:
      case Op::WAIT:
      case Op::MULTI_GET:
        if (!all_present(q.keys)) return park(c, id, std::move(q));
        a = answer_wait(q);
        break;
      case Op::ADD: {
        auto found = data_.find(q.keys[0]);
        try {
          int64_t current =
              found == data_.end() ? 0 : store_util::parse_counter(q.keys[0], found->second);
          a.number = static_cast<int64_t>(static_cast<uint64_t>(current) +
                                          static_cast<uint64_t>(q.number));
          data_[q.keys[0]] = store_util::format_counter(a.number);
          changed(q.keys[0]);
        } catch (const InvalidArgument& e) {
          a.status = Status::INVALID;
          a.error = e.what();
        }
        break;
      }
      case Op::COMPARE_SET: {
        auto found = data_.find(q.keys[0]);
        auto rule = store_util::compare_set_rule(found == data_.end() ? nullptr : &found->second,
                                                 q.values[0], q.values[1]);
        if (rule.store) {
          data_[q.keys[0]] = q.values[1];
          changed(q.keys[0]);
        }
        a.values.push_back(std::move(rule.returned));
        break;
      }
      case Op::DELETE_KEY:
        a.number = data_.erase(q.keys[0]) > 0 ? 1 : 0;
        break;
      case Op::CHECK:
        a.number = all_present(q.keys) ? 1 : 0;
        break;
      case Op::NUM_KEYS: {
        int64_t n = 0;
        for (const auto& entry : data_) n += is_internal_key(entry.first) ? 0 : 1;
        a.number = n;
        break;
      }
      case Op::APPEND: {
        Bytes& stored = data_[q.keys[0]];
        stored.insert(stored.end(), q.values[0].begin(), q.values[0].end());
        changed(q.keys[0]);
        break;
      }
      case Op::MULTI_SET:
        for (size_t i = 0; i < q.keys.size(); ++i) data_[q.keys[i]] = std::move(q.values[i]);
        for (const auto& key : q.keys) changed(key);
        break;
      case Op::PING:
        break;
    }
    respond(c, q.op, a);
  }

  void respond(Connection& c, Op op, const Response& a) {
    encode_response(op, a, &c.out);
    c.quiet_since_response = false;
  }

  Response answer_wait(const Request& q) {
    Response a;
    if (q.op == Op::GET || q.op == Op::MULTI_GET) {
      for (const auto& key : q.keys) a.values.push_back(data_.at(key));
    }
    return a;
  }

  bool all_present(const std::vector<std::string>& keys) const {
    for (const auto& key : keys) {
      if (data_.find(key) == data_.end()) return false;
    }
    return true;
  }

  void park(Connection& c, uint64_t id, Request q) {
    Parked p;
    p.deadline = q.number > 0 ? Clock::now() + std::chrono::milliseconds(q.number)
                              : Clock::time_point::max();
    p.generation = ++c.generation;
    for (const auto& key : q.keys) {
      if (data_.find(key) == data_.end()) watchers_[key].push_back(id);
    }
    if (p.deadline != Clock::time_point::max()) deadlines_.emplace(p.deadline, id);
    p.request = std::move(q);
    c.parked = std::move(p);
    if (c.quiet_since_response) {
      // The client may hold other requests until it knows its quiet sets
      // were applied; tell it now rather than when the keys appear.
      Response notice;
      notice.status = Status::PARKED;
      respond(c, c.parked->request.op, notice);
    }
  }

  // A key was written: answer the parked requests now complete.
  void changed(const std::string& key) {
    auto it = watchers_.find(key);
    if (it == watchers_.end()) return;
    std::vector<uint64_t> ids = std::move(it->second);
    watchers_.erase(it);
    for (uint64_t id : ids) ready_.push_back(id);
    if (!draining_) drain_ready();
  }

  // Answers parked requests whose keys are all present. Runs after the
  // current request so answers keep each connection's order.
  void drain_ready() {
    draining_ = true;
    while (!ready_.empty()) {
      uint64_t id = ready_.back();
      ready_.pop_back();
      auto it = connections_.find(id);
      if (it == connections_.end() || !it->second.parked) continue;
      Connection& c = it->second;
      if (!all_present(c.parked->request.keys)) continue;  // still waiting on another key
      Request q = std::move(c.parked->request);
      c.parked.reset();
      respond(c, q.op, answer_wait(q));
      process(id);  // the client may have pipelined more requests
    }
    draining_ = false;
  }

  // Forgets that connection `id` waits on `keys`, so requests that time out
  // or whose clients leave do not accumulate.
  void unwatch(uint64_t id, const std::vector<std::string>& keys) {
    for (const auto& key : keys) {
      auto it = watchers_.find(key);
      if (it == watchers_.end()) continue;
      auto& ids = it->second;
      ids.erase(std::remove(ids.begin(), ids.end(), id), ids.end());
      if (ids.empty()) watchers_.erase(it);
    }
  }

  void expire_deadlines() {
    const auto now = Clock::now();
    while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
      auto [deadline, id] = *deadlines_.begin();
      deadlines_.erase(deadlines_.begin());
      auto it = connections_.find(id);
      if (it == connections_.end() || !it->second.parked ||
          it->second.parked->deadline != deadline) {
        continue;
      }
      Connection& c = it->second;
      Response a;
      a.status = Status::TIMEOUT;
      for (const auto& key : c.parked->request.keys) {
        if (data_.find(key) == data_.end()) a.keys.push_back(key);
      }
      const Op op = c.parked->request.op;
      unwatch(id, c.parked->request.keys);
      c.parked.reset();
      respond(c, op, a);
      process(id);
    }
  }

  int next_timeout_ms() const {
    if (deadlines_.empty()) return -1;
    auto left =
        std::chrono::ceil<std::chrono::milliseconds>(deadlines_.begin()->first - Clock::now());
    return static_cast<int>(std::clamp<int64_t>(left.count(), 0, 1 << 30));
  }

  // Sends what is queued; false if the connection failed.
  bool flush(Connection& c, uint64_t id) {
    while (c.out_start < c.out.size()) {
      ssize_t n =
          ::send(c.fd.get(), c.out.data() + c.out_start, c.out.size() - c.out_start, MSG_NOSIGNAL);
      if (n > 0) {
        c.out_start += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (!c.writing) {
          c.writing = true;
          rewatch(c, id);
        }
        return true;
      }
      return false;
    }
    c.out.clear();
    c.out_start = 0;
    if (c.writing) {
      c.writing = false;
      rewatch(c, id);
    }
    if (c.close_after_flush) {
      close(id, nullptr);
      return true;
    }
    return true;
  }

  static void compact(Connection& c) {
    if (c.in_start == 0) return;
    if (c.in_start == c.in.size()) {
      c.in.clear();
    } else if (c.in_start > (1 << 20) || c.in_start > c.in.size() / 2) {
      c.in.erase(c.in.begin(), c.in.begin() + static_cast<std::ptrdiff_t>(c.in_start));
    } else {
      return;
    }
    c.in_start = 0;
  }

  void close(uint64_t id, const char* reason) {
    auto it = connections_.find(id);
    if (it == connections_.end()) return;
    if (reason != nullptr) {
      TUTTI_LOG(LogLevel::WARNING, -1, "store",
                "TCPStore server: closing the connection from {}: {}", it->second.peer, reason);
    }
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, it->second.fd.get(), nullptr);
    // A deadline naming this id is skipped when it comes up.
    if (it->second.parked) unwatch(id, it->second.parked->request.keys);
    connections_.erase(it);
  }

  const ServerOptions options_;
  net::Fd listener_;
  net::Fd epoll_;
  net::Fd wake_;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> accepted_{0};
  std::atomic<uint64_t> rejected_{0};
  std::atomic<uint64_t> requests_{0};

  // Loop-thread state.
  uint64_t next_id_ = 2;
  std::unordered_map<uint64_t, Connection> connections_;
  std::unordered_map<std::string, Bytes> data_;
  std::unordered_map<std::string, std::vector<uint64_t>> watchers_;
  std::multimap<Clock::time_point, uint64_t> deadlines_;
  std::vector<uint64_t> ready_;
  bool draining_ = false;
  Bytes scratch_;
};

Server::Server(ServerOptions options) {
  net::raise_fd_limit();
  net::Fd listener = net::listen_on(options.port, 4096);
  port_ = net::local_port(listener.get());
  loop_ = std::make_unique<Loop>(std::move(options), std::move(listener));
  thread_ = std::thread([this] { loop_->run(); });
}

Server::~Server() {
  loop_->stop();
  if (thread_.joinable()) thread_.join();
}

Server::Stats Server::stats() const { return loop_->stats(); }

}  // namespace tutti::tcpstore
