// libFuzzer target for the strings tutti takes from its environment and its
// callers: init_method URLs (tcp://host:port), MASTER_PORT, RANK and
// WORLD_SIZE, TUTTI_DEBUG, TUTTI_LOG_LEVEL, TUTTI_TRACE_BUFFER,
// TUTTI_GLOO_THREADS, TUTTI_GLOO_ALLREDUCE, TUTTI_GLOO_IFNAME-style interface
// lists, dtype names, and the decimal counters add() reads from a store.
//
// The first byte picks the parser, the rest is the string. Bad input may
// only raise InvalidArgument (or return "not one"); what parses must obey
// the parser's contract (a port in 1..65535, a counter that formats back to
// the same text, ...).
// Seeds: env_strings_seeds writes values users set, good and bad.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/env_parse.hpp"
#include "core/logging.hpp"
#include "debug/flight_recorder.hpp"
#include "store/store_util.hpp"
#include "tutti/errors.hpp"
#include "tutti/types.hpp"
#ifdef TUTTI_HAVE_GLOO
#include "backends/gloo/backend.hpp"
#include "backends/gloo/device.hpp"
#endif

using namespace tutti;

namespace {

void require(bool condition) {
  if (!condition) std::abort();
}

void parse(uint8_t which, const std::string& text) {
  switch (which % 12) {
    case 0: {
      const auto [host, port] = env_parse::parse_tcp_url("tcp://" + text);
      require(!host.empty() && port >= 1);
      break;
    }
    case 1:
      require(env_parse::parse_port(text, "MASTER_PORT", "MASTER_PORT=29500") >= 1);
      break;
    case 2: {
      const int rank = env_parse::parse_int32(text, "RANK", "RANK=0");
      require(std::to_string(rank) == text || text[0] == '+' || text[0] == '0' ||
              text.rfind("-0", 0) == 0);
      break;
    }
    case 3:
      if (auto level = env_parse::parse_debug_level(text)) {
        require(env_parse::parse_debug_level(to_string(*level)) == level);
      }
      break;
    case 4:
      if (auto n = env_parse::parse_thread_count(text.c_str())) require(*n >= 1 && *n <= 64);
      break;
    case 5:
      require(env_parse::parse_log_rank(text.c_str()) >= -1);
      break;
    case 6:
      require(trace::parse_capacity(text.c_str()) <= trace::kMaxCapacity);
      break;
    case 7: {
      LogLevel level{};
      if (logging::parse_level(text, &level)) {
        require(static_cast<int>(level) >= 0 && static_cast<int>(level) <= 5);
      }
      break;
    }
    case 8: {
      const std::vector<uint8_t> bytes(text.begin(), text.end());
      const int64_t value = store_util::parse_counter("key", bytes);
      require(store_util::parse_counter("key", store_util::format_counter(value)) == value);
      (void)store_util::quote_key(text);
      break;
    }
    case 9: {
      const DType dtype = dtype_from_string(text);
      require(dtype_from_string(to_string(dtype)) == dtype);
      break;
    }
#ifdef TUTTI_HAVE_GLOO
    case 10:
      (void)gloo_backend::parse_algorithm(text);
      break;
    case 11:
      (void)gloo_backend::select_interfaces(text);
      break;
#endif
    default:
      break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    parse(data[0], text);
  } catch (const InvalidArgument&) {
  }
  return 0;
}
