#include "tuttirun/line_relay.hpp"

#include <unistd.h>

#include <cerrno>

namespace tuttirun {

bool write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

void LineRelay::append_line(std::string& out, std::string_view line) const {
  out.append(prefix_);
  out.append(line);
  out.push_back('\n');
}

void LineRelay::feed(std::string_view bytes) {
  std::string out;
  while (!bytes.empty()) {
    size_t newline = bytes.find('\n');
    if (newline == std::string_view::npos) {
      // Keep the unterminated rest, cutting it if it outgrows the limit.
      size_t room = kMaxLineBytes - pending_.size();
      if (bytes.size() < room) {
        pending_.append(bytes);
        break;
      }
      pending_.append(bytes.substr(0, room));
      bytes.remove_prefix(room);
      append_line(out, pending_);
      pending_.clear();
      continue;
    }
    if (pending_.empty()) {
      append_line(out, bytes.substr(0, newline));
    } else {
      pending_.append(bytes.substr(0, newline));
      append_line(out, pending_);
      pending_.clear();
    }
    bytes.remove_prefix(newline + 1);
  }
  if (!out.empty()) write_all(destination_fd_, out);
}

void LineRelay::flush() {
  if (pending_.empty()) return;
  std::string out;
  append_line(out, pending_);
  pending_.clear();
  write_all(destination_fd_, out);
}

}  // namespace tuttirun
