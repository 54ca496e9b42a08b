#include "core/logging.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>

#include "core/env_parse.hpp"

namespace tutti {
namespace {

constexpr const char* kLevelNames[] = {"TRACE", "DEBUG", "INFO", "WARNING", "ERROR", "OFF"};
constexpr char kLevelLetters[] = {'T', 'D', 'I', 'W', 'E', 'O'};

LogLevel initial_level() {
  const char* env = std::getenv("TUTTI_LOG_LEVEL");
  LogLevel level = LogLevel::WARNING;
  if (env != nullptr && *env != '\0' && !logging::parse_level(env, &level)) {
    std::fprintf(stderr,
                 "[tutti W] ignoring TUTTI_LOG_LEVEL='%s': expected TRACE, DEBUG, INFO, "
                 "WARNING, ERROR or OFF\n",
                 env);
    level = LogLevel::WARNING;
  }
  return level;
}

std::atomic<int>& current_level() {
  static std::atomic<int> level{static_cast<int>(initial_level())};
  return level;
}

int env_rank() {
  static const int rank = [] {
    const char* env = std::getenv("RANK");
    return env == nullptr ? -1 : env_parse::parse_log_rank(env);
  }();
  return rank;
}

}  // namespace

void set_log_level(LogLevel level) { current_level().store(static_cast<int>(level)); }

LogLevel log_level() { return static_cast<LogLevel>(current_level().load()); }

namespace logging {

bool enabled(LogLevel level) {
  return level != LogLevel::OFF && static_cast<int>(level) >= current_level().load();
}

bool parse_level(std::string_view text, LogLevel* level) {
  std::string upper(text);
  std::transform(upper.begin(), upper.end(), upper.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  if (upper == "WARN") upper = "WARNING";
  for (int i = 0; i < 6; ++i) {
    if (upper == kLevelNames[i] || upper == std::to_string(i)) {
      *level = static_cast<LogLevel>(i);
      return true;
    }
  }
  return false;
}

std::string format_line(LogLevel level, int rank, std::string_view group,
                        std::string_view message) {
  using namespace std::chrono;
  auto now = system_clock::now();
  std::time_t seconds = system_clock::to_time_t(now);
  auto millis = duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm local{};
  localtime_r(&seconds, &local);
  if (rank < 0) rank = env_rank();
  std::string rank_text = rank >= 0 ? std::to_string(rank) : "?";
  return fmt::format("[tutti {} {:02}:{:02}:{:02}.{:03} pid {} rank {} group {}] {}",
                     kLevelLetters[static_cast<int>(level)], local.tm_hour, local.tm_min,
                     local.tm_sec, millis, ::getpid(), rank_text,
                     group.empty() ? std::string_view("-") : group, message);
}

void write(LogLevel level, int rank, std::string_view group, std::string_view message) {
  std::string line = format_line(level, rank, group, message);
  line.push_back('\n');
  // One write call per line keeps lines from several threads whole.
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace logging
}  // namespace tutti
