// What the fault tests share: a block of memory every forked rank sees (to
// record when a fault was injected and when each survivor noticed), and a
// thread that signals its own process.
#pragma once

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>

namespace tutti::testing {

// CLOCK_MONOTONIC, the same in every process of the machine.
inline int64_t monotonic_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Shared by the test process and every rank it forks (MAP_SHARED before the
// fork); lock-free atomics work across processes there.
struct FaultRecord {
  static constexpr int kMaxRanks = 8;
  std::atomic<int64_t> fault_ns{0};  // when the faulty rank signalled itself
  std::atomic<int> faulty_pid{0};
  std::atomic<int> survivors_done{0};
  std::atomic<int64_t> detected_ns[kMaxRanks] = {};

  // Milliseconds from the fault to rank r's error; -1 if either is missing.
  double detection_ms(int r) const {
    const int64_t f = fault_ns.load();
    const int64_t d = detected_ns[r].load();
    return f == 0 || d == 0 ? -1.0 : static_cast<double>(d - f) / 1e6;
  }
};

// A FaultRecord in an anonymous shared mapping, unmapped with the owner.
class SharedFaultRecord {
 public:
  SharedFaultRecord() {
    void* p = ::mmap(nullptr, sizeof(FaultRecord), PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("mmap of the shared fault record failed");
    record_ = new (p) FaultRecord();
  }
  ~SharedFaultRecord() {
    record_->~FaultRecord();
    ::munmap(record_, sizeof(FaultRecord));
  }
  SharedFaultRecord(const SharedFaultRecord&) = delete;
  SharedFaultRecord& operator=(const SharedFaultRecord&) = delete;
  FaultRecord& operator*() const { return *record_; }
  FaultRecord* operator->() const { return record_; }

 private:
  FaultRecord* record_;
};

// After `delay`, records the time and sends `signal` to this whole process
// (SIGKILL kills it, SIGSTOP stops every thread), while the caller's thread
// goes on with whatever it was doing.
inline void signal_self_after(std::chrono::milliseconds delay, int signal, FaultRecord& record) {
  record.faulty_pid = static_cast<int>(::getpid());
  std::thread([delay, signal, &record] {
    std::this_thread::sleep_for(delay);
    record.fault_ns = monotonic_ns();
    ::kill(::getpid(), signal);
  }).detach();
}

inline std::string signal_name(int signal) { return signal == SIGKILL ? "SIGKILL" : "SIGSTOP"; }

}  // namespace tutti::testing
