// Blocking TCP sockets with deadlines, for the store client, and listening
// sockets for the server. Every call that can block takes a deadline.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace tutti::net {

using Clock = std::chrono::steady_clock;

// Owns a file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& other) noexcept : fd_(other.release()) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = other.release();
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// "host:port", with IPv6 literals bracketed.
std::string endpoint(const std::string& host, uint16_t port);

// Connects to host:port, retrying refused or unreachable attempts with
// exponential backoff (10 ms doubling to 1 s) until the deadline. Throws
// DistNetworkError naming host, port, the attempts made and the last error.
// With `refused_is_final`, a refused attempt throws at once instead: for a
// server that answered before, a refusal means it has exited.
Fd connect_with_retry(const std::string& host, uint16_t port, Clock::time_point deadline,
                      bool refused_is_final = false);

// For a blocking socket whose receive timeout is set (set_receive_timeout):
// polls without sleeping for up to `spin`, then blocks in one recv() call
// (instead of recv + poll + recv), re-checking the deadline each time the
// receive timeout expires. Same errors as recv_some.
size_t recv_blocking(int fd, void* data, size_t len, Clock::time_point deadline,
                     const std::string& what,
                     std::chrono::microseconds spin = std::chrono::microseconds(0));
void set_blocking(int fd);
void set_receive_timeout(int fd, std::chrono::milliseconds timeout);

// Sends everything. Throws DistNetworkError if the peer is gone, TimeoutError
// at the deadline; `what` names the peer for the message.
void send_all(int fd, const void* data, size_t len, Clock::time_point deadline,
              const std::string& what);
// Receives at least one byte (at most len). Same errors; a closed connection
// is a DistNetworkError.
size_t recv_some(int fd, void* data, size_t len, Clock::time_point deadline,
                 const std::string& what);

// A non-blocking listening socket on every address (IPv6 dual-stack where
// available, else IPv4). port 0 picks a free one. Throws DistNetworkError.
Fd listen_on(uint16_t port, int backlog);
uint16_t local_port(int fd);
// "1.2.3.4:5678" of the peer, for log lines.
std::string peer_name(int fd);

void set_nonblocking(int fd);
void set_nodelay(int fd);

// Raises the soft limit on open files to the hard limit, so one server can
// hold thousands of connections.
void raise_fd_limit();

}  // namespace tutti::net
