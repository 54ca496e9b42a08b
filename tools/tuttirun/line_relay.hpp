// Copies one rank's output stream to tuttirun's own, line by line, with the
// rank's prefix in front of every line.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace tuttirun {

// Writes all of `bytes` to fd, retrying short writes and EINTR. Returns false
// if the destination is gone (EPIPE, or any other error): output to a closed
// stdout is dropped, it does not stop the job.
bool write_all(int fd, std::string_view bytes);

// Buffers the bytes of one stream and writes each complete line as
// "<prefix><line>\n". Lines are written whole (a batch of whole lines per
// write), so lines of different ranks never mix. A line longer than
// kMaxLineBytes is cut into lines of that length, so a stream without newlines
// cannot grow the buffer without bound.
class LineRelay {
 public:
  static constexpr size_t kMaxLineBytes = 64 * 1024;

  LineRelay(std::string prefix, int destination_fd)
      : prefix_(std::move(prefix)), destination_fd_(destination_fd) {}

  // Takes the next bytes of the stream; writes the lines they complete.
  void feed(std::string_view bytes);

  // Writes the unterminated last line, if any, with a newline added. Called
  // when the stream ends.
  void flush();

 private:
  void append_line(std::string& out, std::string_view line) const;

  std::string prefix_;
  int destination_fd_;
  std::string pending_;  // the start of a line whose newline has not arrived
};

}  // namespace tuttirun
