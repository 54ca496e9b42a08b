#include "debug/flight_recorder.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>

#include "tutti/errors.hpp"

namespace tutti::trace {

size_t parse_capacity(const char* text) {
  if (text == nullptr || *text == '\0') return kDefaultCapacity;
  char* end = nullptr;
  errno = 0;
  const long long n = std::strtoll(text, &end, 10);
  if (end == text || *end != '\0' || errno != 0 || n < 0 ||
      static_cast<unsigned long long>(n) > kMaxCapacity) {
    throw InvalidArgument(fmt::format(
        "TUTTI_TRACE_BUFFER='{}' is not a number of entries between 0 (recorder off) and {}", text,
        kMaxCapacity));
  }
  return static_cast<size_t>(n);
}

OpInfo describe_op(OpType op) {
  OpInfo info;
  info.op = op;
  info.p2p = is_point_to_point(op);
  return info;
}

OpInfo describe_op(OpType op, const Tensor& input) {
  OpInfo info = describe_op(op);
  info.dtype = input.dtype();
  info.sizes = &input.sizes();
  info.num_tensors = 1;
  info.numel = input.numel();
  return info;
}

OpInfo describe_op(OpType op, const std::vector<Tensor>& inputs) {
  if (inputs.empty()) return describe_op(op);
  OpInfo info = describe_op(op, inputs[0]);
  info.num_tensors = static_cast<int32_t>(inputs.size());
  for (size_t i = 1; i < inputs.size(); ++i) info.numel += inputs[i].numel();
  return info;
}

OpInfo describe_op(OpType op, const std::vector<SparseTensor>& inputs) {
  OpInfo info = describe_op(op);
  if (inputs.empty()) return info;
  info.dtype = inputs[0].dtype();
  info.sizes = &inputs[0].sizes();  // the dense shape
  info.num_tensors = static_cast<int32_t>(inputs.size());
  for (const auto& t : inputs) info.numel += t.values().numel();
  return info;
}

std::string OpSummary::str() const {
  return fmt::format("{} #{}{} on group '{}'", to_string(op), seq, p2p ? " (p2p)" : "", group);
}

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int64_t coarse_now_us() {
#ifdef CLOCK_REALTIME_COARSE
  timespec now{};
  if (clock_gettime(CLOCK_REALTIME_COARSE, &now) == 0) {
    return static_cast<int64_t>(now.tv_sec) * 1000000 + now.tv_nsec / 1000;
  }
#endif
  return now_us();
}

FlightRecorder::FlightRecorder(size_t capacity) : slots_(std::min(capacity, kMaxCapacity)) {}

FlightRecorder& FlightRecorder::global() {
  static FlightRecorder* recorder =
      new FlightRecorder(parse_capacity(std::getenv("TUTTI_TRACE_BUFFER")));
  return *recorder;
}

uint32_t FlightRecorder::register_group(const std::string& name, int rank, int size) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (size_t i = 0; i < groups_.size(); ++i) {
    auto& g = groups_[i];
    if (g.name == name && g.rank == rank && g.size == size) return static_cast<uint32_t>(i);
  }
  groups_.push_back({name, rank, size, 0, 0});
  return static_cast<uint32_t>(groups_.size() - 1);
}

uint64_t FlightRecorder::record(uint32_t group, uint64_t seq, const OpInfo& info) {
  if (slots_.empty()) return 0;
  const int64_t now = coarse_now_us();
  std::lock_guard<std::mutex> lock(mutex_);
  const uint64_t id = next_id_++;
  Slot& slot = slots_[id % slots_.size()];
  // The earlier id's started() and completed() fail from here on.
  slot.key.store(0, std::memory_order_relaxed);
  slot.group = group;
  slot.seq = seq;
  slot.p2p = info.p2p;
  slot.op = info.op;
  slot.has_tensors = info.sizes != nullptr;
  slot.dtype = info.dtype;
  slot.num_tensors = info.num_tensors;
  slot.numel = info.numel;
  slot.ndim = 0;
  if (info.sizes) {
    const size_t n = std::min(info.sizes->size(), static_cast<size_t>(kMaxRecordedDims));
    for (size_t i = 0; i < n; ++i) slot.sizes[i] = (*info.sizes)[i];
    slot.ndim = static_cast<uint8_t>(n);
  }
  slot.root = info.root;
  slot.peer = info.peer;
  slot.tag = info.tag;
  slot.enqueued_us.store(now, std::memory_order_relaxed);
  slot.started_us.store(0, std::memory_order_relaxed);
  slot.completed_us.store(0, std::memory_order_relaxed);
  slot.error.clear();  // keeps its capacity
  slot.key.store(key(id, EntryState::ENQUEUED), std::memory_order_release);
  if (group < groups_.size()) {
    auto& g = groups_[group];
    if (info.p2p) {
      g.p2p = std::max(g.p2p, seq);
    } else {
      g.collectives = std::max(g.collectives, seq);
    }
  }
  return id;
}

