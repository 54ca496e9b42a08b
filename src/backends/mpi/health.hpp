// Which ranks of an MPI group still respond, asked only after a deadline
// has passed (no cost on an operation's path).
//
// Every group answers status requests from its peers on a private
// communicator (the group's control communicator, tags apart from
// monitored_barrier's): its watchdog calls serve() every tick. A rank whose
// operation timed out calls diagnose(): it asks every peer for its status
// ("in allreduce #3", "idle after #2") and waits a bounded grace for the
// answers, serving its peers' requests meanwhile, so that two ranks asking
// each other at once both hear back. A rank that does not answer within the
// grace is stopped, dead, or cut off; the others say what they are doing.
//
// Threads: MPI calls from the watchdog while the worker is inside a blocking
// collective need MPI_THREAD_MULTIPLE. Under MPI_THREAD_SERIALIZED, every
// MPI call holds one lock, which a blocking collective keeps for its whole
// run: serve() then skips its turn and diagnose() says it cannot ask.
#pragma once

#include <mpi.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "tutti/work.hpp"

namespace tutti::mpi_backend {

// What a rank of the group is doing, as it answers a status request.
struct RankStatus {
  enum State : int64_t { kIdle = 0, kRunning = 1, kBroken = 2 };
  State state = kIdle;
  uint64_t sequence = 0;        // the collective running, else the last one run
  OpType op = OpType::UNKNOWN;  // the collective running (kRunning, kBroken)
  int64_t running_for_ms = 0;   // how long it has been running
};

// The grace diagnose() gives peers to answer, for an operation of `timeout`:
// half of it, at least 250 ms and at most 2 s.
std::chrono::milliseconds diagnosis_grace(std::chrono::milliseconds timeout);

class Health {
 public:
  // `comm` is the group's control communicator (not owned); `rank` and
  // `size` are this process's rank in it and its size.
  Health(MPI_Comm comm, int rank, int size);
  ~Health();
  Health(const Health&) = delete;
  Health& operator=(const Health&) = delete;

  // Answers every status request that has arrived, with `mine`. Never
  // blocks: returns at once when another thread is inside diagnose() (which
  // serves) or MPI's lock is taken (MPI_THREAD_SERIALIZED).
  void serve(const RankStatus& mine);

  // Asks `peers` (every other rank when empty) for their status and waits up
  // to `grace` for the answers, serving requests with `mine` meanwhile.
  // Thread-safe; never throws.
  struct Diagnosis {
    // The ranks that did not answer. One that sent its own request
    // meanwhile is alive (its answer was late) and is not among them.
    std::vector<int> silent;
    // For an error message: "rank 2 did not answer a status request within
    // 500 ms (stopped, dead or cut off); rank 1 is in allreduce #3 (for
    // 1003 ms)".
    std::string text;
  };
  Diagnosis diagnose(const RankStatus& mine, std::vector<int> peers,
                     std::chrono::milliseconds grace);

  // Withdraws the pending receive (unless MPI's lock is held for good by a
  // stuck collective, MPI_THREAD_SERIALIZED); later calls do nothing.
  // REQUIRES: MPI not finalized, called before the communicator is freed.
  void close();

 private:
  // A message posted with MPI_Isend; its buffer must live until it completes.
  struct Outbound {
    MPI_Request request = MPI_REQUEST_NULL;
    std::unique_ptr<int64_t[]> buffer;
  };

  // REQUIRES: mutex_ held, and MPI's lock (CallLock) held.
  void serve_locked(const RankStatus& mine);
  void send_locked(int peer, int tag, std::vector<int64_t> words);
  void reap_sends_locked();

  const MPI_Comm comm_;
  const int rank_;
  const int size_;
  std::mutex mutex_;
  bool closed_ = false;                           // GUARDED_BY(mutex_)
  int64_t next_query_ = 0;                        // GUARDED_BY(mutex_)
  int64_t query_in_ = 0;                          // GUARDED_BY(mutex_): the request being received
  MPI_Request query_request_ = MPI_REQUEST_NULL;  // GUARDED_BY(mutex_)
  std::vector<Outbound> sends_;                   // GUARDED_BY(mutex_)
  // During diagnose(): the ranks whose requests serve_locked() answered.
  // A peer that asked is alive even if its own answer comes late.
  std::vector<int>* askers_ = nullptr;  // GUARDED_BY(mutex_)
};

}  // namespace tutti::mpi_backend
