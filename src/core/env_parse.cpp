#include "core/env_parse.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstdlib>

#include "tutti/errors.hpp"

namespace tutti::env_parse {

int64_t parse_int(const std::string& text, const char* what, const char* example) {
  int64_t value = 0;
  const char* begin = text.data();
  const char* end = begin + text.size();
  auto [ptr, ec] = std::from_chars(begin, end, value);
  if (text.empty() || ec != std::errc() || ptr != end) {
    throw InvalidArgument(fmt::format("{}='{}' is not an integer; e.g. {}", what, text, example));
  }
  return value;
}

int parse_int32(const std::string& text, const char* what, const char* example) {
  const int64_t value = parse_int(text, what, example);
  if (value < INT_MIN || value > INT_MAX) {
    throw InvalidArgument(
        fmt::format("{}={} is out of range (at most {}); e.g. {}", what, value, INT_MAX, example));
  }
  return static_cast<int>(value);
}

uint16_t parse_port(const std::string& text, const char* what, const char* example) {
  const int64_t port = parse_int(text, what, example);
  if (port < 1 || port > 65535) {
    throw InvalidArgument(
        fmt::format("{}={} is not a TCP port (1 to 65535); e.g. {}", what, port, example));
  }
  return static_cast<uint16_t>(port);
}

std::pair<std::string, uint16_t> parse_tcp_url(const std::string& url) {
  constexpr const char* kExample = "tcp://10.0.0.1:29500";
  const std::string rest = url.substr(6);
  std::string host, port;
  if (!rest.empty() && rest[0] == '[') {
    const size_t close = rest.find(']');
    if (close == std::string::npos || close == 1 || close + 1 >= rest.size() ||
        rest[close + 1] != ':') {
      throw InvalidArgument(
          fmt::format("init_method '{}' is not tcp://[ipv6]:port; e.g. tcp://[::1]:29500", url));
    }
    host = rest.substr(1, close - 1);
    port = rest.substr(close + 2);
  } else {
    const size_t colon = rest.rfind(':');
    if (colon == std::string::npos || colon == 0) {
      throw InvalidArgument(
          fmt::format("init_method '{}' needs a host and a port; e.g. {}", url, kExample));
    }
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
  }
  return {host, parse_port(port, "the port of init_method", kExample)};
}

std::optional<DebugLevel> parse_debug_level(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  if (text == "OFF") return DebugLevel::OFF;
  if (text == "INFO") return DebugLevel::INFO;
  if (text == "DETAIL") return DebugLevel::DETAIL;
  return std::nullopt;
}

std::optional<int> parse_thread_count(const char* text) {
  char* end = nullptr;
  const long n = std::strtol(text, &end, 10);
  if (end == text || *end != '\0' || n < 1 || n > 64) return std::nullopt;
  return static_cast<int>(n);
}

int parse_log_rank(const char* text) {
  char* end = nullptr;
  errno = 0;
  const long value = std::strtol(text, &end, 10);
  const bool ok = end != text && *end == '\0' && errno == 0 && value >= 0 && value <= INT_MAX;
  return ok ? static_cast<int>(value) : -1;
}

}  // namespace tutti::env_parse
