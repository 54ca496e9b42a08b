#include "store/tcp/socket.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <thread>

#include "tutti/errors.hpp"

namespace tutti::net {
namespace {

std::string errno_text(int err) { return std::strerror(err); }

int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::clamp<int64_t>(left.count(), 0, 1 << 30));
}

// Waits until fd is ready for `events` or the deadline passes.
bool wait_ready(int fd, short events, Clock::time_point deadline) {
  while (true) {
    pollfd p{fd, events, 0};
    int rc = ::poll(&p, 1, remaining_ms(deadline));
    if (rc > 0) return true;
    if (rc == 0) return false;
    if (errno != EINTR) return true;  // let the following call report the error
  }
}

struct AddrInfoDeleter {
  void operator()(addrinfo* ai) const { freeaddrinfo(ai); }
};

// One non-blocking connect attempt to one address; returns 0 or an errno.
int try_connect(const addrinfo& ai, Clock::time_point deadline, Fd* out) {
  Fd fd(::socket(ai.ai_family, ai.ai_socktype | SOCK_CLOEXEC, ai.ai_protocol));
  if (!fd.valid()) return errno;
  set_nonblocking(fd.get());
  if (::connect(fd.get(), ai.ai_addr, ai.ai_addrlen) != 0) {
    if (errno != EINPROGRESS) return errno;
    // A single attempt waits at most 2 s, so a dropped SYN is retried.
    auto attempt_deadline = std::min(deadline, Clock::now() + std::chrono::seconds(2));
    if (!wait_ready(fd.get(), POLLOUT, attempt_deadline)) return ETIMEDOUT;
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) return err;
  }
  set_nodelay(fd.get());
  *out = std::move(fd);
  return 0;
}

}  // namespace

void Fd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

std::string endpoint(const std::string& host, uint16_t port) {
  if (host.find(':') != std::string::npos) return fmt::format("[{}]:{}", host, port);
  return fmt::format("{}:{}", host, port);
}

Fd connect_with_retry(const std::string& host, uint16_t port, Clock::time_point deadline,
                      bool refused_is_final) {
  auto backoff = std::chrono::milliseconds(10);
  int attempts = 0;
  std::string last_error = "no attempt made";
  while (true) {
    ++attempts;
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* raw = nullptr;
    const std::string service = std::to_string(port);
    int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &raw);
    std::unique_ptr<addrinfo, AddrInfoDeleter> list(raw);
    if (rc != 0) {
      last_error = fmt::format("cannot resolve '{}': {}", host, gai_strerror(rc));
    } else {
      for (addrinfo* ai = list.get(); ai != nullptr; ai = ai->ai_next) {
        Fd fd;
        int err = try_connect(*ai, deadline, &fd);
        if (err == 0) return fd;
        last_error = errno_text(err);
        if (err == ECONNREFUSED && refused_is_final) {
          throw DistNetworkError(fmt::format(
              "the store at {} refused the connection ({}); it answered before, so its server "
              "has exited: the process that served it (rank 0 by default) may have died",
              endpoint(host, port), last_error));
        }
      }
    }
    auto now = Clock::now();
    if (now >= deadline) break;
    std::this_thread::sleep_for(std::min<Clock::duration>(backoff, deadline - now));
    backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
  }
  throw DistNetworkError(fmt::format(
      "cannot connect to the store at {} after {} attempts: {}; check that the server is "
      "running there (rank 0 or tutti-store) and the address and port are right",
      endpoint(host, port), attempts, last_error));
}

void send_all(int fd, const void* data, size_t len, Clock::time_point deadline,
              const std::string& what) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (len > 0) {
    ssize_t n = ::send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      p += n;
      len -= static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!wait_ready(fd, POLLOUT, deadline)) {
        throw TimeoutError(fmt::format("timed out sending to {}", what));
      }
      continue;
    }
    throw DistNetworkError(
        fmt::format("connection to {} lost while sending: {}", what, errno_text(errno)));
  }
}

size_t recv_some(int fd, void* data, size_t len, Clock::time_point deadline,
                 const std::string& what) {
  while (true) {
    ssize_t n = ::recv(fd, data, len, MSG_DONTWAIT);
    if (n > 0) return static_cast<size_t>(n);
    if (n == 0) throw DistNetworkError(fmt::format("connection to {} closed by the peer", what));
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (!wait_ready(fd, POLLIN, deadline)) {
        throw TimeoutError(fmt::format("timed out waiting for a reply from {}", what));
      }
      continue;
    }
    throw DistNetworkError(
        fmt::format("connection to {} lost while receiving: {}", what, errno_text(errno)));
  }
}

size_t recv_blocking(int fd, void* data, size_t len, Clock::time_point deadline,
                     const std::string& what, std::chrono::microseconds spin) {
  const auto spin_until = Clock::now() + spin;
  do {
    ssize_t n = ::recv(fd, data, len, MSG_DONTWAIT);
    if (n > 0) return static_cast<size_t>(n);
    if (n == 0) throw DistNetworkError(fmt::format("connection to {} closed by the peer", what));
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) break;
  } while (Clock::now() < spin_until);
  while (true) {
    ssize_t n = ::recv(fd, data, len, 0);
    if (n > 0) return static_cast<size_t>(n);
    if (n == 0) throw DistNetworkError(fmt::format("connection to {} closed by the peer", what));
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (Clock::now() >= deadline) {
        throw TimeoutError(fmt::format("timed out waiting for a reply from {}", what));
      }
      continue;
    }
    throw DistNetworkError(
        fmt::format("connection to {} lost while receiving: {}", what, errno_text(errno)));
  }
}

void set_blocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL, 0);
  ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
}

void set_receive_timeout(int fd, std::chrono::milliseconds timeout) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

Fd listen_on(uint16_t port, int backlog) {
  auto bind_any = [&](int family) -> Fd {
    Fd fd(::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd.valid()) return fd;
    int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    int rc;
    if (family == AF_INET6) {
      int zero = 0;  // dual-stack: IPv4 clients arrive as ::ffff:a.b.c.d
      ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
      sockaddr_in6 addr{};
      addr.sin6_family = AF_INET6;
      addr.sin6_addr = in6addr_any;
      addr.sin6_port = htons(port);
      rc = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    } else {
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_addr.s_addr = htonl(INADDR_ANY);
      addr.sin_port = htons(port);
      rc = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    }
    if (rc != 0 || ::listen(fd.get(), backlog) != 0) return Fd();
    return fd;
  };
  Fd fd = bind_any(AF_INET6);
  if (!fd.valid()) fd = bind_any(AF_INET);
  if (!fd.valid()) {
    throw DistNetworkError(fmt::format("cannot listen on port {}: {}", port, errno_text(errno)));
  }
  return fd;
}

uint16_t local_port(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  if (addr.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
  }
  return ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
}

std::string peer_name(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return "unknown peer";
  char host[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&addr);
    ::inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    return endpoint(host, ntohs(a->sin6_port));
  }
  auto* a = reinterpret_cast<sockaddr_in*>(&addr);
  ::inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
  return endpoint(host, ntohs(a->sin_port));
}

void set_nonblocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL, 0);
  ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

void set_nodelay(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

void raise_fd_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &limit);
  }
}

}  // namespace tutti::net
