// The flight recorder's dump: what one rank recorded, as data and as JSON.
//
// The library writes dumps (flight_recorder.cpp) and tutti-trace reads them;
// both go through this file so the format has one definition. Parsing takes
// text only (no file I/O) so that it can be fuzzed: on any bad input it
// throws InvalidArgument saying which field is wrong, and never crashes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tutti/types.hpp"
#include "tutti/work.hpp"

namespace tutti::trace {

inline constexpr int kFormatVersion = 1;
// Sizes of the first tensor are kept up to this many dimensions.
inline constexpr int kMaxRecordedDims = 6;

enum class EntryState : uint8_t { ENQUEUED, STARTED, COMPLETED, FAILED };
const char* to_string(EntryState state);

// One operation as issued through a ProcessGroup.
struct Entry {
  uint64_t id = 0;    // per process, in issue order (across groups)
  std::string group;  // group name
  uint64_t seq = 0;   // the group's collective number, or its p2p number
  bool p2p = false;   // seq counts point-to-point ops of the group
  OpType op = OpType::UNKNOWN;
  DType dtype = DType::Float32;
  bool has_tensors = false;    // false for barrier: dtype and sizes unset
  int32_t num_tensors = 0;     // tensors in the call's input list
  int64_t numel = 0;           // elements over all input tensors
  std::vector<int64_t> sizes;  // of the first input tensor (kMaxRecordedDims)
  int32_t root = -1;           // root rank of broadcast, reduce, gather, scatter
  int32_t peer = -1;           // dst of send, src of recv
  int32_t tag = -1;            // point-to-point tag
  EntryState state = EntryState::ENQUEUED;
  // Wall-clock microseconds since the Unix epoch (comparable across ranks of
  // one host); 0 when it did not happen (or was not tracked).
  int64_t enqueued_us = 0;
  int64_t started_us = 0;
  int64_t completed_us = 0;
  std::string error;  // "<ErrorType>: <message>" when failed
};

struct GroupInfo {
  std::string name;
  int rank = -1;
  int size = 0;
  uint64_t collectives = 0;  // collectives issued when dumped
  uint64_t p2p = 0;          // point-to-point ops issued when dumped
};

struct Dump {
  int version = kFormatVersion;
  int rank = -1;       // the process's rank in its first top-level group
  int world_size = 0;  // that group's size
  int64_t pid = 0;
  std::string hostname;
  std::string reason;  // what triggered the dump
  int64_t dumped_us = 0;
  uint64_t capacity = 0;  // ring size (TUTTI_TRACE_BUFFER)
  uint64_t dropped = 0;   // older entries overwritten by the ring
  std::vector<GroupInfo> groups;
  std::vector<Entry> entries;  // oldest first
};

std::string to_json(const Dump& dump);
// Throws InvalidArgument naming the offending field on malformed input.
Dump parse_trace_dump(std::string_view text);

// "allreduce" -> OpType::ALLREDUCE; throws InvalidArgument if unknown.
OpType parse_op_type(std::string_view name);
// "float32" -> DType::Float32; throws InvalidArgument if unknown.
DType parse_dtype(std::string_view name);

}  // namespace tutti::trace
