// The flight recorder: per process, a ring of the last N operations issued
// through any ProcessGroup, with their state and times, dumped as JSON when
// something fails, on SIGUSR1, or on demand (include/tutti/trace.hpp).
//
// Cost: recording takes one uncontended mutex and fills a preallocated slot
// (no heap allocation unless an operation fails and its message is kept:
// slots name their group by index); the start and the completion change the
// slot's state with one compare-and-swap each, without the mutex. N comes
// from TUTTI_TRACE_BUFFER (default 2000; 0 turns the recorder off).
//
// Thread safety: every method may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "debug/trace_dump.hpp"
#include "tutti/tensor.hpp"
#include "tutti/work.hpp"

namespace tutti::trace {

inline constexpr size_t kDefaultCapacity = 2000;
inline constexpr size_t kMaxCapacity = size_t{1} << 20;

// TUTTI_TRACE_BUFFER's value (null: unset -> default). Throws
// InvalidArgument for anything but an integer in [0, kMaxCapacity].
size_t parse_capacity(const char* text);

// What a ProcessGroup knows of an operation when it issues it.
struct OpInfo {
  OpType op = OpType::UNKNOWN;
  bool p2p = false;
  // Of the first input tensor; sizes null: no tensors (barrier). Borrowed
  // for the record() call only.
  DType dtype = DType::Float32;
  const std::vector<int64_t>* sizes = nullptr;
  int32_t num_tensors = 0;
  int64_t numel = 0;
  int32_t root = -1;
  int32_t peer = -1;
  int32_t tag = -1;
};

OpInfo describe_op(OpType op);  // no tensors
OpInfo describe_op(OpType op, const Tensor& input);
OpInfo describe_op(OpType op, const std::vector<Tensor>& inputs);
OpInfo describe_op(OpType op, const std::vector<SparseTensor>& inputs);

// A recorded operation, for messages ("allreduce #17 on group 'default'").
struct OpSummary {
  std::string group;
  uint64_t seq = 0;
  bool p2p = false;
  OpType op = OpType::UNKNOWN;

  std::string str() const;
};

// Wall-clock microseconds since the Unix epoch.
int64_t now_us();
// The same from the kernel's coarse clock: a few nanoseconds to read where
// now_us() costs ~30 (on a VM), but only as fine as the kernel's tick (1-4
// ms). Used for an operation's enqueue, start and end: three reads each.
int64_t coarse_now_us();

class FlightRecorder {
 public:
  explicit FlightRecorder(size_t capacity);
  FlightRecorder(const FlightRecorder&) = delete;
  FlightRecorder& operator=(const FlightRecorder&) = delete;

  // The process's recorder, sized from TUTTI_TRACE_BUFFER on first use.
  // Never destroyed (works may complete during static destruction).
  static FlightRecorder& global();

  size_t capacity() const { return slots_.size(); }
  bool enabled() const { return !slots_.empty(); }

  // Adds a group to the dump's list and returns its index for record().
  // A group registered again under the same name, rank and size (a new
  // instance of the same group) reuses its index.
  uint32_t register_group(const std::string& name, int rank, int size);

  // Records an operation as enqueued now; returns its id (> 0), or 0 when
  // the recorder is off.
  uint64_t record(uint32_t group, uint64_t seq, const OpInfo& info);
  // State changes of the entry `id`; no-ops once the ring has reused its
  // slot. started() does not move an entry back from a final state.
  void started(uint64_t id);
  void completed(uint64_t id);
  // Returns what the entry was, if the ring still holds it.
  bool failed(uint64_t id, const std::string& error, OpSummary* summary = nullptr);

  // Everything recorded, oldest first, with the process's identity.
  Dump snapshot(const std::string& reason) const;

 private:
  // A slot's id and state in one word (id * 4 + state), so that started()
  // and completed() can move an entry on without the mutex, and fail to
  // once the ring has reused the slot for a later id.
  static uint64_t key(uint64_t id, EntryState state) {
    return id * 4 + static_cast<uint64_t>(state);
  }
  struct Slot {
    std::atomic<uint64_t> key{0};  // id 0: never used
    uint32_t group = 0;
    uint64_t seq = 0;
    bool p2p = false;
    OpType op = OpType::UNKNOWN;
    bool has_tensors = false;
    DType dtype = DType::Float32;
    int32_t num_tensors = 0;
    int64_t numel = 0;
    uint8_t ndim = 0;
    int64_t sizes[kMaxRecordedDims] = {};
    int32_t root = -1;
    int32_t peer = -1;
    int32_t tag = -1;
    // Written under the mutex by record(), and by started() and completed()
    // without it, right after their state change (a snapshot in between
    // reads 0: see snapshot()).
    std::atomic<int64_t> enqueued_us{0};
    std::atomic<int64_t> started_us{0};
    std::atomic<int64_t> completed_us{0};
    std::string error;  // GUARDED_BY(mutex_)
  };
  struct Group {
    std::string name;
    int rank = -1;
    int size = 0;
    uint64_t collectives = 0;
    uint64_t p2p = 0;
  };

  // The slot of `id` (whoever holds it now), or null when the recorder is off.
  Slot* slot_of(uint64_t id);

  mutable std::mutex mutex_;
  std::vector<Slot>
      slots_;  // size fixed at construction; fields as Slot says, else GUARDED_BY(mutex_)
  uint64_t next_id_ = 1;       // GUARDED_BY(mutex_)
  std::vector<Group> groups_;  // GUARDED_BY(mutex_)
};

// Writes `dump` into dir/tutti-trace.rank<R>.json (pid<P> when the rank is
// unknown) through a temporary file and a rename, so a reader never sees
// half a file. Creates dir if needed. Returns the path; throws tutti::Error
// naming the path when it cannot write.
std::string write_dump(const Dump& dump, const std::string& dir);

// TUTTI_TRACE_DIR, or "" when unset.
std::string trace_dir_from_env();

}  // namespace tutti::trace
