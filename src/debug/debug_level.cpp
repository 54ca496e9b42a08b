#include <fmt/format.h>

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <string>

#include "core/env_parse.hpp"
#include "tutti/debug.hpp"

namespace tutti {
namespace {

// -1: not decided yet; -2: TUTTI_DEBUG holds a bad value; else a level.
std::atomic<int> g_level{-1};
std::string g_bad_value;  // written once, before g_level becomes -2
std::once_flag g_env_once;

void read_environment() {
  std::call_once(g_env_once, [] {
    const char* env = std::getenv("TUTTI_DEBUG");
    int level = static_cast<int>(DebugLevel::OFF);
    if (env != nullptr && *env != '\0') {
      if (auto parsed = env_parse::parse_debug_level(env)) {
        level = static_cast<int>(*parsed);
      } else {
        g_bad_value = env;
        level = -2;
      }
    }
    int unset = -1;
    // A set_debug_level() call that came first wins.
    g_level.compare_exchange_strong(unset, level);
  });
}

}  // namespace

DebugLevel debug_level() {
  if (g_level.load() == -1) read_environment();
  const int level = g_level.load();
  if (level == -2) {
    throw InvalidArgument(fmt::format(
        "TUTTI_DEBUG='{}' is not a debug level; use OFF, INFO or DETAIL (any case), or unset it",
        g_bad_value));
  }
  return static_cast<DebugLevel>(level);
}

void set_debug_level(DebugLevel level) {
  read_environment();
  g_level.store(static_cast<int>(level));
}

const char* to_string(DebugLevel level) {
  switch (level) {
    case DebugLevel::OFF:
      return "OFF";
    case DebugLevel::INFO:
      return "INFO";
    case DebugLevel::DETAIL:
      return "DETAIL";
  }
  return "?";
}

}  // namespace tutti