FlightRecorder::Slot* FlightRecorder::slot_of(uint64_t id) {
  if (id == 0 || slots_.empty()) return nullptr;
  return &slots_[id % slots_.size()];
}

// Start and end times come from the coarse clock, as the enqueue time does;
// never before the time they follow.
void FlightRecorder::started(uint64_t id) {
  Slot* slot = slot_of(id);
  if (slot == nullptr) return;
  uint64_t expected = key(id, EntryState::ENQUEUED);
  if (!slot->key.compare_exchange_strong(expected, key(id, EntryState::STARTED),
                                         std::memory_order_acq_rel)) {
    return;  // already started or final, or the slot holds a later id
  }
  const int64_t now = coarse_now_us();
  slot->started_us.store(std::max(now, slot->enqueued_us.load(std::memory_order_relaxed)),
                         std::memory_order_relaxed);
}

void FlightRecorder::completed(uint64_t id) {
  Slot* slot = slot_of(id);
  if (slot == nullptr) return;
  uint64_t current = slot->key.load(std::memory_order_acquire);
  do {
    if (current / 4 != id) return;
    const auto state = static_cast<EntryState>(current % 4);
    if (state == EntryState::COMPLETED || state == EntryState::FAILED) return;
  } while (!slot->key.compare_exchange_weak(current, key(id, EntryState::COMPLETED),
                                            std::memory_order_acq_rel));
  const int64_t now = coarse_now_us();
  slot->completed_us.store(std::max({now, slot->started_us.load(std::memory_order_relaxed),
                                     slot->enqueued_us.load(std::memory_order_relaxed)}),
                           std::memory_order_relaxed);
}

bool FlightRecorder::failed(uint64_t id, const std::string& error, OpSummary* summary) {
  const int64_t now = coarse_now_us();
  std::lock_guard<std::mutex> lock(mutex_);
  Slot* slot = slot_of(id);
  if (slot == nullptr) return false;
  // record() rewrites a slot only under the mutex, so the id holds.
  uint64_t current = slot->key.load(std::memory_order_acquire);
  do {
    if (current / 4 != id) return false;
  } while (!slot->key.compare_exchange_weak(current, key(id, EntryState::FAILED),
                                            std::memory_order_acq_rel));
  slot->completed_us.store(std::max({now, slot->started_us.load(std::memory_order_relaxed),
                                     slot->enqueued_us.load(std::memory_order_relaxed)}),
                           std::memory_order_relaxed);
  slot->error = error;
  if (summary) {
    summary->group = slot->group < groups_.size() ? groups_[slot->group].name : "?";
    summary->seq = slot->seq;
    summary->p2p = slot->p2p;
    summary->op = slot->op;
  }
  return true;
}

namespace {

std::string host_name() {
  char buffer[256] = {};
  if (gethostname(buffer, sizeof(buffer) - 1) != 0) return "unknown";
  return buffer;
}

}  // namespace

