// Work: the handle of one asynchronous operation, and Future: its value.
//
// Every operation returns a Work at once and runs in the background. The
// backend that runs it completes it exactly once, through Work::finish();
// nothing else changes what a user sees. All methods are thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "tutti/options.hpp"
#include "tutti/tensor.hpp"

namespace tutti {

enum class OpType : uint8_t {
  BROADCAST,
  ALLREDUCE,
  ALLREDUCE_SPARSE,
  ALLREDUCE_COALESCED,
  REDUCE,
  ALLGATHER,
  ALLGATHER_INTO_TENSOR,
  ALLGATHER_COALESCED,
  ALLGATHER_INTO_TENSOR_COALESCED,
  GATHER,
  SCATTER,
  REDUCE_SCATTER,
  REDUCE_SCATTER_TENSOR,
  REDUCE_SCATTER_TENSOR_COALESCED,
  ALLTOALL_BASE,
  ALLTOALL,
  SEND,
  RECV,
  RECV_ANYSOURCE,
  BARRIER,
  MONITORED_BARRIER,
  UNKNOWN,
};
inline constexpr int kNumOpTypes = static_cast<int>(OpType::UNKNOWN) + 1;

const char* to_string(OpType op);   // "allreduce", "recv_anysource", ...
bool is_point_to_point(OpType op);  // send, recv, recv_anysource

// Watches the life of Works (the flight recorder, src/debug). One observer
// serves many works; `token` tells them apart. Called without any lock of the
// Work held, on whichever thread starts or completes it.
class WorkObserver {
 public:
  virtual ~WorkObserver() = default;
  // The engine began to run the operation (at most once per work).
  virtual void on_started(uint64_t token) noexcept = 0;
  // The operation completed (error null) or failed. Called exactly once per
  // observed work. When `can_amend` is true the call comes before any thread
  // can see the work complete, and the returned error replaces `error` (it
  // must keep the error's type); otherwise the return value is ignored.
  // May block, but only briefly (the work's waiters wait for it).
  virtual std::exception_ptr on_finished(uint64_t token, std::exception_ptr error,
                                         bool can_amend) noexcept = 0;
};

// The value of an operation: its output tensors, or an error.
class Future {
 public:
  Future() = default;
  Future(const Future&) = delete;
  Future& operator=(const Future&) = delete;

  // Blocks until complete; rethrows the error if it failed.
  void wait();
  // Waits at most `timeout`; true if complete. Does not rethrow.
  bool wait_for(std::chrono::milliseconds timeout);
  bool completed() const;
  bool has_error() const;
  std::exception_ptr exception() const;
  // Waits, then returns the outputs or rethrows the error.
  std::vector<Tensor> value();

  // Runs cb(*this) exactly once when the future completes: at once on the
  // calling thread if it already has, else on the thread that completes it.
  // Returns a future that completes after cb returns, with this future's
  // value, or with cb's exception if it threw.
  std::shared_ptr<Future> then(std::function<void(Future&)> cb);

  // Completion; the first call wins, later ones return false and change
  // nothing.
  bool mark_completed(std::vector<Tensor> value);
  bool set_error(std::exception_ptr error);

 private:
  bool complete(std::vector<Tensor> value, std::exception_ptr error);

  mutable std::mutex mutex_;
  std::condition_variable done_cv_;
  bool completed_ = false;                               // GUARDED_BY(mutex_)
  std::vector<Tensor> value_;                            // GUARDED_BY(mutex_)
  std::exception_ptr error_;                             // GUARDED_BY(mutex_)
  std::vector<std::function<void(Future&)>> callbacks_;  // GUARDED_BY(mutex_)
};

class Work {
 public:
  // `description` names the operation for messages, e.g.
  // "allreduce #17 on group 'default' (rank 1 of 4)".
  Work(OpType op, std::string description, std::vector<Tensor> outputs = {});
  // The same, with the description "<op> #<sequence> on <where>" formatted
  // only when something asks for it (an error, mostly): `where` is shared by
  // the operations of one group, e.g. "group 'default' rank 1/4 (mpi)".
  Work(OpType op, uint64_t sequence, std::shared_ptr<const std::string> where,
       std::vector<Tensor> outputs = {});
  virtual ~Work();
  Work(const Work&) = delete;
  Work& operator=(const Work&) = delete;

