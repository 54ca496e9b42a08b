#include "debug/flight_recorder.hpp"
#include "tutti/trace.hpp"

namespace tutti {

std::string dump_trace(const std::string& dir) {
  const std::string target = dir.empty() ? trace::trace_dir_from_env() : dir;
  return trace::write_dump(trace::FlightRecorder::global().snapshot("dump_trace()"), target);
}

std::string trace_json() {
  return trace::to_json(trace::FlightRecorder::global().snapshot("trace_json()"));
}

size_t trace_buffer_size() { return trace::FlightRecorder::global().capacity(); }

}  // namespace tutti