Dump FlightRecorder::snapshot(const std::string& reason) const {
  Dump dump;
  dump.pid = static_cast<int64_t>(getpid());
  dump.hostname = host_name();
  dump.reason = reason;
  dump.dumped_us = now_us();
  dump.capacity = slots_.size();
  std::lock_guard<std::mutex> lock(mutex_);
  // The process's rank: its rank in the first top-level group ("a/1" names
  // a subgroup of "a").
  for (const auto& g : groups_) {
    dump.groups.push_back({g.name, g.rank, g.size, g.collectives, g.p2p});
    if (dump.world_size == 0 && g.name.find('/') == std::string::npos) {
      dump.rank = g.rank;
      dump.world_size = g.size;
    }
  }
  if (dump.world_size == 0 && !groups_.empty()) {
    dump.rank = groups_[0].rank;
    dump.world_size = groups_[0].size;
  }
  const uint64_t recorded = next_id_ - 1;
  const uint64_t kept = std::min<uint64_t>(recorded, slots_.size());
  dump.dropped = recorded - kept;
  dump.entries.reserve(kept);
  for (uint64_t id = recorded - kept + 1; id <= recorded; ++id) {
    const Slot& slot = slots_[id % slots_.size()];
    const uint64_t slot_key = slot.key.load(std::memory_order_acquire);
    Entry e;
    e.id = slot_key / 4;
    e.group = slot.group < groups_.size() ? groups_[slot.group].name : "?";
    e.seq = slot.seq;
    e.p2p = slot.p2p;
    e.op = slot.op;
    e.has_tensors = slot.has_tensors;
    e.dtype = slot.dtype;
    e.num_tensors = slot.num_tensors;
    e.numel = slot.numel;
    e.sizes.assign(slot.sizes, slot.sizes + slot.ndim);
    e.root = slot.root;
    e.peer = slot.peer;
    e.tag = slot.tag;
    e.state = static_cast<EntryState>(slot_key % 4);
    e.enqueued_us = slot.enqueued_us.load(std::memory_order_relaxed);
    e.started_us = slot.started_us.load(std::memory_order_relaxed);
    e.completed_us = slot.completed_us.load(std::memory_order_relaxed);
    // A state changed a moment ago whose time is not written yet.
    if (e.state == EntryState::STARTED && e.started_us == 0) e.started_us = e.enqueued_us;
    if ((e.state == EntryState::COMPLETED || e.state == EntryState::FAILED) &&
        e.completed_us == 0) {
      e.completed_us = std::max(e.started_us, e.enqueued_us);
    }
    e.error = slot.error;
    dump.entries.push_back(std::move(e));
  }
  return dump;
}

std::string write_dump(const Dump& dump, const std::string& dir) {
  namespace fs = std::filesystem;
  if (dir.empty()) {
    throw InvalidArgument(
        "writing the flight recorder: no directory given and TUTTI_TRACE_DIR is not set");
  }
  const std::string name = dump.rank >= 0 ? fmt::format("tutti-trace.rank{}.json", dump.rank)
                                          : fmt::format("tutti-trace.pid{}.json", dump.pid);
  const fs::path path = fs::path(dir) / name;
  std::error_code ec;
  fs::create_directories(dir, ec);  // an existing directory is fine
  // Unique per call: a signal's dump and a failure's may be written at once.
  static std::atomic<uint64_t> writes{0};
  const fs::path temp =
      fs::path(dir) / fmt::format(".{}.tmp.{}.{}", name, getpid(), writes.fetch_add(1));
  const std::string text = to_json(dump);
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    throw Error(fmt::format("writing the flight recorder of rank {}: cannot create {}: {}",
                            dump.rank, temp.string(), std::strerror(errno)));
  }
  size_t written = 0;
  int write_errno = 0;
  while (written < text.size()) {
    const ssize_t n = ::write(fd, text.data() + written, text.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      write_errno = errno;
      break;
    }
    written += static_cast<size_t>(n);
  }
  ::close(fd);
  if (write_errno != 0 || std::rename(temp.c_str(), path.c_str()) != 0) {
    const int saved = write_errno != 0 ? write_errno : errno;
    ::unlink(temp.c_str());
    throw Error(fmt::format("writing the flight recorder of rank {} to {}: {}", dump.rank,
                            path.string(), std::strerror(saved)));
  }
  return path.string();
}

std::string trace_dir_from_env() {
  const char* dir = std::getenv("TUTTI_TRACE_DIR");
  return dir ? std::string(dir) : std::string();
}

}  // namespace tutti::trace
