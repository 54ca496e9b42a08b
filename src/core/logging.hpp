// Internal logging: TUTTI_LOG(level, rank, group, fmt, args...).
//
// Each line reads
//   [tutti W 18:40:01.123 pid 4242 rank 1 group default] message
// so lines from many ranks interleaved on one terminal stay attributable.
// The format arguments are not evaluated when the level is disabled.
#pragma once

#include <fmt/format.h>

#include <string_view>

#include "tutti/logging.hpp"

namespace tutti::logging {

bool enabled(LogLevel level);
// rank < 0: the process's rank from the RANK variable, if any. group empty:
// not about one group.
void write(LogLevel level, int rank, std::string_view group, std::string_view message);
// Parses a TUTTI_LOG_LEVEL value (case-insensitive name or 0-5); false if
// it is not one.
bool parse_level(std::string_view text, LogLevel* level);
// Formats one line without the trailing newline (for tests).
std::string format_line(LogLevel level, int rank, std::string_view group, std::string_view message);

}  // namespace tutti::logging

#define TUTTI_LOG(level, rank, group, ...)                                     \
  do {                                                                         \
    if (::tutti::logging::enabled(level)) {                                    \
      ::tutti::logging::write(level, rank, group, ::fmt::format(__VA_ARGS__)); \
    }                                                                          \
  } while (0)