  bool is_completed();
  bool is_success() const;               // completed without error
  std::exception_ptr exception() const;  // null unless it failed
  int source_rank() const;               // recv_anysource: the sender; else -1
  std::vector<Tensor> result();          // the output tensors
  OpType op_type() const { return op_; }
  const std::string& description() const;

  // Blocks until done and rethrows the operation's error. With a timeout
  // (> 0), throws TimeoutError naming the operation when it passes, after
  // aborting the operation. kNoTimeout waits without limit; the operation's
  // own deadline still applies. Returns true.
  bool wait(std::chrono::milliseconds timeout = kNoTimeout);
  // Cancels a pending operation: wait() then throws DistBackendError. No
  // effect on a completed one.
  void abort();
  std::shared_ptr<Future> get_future();

  // Attaches the observer (once; set by the ProcessGroup right after the
  // backend returns the work). Events that already happened are reported at
  // once, on this thread; an error the work already completed with is then
  // reported with can_amend false.
  void set_observer(std::shared_ptr<WorkObserver> observer, uint64_t token);

 protected:
  // Completes the work: the single place where its state changes. Returns
  // false (and changes nothing) if it was already complete. Thread-safe.
  bool finish(std::exception_ptr error = nullptr);
  // Before finish(): outputs for result() and the future.
  void set_outputs(std::vector<Tensor> outputs);
  void set_source_rank(int rank);
  // The outputs given to the constructor, for the engine's job to write
  // their data before finish() (so the job need not hold copies). The list
  // itself must not change; not for an engine that calls set_outputs().
  std::vector<Tensor>& output_tensors() { return outputs_; }
  // The engine calls this when it actually begins the operation (leaves its
  // queue, or posts the transfer). Cheap; only the first call counts.
  void mark_started();
  // wait() polls for this long (yielding the CPU) before it sleeps: for
  // engines whose operations often finish within microseconds, where waking
  // a sleeping thread would cost more than the operation.
  void set_spin_before_sleep(std::chrono::microseconds spin) { spin_ = spin; }
  // Asks the engine to stop the operation; called by abort() and by a timed
  // out wait() before they finish the work. May run on any thread.
  virtual void cancel() {}
  // Called by wait() before it polls or sleeps, on the waiting thread: an
  // engine may run the operation right there instead of handing it to a
  // thread of its own, which costs more than an operation of a few
  // microseconds. `limit` is the wait's own timeout (kNoTimeout: none); the
  // engine may run the operation only if it is sure to return within it
  // (the operation's own deadline is no later), so a timed wait keeps its
  // promise.
  virtual void help_on_wait(std::chrono::milliseconds limit) { (void)limit; }
  // Called by is_completed() while the work is not done: the caller polls
  // rather than waits, so an engine that holds operations back for a waiting
  // thread (help_on_wait) should start this one on a thread of its own now.
  virtual void expedite() {}

 private:
  const OpType op_;
  const uint64_t sequence_ = 0;                     // with where_: a lazy description
  const std::shared_ptr<const std::string> where_;  // null: description_ given
  mutable std::once_flag described_;
  mutable std::string description_;    // set in the constructor or once, lazily
  std::chrono::microseconds spin_{0};  // set before the work is shared
  std::atomic<bool> done_{false};      // completed_, readable without the lock

  mutable std::mutex mutex_;
  std::condition_variable done_cv_;
  bool completed_ = false;          // GUARDED_BY(mutex_)
  std::exception_ptr error_;        // GUARDED_BY(mutex_); set before done_, then fixed
  std::vector<Tensor> outputs_;     // GUARDED_BY(mutex_)
  int source_rank_ = -1;            // GUARDED_BY(mutex_)
  std::shared_ptr<Future> future_;  // GUARDED_BY(mutex_)
  // finish() claimed the work and is consulting the observer; completed_
  // follows within the observer's (bounded) time.
  bool finishing_ = false;                  // GUARDED_BY(mutex_)
  bool observer_notified_ = false;          // GUARDED_BY(mutex_)
  std::shared_ptr<WorkObserver> observer_;  // GUARDED_BY(mutex_)
  uint64_t observer_token_ = 0;             // GUARDED_BY(mutex_); fixed once observer_ptr_ is set
  // The start is reported without the lock (mark_started).
  std::atomic<WorkObserver*> observer_ptr_{nullptr};  // observer_, set once
  std::atomic<bool> started_{false};
  std::atomic<bool> started_reported_{false};
};

}  // namespace tutti
