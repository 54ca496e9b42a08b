#include "backends/gloo/backend.hpp"

#include <fmt/format.h>
#include <gloo/common/error.h>
#include <gloo/common/logging.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/prefix_store.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <mutex>

#include "backends/gloo/algorithms.hpp"
#include "backends/gloo/device.hpp"
#include "backends/gloo/link_watch.hpp"
#include "backends/gloo/rendezvous.hpp"
#include "backends/gloo/schedules.hpp"
#include "backends/gloo/store_adapter.hpp"
#include "backends/gloo/work.hpp"
#include "core/env_parse.hpp"
#include "core/error_context.hpp"
#include "core/logging.hpp"
#include "tutti/errors.hpp"
#include "tutti/prefix_store.hpp"
#include "tutti/tcp_store.hpp"

namespace tutti::gloo_backend {
namespace {

// gloo writes to its sockets with writev(), which raises SIGPIPE when the
// peer has gone; by default that kills the process before gloo can report
// the broken connection. Python ignores SIGPIPE, so PyTorch never meets
// this; a C++ program must. A handler the program installed is kept.
void ignore_sigpipe_once(int rank, const std::string& group) {
  static std::once_flag once;
  std::call_once(once, [&] {
    struct sigaction current {};
    if (::sigaction(SIGPIPE, nullptr, &current) != 0 || current.sa_handler != SIG_DFL) return;
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    sigemptyset(&ignore.sa_mask);
    ::sigaction(SIGPIPE, &ignore, nullptr);
    TUTTI_LOG(LogLevel::INFO, rank, group,
              "gloo: SIGPIPE is now ignored, so that a peer that exits is reported as an error");
  });
}

// Set by the rank that serves the group's TCPStore.
constexpr const char* kStoreHostKey = "tutti/gloo/store_host";

// "allreduce #7" of "allreduce #7 on group 'default' rank 1/3 (gloo)".
std::string short_name(const std::string& description) {
  return description.substr(0, description.find(" on group '"));
}

}  // namespace

AllreduceAlgorithm parse_algorithm(const std::string& name) {
  if (name == "auto") return AllreduceAlgorithm::AUTO;
  if (name == "ring") return AllreduceAlgorithm::RING;
  if (name == "doubling") return AllreduceAlgorithm::DOUBLING;
  if (name == "gloo-ring") return AllreduceAlgorithm::GLOO_RING;
  if (name == "gloo-bcube" || name == "bcube") return AllreduceAlgorithm::GLOO_BCUBE;
  throw InvalidArgument(fmt::format(
      "unknown gloo allreduce algorithm '{}'; expected auto, ring, doubling, gloo-ring or "
      "gloo-bcube",
      name));
}

Options Options::from_env(std::chrono::milliseconds timeout) {
  Options options;
  options.timeout = timeout;
  if (const char* threads = std::getenv("TUTTI_GLOO_THREADS")) {
    const std::optional<int> n = env_parse::parse_thread_count(threads);
    if (!n) {
      throw InvalidArgument(
          fmt::format("TUTTI_GLOO_THREADS='{}' is not a thread count between 1 and 64", threads));
    }
    options.threads = *n;
  }
  if (const char* algorithm = std::getenv("TUTTI_GLOO_ALLREDUCE")) {
    options.allreduce_algorithm = parse_algorithm(algorithm);
  }
  return options;
}

std::exception_ptr translate_current_exception(const std::string& what,
                                               std::chrono::milliseconds timeout) {
  if (auto tutti_error = with_context(what)) return tutti_error;
  try {
    throw;
  } catch (const ::gloo::IoException& e) {
    const std::string message = e.what();
    if (message.find("imed out") != std::string::npos) {
      return std::make_exception_ptr(TimeoutError(
          fmt::format("{} timed out after {} ms: a peer did not take part in time ({})", what,
                      timeout.count(), message)));
    }
    return std::make_exception_ptr(DistNetworkError(fmt::format(
        "{} failed: the connection to a peer broke; that rank may have exited or crashed "
        "({})",
        what, message)));
  } catch (const std::exception& e) {
    return std::make_exception_ptr(DistBackendError(fmt::format("{} failed: {}", what, e.what())));
  } catch (...) {
    return std::make_exception_ptr(DistBackendError(fmt::format("{} failed", what)));
  }
}

GlooBackend::GlooBackend(std::shared_ptr<Store> store, int rank, int size, std::string group_name,
                         Options options)
    : Backend(rank, size),
      store_(std::move(store)),
      group_name_(std::move(group_name)),
      where_(std::make_shared<const std::string>(
          fmt::format("group '{}' rank {}/{} (gloo)", group_name_, rank, size))),
      options_(std::move(options)) {
  ignore_sigpipe_once(rank, group_name_);
  if (options_.devices.empty()) options_.devices = default_devices();
  if (options_.threads < 1) {
    throw InvalidArgument(
        fmt::format("gloo: threads must be at least 1, got {}", options_.threads));
  }
  // The rank whose process serves the store says so, for errors raised
  // when the store is gone (see census.hpp).
  const TCPStore* tcp_store = find_tcp_store(*store_);
  if (tcp_store != nullptr && tcp_store->is_server()) {
    store_->set(kStoreHostKey, std::to_string(rank));
  }
  StoreAdapter adapter(store_);
  for (size_t i = 0; i < options_.devices.size(); ++i) {
    // Each context rendezvouses under its own prefix of the group's store.
    ::gloo::rendezvous::PrefixStore prefixed(std::to_string(i), adapter);
    auto context = std::make_shared<::gloo::rendezvous::Context>(rank, size);
    // gloo waits up to five times this for each connection to form (its
    // Pair::waitUntilConnected), and pairs keep the timeout they were made
    // with, so connecting can take that long.
    context->setTimeout(options_.timeout);
    try {
      context->connectFullMesh(prefixed, options_.devices[i]);
    } catch (...) {
      const std::string what =
          fmt::format("gloo: connecting rank {} of group '{}' to its {} peer{} over {}", rank,
                      group_name_, size - 1, size == 2 ? "" : "s", options_.devices[i]->str());
      std::exception_ptr error;
      try {
        throw;
      } catch (const ::gloo::IoException& e) {
        // Not a broken connection (there was none yet): say what gloo says.
        error = std::make_exception_ptr(DistNetworkError(fmt::format("{}: {}", what, e.what())));
      } catch (...) {
        error = translate_current_exception(what, options_.timeout);
      }
      tutti::PrefixStore device_keys(std::to_string(i), store_);
      std::rethrow_exception(
          with_detail(error, explain_connect_failure(device_keys, rank, size, message_of(error))));
    }
    contexts_.push_back(std::move(context));
  }
  // Every rank has published its address, so the host's key is there.
  int store_host = -1;
  if (tcp_store != nullptr && store_->check({kStoreHostKey})) {
    const auto value = store_->get(kStoreHostKey);
    store_host = std::atoi(std::string(value.begin(), value.end()).c_str());
  }
  // The inboxes are registered before this rank runs an operation; a peer
  // that sends to one sooner waits in gloo's network thread until it is.
  const std::vector<int> partners = algorithms::eager_partners(rank, size);
  for (const auto& context : contexts_) eager_.push_back(EagerChannel::create(context, partners));
  census_ = std::make_unique<Census>(store_, rank, size, describe_store(*store_), store_host);
  link_watch_ = std::make_unique<LinkWatch>();
  for (int i = 0; i < options_.threads; ++i) workers_.emplace_back([this] { worker_loop(); });
  TUTTI_LOG(LogLevel::INFO, rank, group_name_, "gloo: connected {} device(s), {} thread(s)",
            contexts_.size(), workers_.size());
}

GlooBackend::~GlooBackend() {
  closing_ = true;
  std::deque<Queued> abandoned;
  {
    std::lock_guard<std::mutex> lock(queue_mutex_);
    stopping_ = true;
    abandoned.swap(queue_);
  }
  grace_timer_.stop();
  for (auto& queued : abandoned) {
    auto& work = queued.work;
    work->complete(std::make_exception_ptr(DistBackendError(
        fmt::format("{} was not started: its process group was destroyed", work->description()))));
  }
  bool in_flight = running_.load() > 0;
  {
    std::lock_guard<std::mutex> lock(p2p_mutex_);
    for (auto& weak : p2p_pending_) {
      auto work = weak.lock();
      if (work == nullptr || work->is_completed()) continue;
      in_flight = true;
      work->fail_and_cancel(std::make_exception_ptr(DistBackendError(fmt::format(
          "{} did not complete: its process group was destroyed", work->description()))));
    }
    p2p_pending_.clear();
  }
  // Running operations fail fast once the connections are closed. gloo's
  // close is a hard one (a reset, which drops what the kernel has not sent
  // yet), so it is kept for that case: with nothing in flight, the pairs'
  // destructors close each connection the ordinary way, and a last message
  // still queued in the kernel (this rank's part of the operation it just
  // finished) reaches the peer.
  if (in_flight) {
    for (auto& context : contexts_) {
      try {
        context->closeConnections();
      } catch (...) {
      }
    }
  }
  for (auto& worker : workers_) worker.join();
  if (!in_flight) {
    // Destroying a pair closes its socket under the pair's lock and waits
    // for gloo's network thread to let go of it. Done here, before the
    // members go, no gloo thread can still be writing a late message into
    // a receive posted ahead (eager.hpp) when its memory is freed. First
    // every thread that may look at a pair stops: the send and receive
    // waiters, then the link watch (which reads pairs of waits it found
    // slow, and no wait is left to register with it).
    waiters_.stop();
    link_watch_.reset();
    for (auto& context : contexts_) {
      for (int peer = 0; peer < context->size; ++peer) context->getPair(peer).reset();
    }
  }
}

bool GlooBackend::supports(OpType op) const { return op != OpType::UNKNOWN; }

namespace {

// Settles an operation's ticket when it ends, whether or not it used the
// channel (a no-op if it already did).
class EagerSettle {
 public:
  explicit EagerSettle(const OpContext& ctx) : ctx_(ctx) {}
  ~EagerSettle() { ctx_.skip_eager_turn(); }
  EagerSettle(const EagerSettle&) = delete;
  EagerSettle& operator=(const EagerSettle&) = delete;

