// One options struct per operation, so each can grow without breaking callers.
#pragma once

#include <chrono>
#include <cstdint>

#include "tutti/reduce_op.hpp"

namespace tutti {

// In an options struct: use the group's default timeout.
inline constexpr std::chrono::milliseconds kUnsetTimeout{-1};
// In Work::wait(): no limit.
inline constexpr std::chrono::milliseconds kNoTimeout{0};
// The default timeout of a process group (as c10d).
inline constexpr std::chrono::milliseconds kDefaultTimeout{30 * 60 * 1000};

struct BroadcastOptions {
  int64_t root_rank = 0;
  int64_t root_tensor = 0;
  std::chrono::milliseconds timeout = kUnsetTimeout;
};

struct AllreduceOptions {
  ReduceOp reduce_op = ReduceOp::SUM;
  std::chrono::milliseconds timeout = kUnsetTimeout;
};

struct AllreduceCoalescedOptions : AllreduceOptions {};

struct ReduceOptions {
  ReduceOp reduce_op = ReduceOp::SUM;
  int64_t root_rank = 0;
  int64_t root_tensor = 0;
  std::chrono::milliseconds timeout = kUnsetTimeout;
};

struct AllgatherOptions {
  std::chrono::milliseconds timeout = kUnsetTimeout;
};

struct GatherOptions {
  int64_t root_rank = 0;
  std::chrono::milliseconds timeout = kUnsetTimeout;
};

struct ScatterOptions {
  int64_t root_rank = 0;
  std::chrono::milliseconds timeout = kUnsetTimeout;
};

struct ReduceScatterOptions {
  ReduceOp reduce_op = ReduceOp::SUM;
  std::chrono::milliseconds timeout = kUnsetTimeout;
};

struct AllToAllOptions {
  std::chrono::milliseconds timeout = kUnsetTimeout;
};

struct BarrierOptions {
  std::chrono::milliseconds timeout = kUnsetTimeout;
};

// Resolves kUnsetTimeout against a group default.
inline std::chrono::milliseconds effective_timeout(std::chrono::milliseconds requested,
                                                   std::chrono::milliseconds fallback) {
  return requested == kUnsetTimeout ? fallback : requested;
}

}  // namespace tutti
