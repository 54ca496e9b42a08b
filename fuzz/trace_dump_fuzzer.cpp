// libFuzzer target for the flight recorder's dump parser (tutti-trace's
// input, src/debug/trace_dump.hpp).
//
// Besides "no crash, no sanitizer report", a text that parses must survive a
// round trip: its dump re-encodes to JSON that parses to a dump encoding to
// the same text. Bad input may only raise InvalidArgument.
// Seeds: trace_dump_seeds writes real dumps of a recorder.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "debug/trace_dump.hpp"
#include "tutti/errors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  tutti::trace::Dump dump;
  try {
    dump = tutti::trace::parse_trace_dump(text);
  } catch (const tutti::InvalidArgument&) {
    return 0;
  }
  const std::string once = tutti::trace::to_json(dump);
  std::string twice;
  try {
    twice = tutti::trace::to_json(tutti::trace::parse_trace_dump(once));
  } catch (const tutti::InvalidArgument&) {
    std::abort();  // our own output must parse
  }
  if (once != twice) std::abort();
  return 0;
}