 private:
  const OpContext& ctx_;
};

// The operations that may run through the eager channel (schedules.hpp):
// those that make one call of doubling_allreduce or ring_allgather, since a
// ticket is good for one turn. (allgather_into_tensor_coalesced makes one
// per tensor.)
bool takes_eager_turn(OpType op) {
  switch (op) {
    case OpType::ALLREDUCE:
    case OpType::ALLREDUCE_COALESCED:
    case OpType::ALLGATHER:
    case OpType::ALLGATHER_INTO_TENSOR:
    case OpType::ALLGATHER_COALESCED:
      return true;
    default:
      return false;
  }
}

// Handing an operation to a worker thread costs a wake-up on each side,
// more than a small collective, so a queued operation is left this long for
// the thread that waits on it to run it (Work::wait) before a worker does.
constexpr std::chrono::microseconds kInlineGrace{500};
// Once the program has waited on this many operations in a row, each before
// its grace ran out, the grace grows to kSteadyGrace: the timer, left armed
// when the queue empties, then fires (and wakes the workers for nothing) once
// per 16 ms of such traffic rather than once per 500 µs (docs/perf.md,
// "The grace timer"). The first operation a worker has to run, and any
// operation polled (Work::is_completed), brings the grace back to
// kInlineGrace.
constexpr uint32_t kSteadyStreak = 16;
constexpr std::chrono::microseconds kSteadyGrace{16000};
// In a streak, the timer left armed would still fire once per kSteadyGrace
// and wake both workers for nothing (about 125 wake-ups a second per rank),
// so a queue that empties with the timer due within this margin disarms
// it: two system calls per 12 ms of traffic instead of two wake-ups per
// 16 ms. What that does to the 1 MiB allreduce is within this machine's
// noise (docs/perf.md, "Session 17").
constexpr std::chrono::microseconds kDisarmMargin = kSteadyGrace / 4;

}  // namespace

std::shared_ptr<Work> GlooBackend::enqueue(OpType op, std::chrono::milliseconds timeout,
                                           std::vector<Tensor> outputs, Job job) {
  std::shared_ptr<GlooWork> work;
  {
    std::lock_guard<std::mutex> lock(queue_mutex_);
    const uint64_t sequence = ++next_sequence_;
    work = std::make_shared<GlooWork>(op, sequence, where_, std::move(outputs), resolve(timeout));
    OpContext ctx;
    ctx.tag = static_cast<uint32_t>(sequence);
    ctx.context = contexts_[sequence % contexts_.size()];
    ctx.timeout = work->timeout();
    ctx.allreduce_algorithm = options_.allreduce_algorithm;
    ctx.retired = &retired_;
    ctx.link_watch = link_watch_.get();
    ctx.scratch = &scratch_;
    // gloo enforces the timeout inside the call, so the waiting thread can
    // run it with the same guarantee as a worker.
    work->run_on_waiter(weak_from_this());
    // A Work its caller drops still runs: the other ranks take part in it.
    const auto now = std::chrono::steady_clock::now();
    const auto ready_at = now + (waited_streak_ >= kSteadyStreak ? kSteadyGrace : kInlineGrace);
    // Allreduces and allgathers take their turn on the context's
    // small-message channel in the order they are queued, the same on
    // every rank (eager.hpp).
    if (takes_eager_turn(op)) {
      ctx.eager = eager_[sequence % eager_.size()].get();
      if (ctx.eager != nullptr) ctx.eager_ticket = ctx.eager->take_ticket();
    }
    queue_.push_back({work,
                      [ctx, job = std::move(job), raw = work.get()] {
                        const EagerSettle settle(ctx);
                        job(ctx, *raw);
                      },
                      now, ready_at});
    // A new head starts its grace; a later operation's follows the head's.
    if (queue_.size() == 1) fire_by(ready_at);
  }
  return work;
}

std::exception_ptr GlooBackend::fail_current(const std::string& what,
                                             std::chrono::milliseconds timeout) {
  auto error = translate_current_exception(what, timeout);
  const bool timed_out = holds<TimeoutError>(error);
  if (closing_ || (!timed_out && !holds<DistNetworkError>(error))) return error;
  if (!timed_out) {
    // gloo has lost a peer; the group cannot complete another collective.
    // Closing the other connections fails the ranks blocked on this one now
    // rather than at their timeout, so they answer the roll call too.
    for (auto& context : contexts_) {
      try {
        context->closeConnections();
      } catch (...) {
      }
    }
  }
  if (!options_.roll_call) return error;
  const std::string verdict =
      census_->roll_call(short_name(what), timed_out, Census::grace(timeout));
  if (!timed_out && census_->peer_timed_out()) {
    // The connection that broke was most likely closed by gloo on a rank
    // whose part of this operation timed out: the stall that timed it out
    // stops this rank too, which the caller must see as a timeout.
    error = std::make_exception_ptr(TimeoutError(
        fmt::format("{}: a rank timed out in this operation, and gloo closes every connection of "
                    "a rank whose operation times out; before this rank's own timeout of {} ms it "
                    "saw: {}",
                    what, timeout.count(), message_of(error))));
  }
  return with_detail(error, verdict);
}

void GlooBackend::run(Queued& queued) {
  GlooWork& work = *queued.work;
  retired_.next_operation();  // drops old operations' buffers (see Retired)
  try {
    work.started();
    queued.run();
    work.complete();
  } catch (...) {
    auto error = fail_current(work.description(), work.timeout());
    TUTTI_LOG(LogLevel::ERROR, rank(), group_name_, "{}", message_of(error));
    work.complete(error);
  }
  running_.fetch_sub(1, std::memory_order_relaxed);
}

void GlooBackend::help(const GlooWork* target, std::chrono::milliseconds limit) {
  for (;;) {
    Queued next;
    {
      std::lock_guard<std::mutex> lock(queue_mutex_);
      auto it = std::find_if(queue_.begin(), queue_.end(),
                             [&](const Queued& q) { return q.work.get() == target; });
      if (it == queue_.end()) return;  // taken by a worker, or done
      if (limit > kNoTimeout) {
        const bool bounded = std::all_of(queue_.begin(), std::next(it), [&](const Queued& q) {
          return q.work->timeout() <= limit;
        });
        if (!bounded) {
          ready_now_through(it);
          return;
        }
      }
      next = pop_head();
      if (next.work.get() == target && waited_streak_ < kSteadyStreak) ++waited_streak_;
    }
    const bool mine = next.work.get() == target;
    run(next);
    if (mine) return;
  }
}

void GlooBackend::expedite(const GlooWork* target) {
  std::lock_guard<std::mutex> lock(queue_mutex_);
  auto it = std::find_if(queue_.begin(), queue_.end(),
                         [&](const Queued& q) { return q.work.get() == target; });
  if (it != queue_.end()) ready_now_through(it);  // else running or done
}

void GlooWork::help_on_wait(std::chrono::milliseconds limit) {
  if (auto backend = backend_.lock()) backend->help(this, limit);
}

void GlooWork::expedite() {
  if (auto backend = backend_.lock()) backend->expedite(this);
}

void GlooBackend::ready_now_through(std::deque<Queued>::iterator last) {
  const auto now = std::chrono::steady_clock::now();
  for (auto q = queue_.begin(); q != std::next(last); ++q) q->ready_at = std::min(q->ready_at, now);
  end_streak();
}

void GlooBackend::end_streak() {
  waited_streak_ = 0;
  for (auto& queued : queue_) {
    queued.ready_at = std::min(queued.ready_at, queued.enqueued_at + kInlineGrace);
  }
  if (!queue_.empty()) fire_by(queue_.front().ready_at);
}

GlooBackend::Queued GlooBackend::pop_head() {
  Queued head = std::move(queue_.front());
  queue_.pop_front();
  running_.fetch_add(1, std::memory_order_relaxed);  // until run() ends it
  if (!queue_.empty()) {
    fire_by(queue_.front().ready_at);
    return head;
  }
  // An emptied queue mostly leaves the timer as it is: disarming it each
  // time would cost a system call per operation, and one late firing only
  // wakes the workers to find nothing to do. In a streak, a timer about to
  // fire is disarmed (kDisarmMargin); the next operation queued arms it.
  if (waited_streak_ >= kSteadyStreak && timer_due_ != kUnarmed &&
      timer_due_ - std::chrono::steady_clock::now() < kDisarmMargin) {
    grace_timer_.disarm();
    timer_due_ = kUnarmed;
  }
  return head;
}

void GlooBackend::fire_by(std::chrono::steady_clock::time_point when) {
  if (timer_due_ <= when) return;  // fires in time; the woken worker re-arms
  timer_due_ = when;
  grace_timer_.arm(when);
}

void GlooBackend::worker_loop() {
  std::unique_lock<std::mutex> lock(queue_mutex_);
  while (!stopping_) {
    if (!queue_.empty() && std::chrono::steady_clock::now() >= queue_.front().ready_at) {
      Queued next = pop_head();
      // Nobody waited for this one in time.
      if (waited_streak_ >= kSteadyStreak) end_streak();
      waited_streak_ = 0;
      lock.unlock();
      run(next);
      next = {};
      lock.lock();
      continue;
    }
    if (!queue_.empty()) fire_by(queue_.front().ready_at);
    lock.unlock();
    grace_timer_.wait();
    lock.lock();
    // Past its time the timer has fired: it is no longer armed.
    if (std::chrono::steady_clock::now() >= timer_due_) timer_due_ = kUnarmed;
  }
}

}  // namespace tutti::gloo_backend
