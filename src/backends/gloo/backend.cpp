#include "backends/gloo/backend.hpp"

#include <fmt/format.h>
#include <gloo/common/error.h>
#include <gloo/common/logging.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/prefix_store.h>

#include <cstdlib>

#include "backends/gloo/algorithms.hpp"
#include "backends/gloo/device.hpp"
#include "backends/gloo/store_adapter.hpp"
#include "backends/gloo/work.hpp"
#include "core/error_context.hpp"
#include "core/logging.hpp"
#include "tutti/errors.hpp"

namespace tutti::gloo_backend {

AllreduceAlgorithm parse_algorithm(const std::string& name) {
  if (name == "auto") return AllreduceAlgorithm::AUTO;
  if (name == "ring") return AllreduceAlgorithm::RING;
  if (name == "bcube") return AllreduceAlgorithm::BCUBE;
  throw InvalidArgument(
      fmt::format("unknown gloo allreduce algorithm '{}'; expected auto, ring or bcube", name));
}

Options Options::from_env(std::chrono::milliseconds timeout) {
  Options options;
  options.timeout = timeout;
  if (const char* threads = std::getenv("TUTTI_GLOO_THREADS")) {
    char* end = nullptr;
    long n = std::strtol(threads, &end, 10);
    if (end == threads || *end != '\0' || n < 1 || n > 64) {
      throw InvalidArgument(
          fmt::format("TUTTI_GLOO_THREADS='{}' is not a thread count between 1 and 64", threads));
    }
    options.threads = static_cast<int>(n);
  }
  if (const char* algorithm = std::getenv("TUTTI_GLOO_ALLREDUCE")) {
    options.allreduce_algorithm = parse_algorithm(algorithm);
  }
  return options;
}

std::string message_of(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown error";
  }
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
      options_(std::move(options)) {
  if (options_.devices.empty()) options_.devices = default_devices();
  if (options_.threads < 1) {
    throw InvalidArgument(
        fmt::format("gloo: threads must be at least 1, got {}", options_.threads));
  }
  StoreAdapter adapter(store_);
  for (size_t i = 0; i < options_.devices.size(); ++i) {
    // Each context rendezvouses under its own prefix of the group's store.
    ::gloo::rendezvous::PrefixStore prefixed(std::to_string(i), adapter);
    auto context = std::make_shared<::gloo::rendezvous::Context>(rank, size);
    context->setTimeout(options_.timeout);
    try {
      context->connectFullMesh(prefixed, options_.devices[i]);
    } catch (...) {
      std::rethrow_exception(translate_current_exception(
          fmt::format("gloo: connecting rank {} of group '{}' to its {} peers over {}", rank,
                      group_name_, size - 1, options_.devices[i]->str()),
          options_.timeout));
    }
    contexts_.push_back(std::move(context));
  }
  for (int i = 0; i < options_.threads; ++i) workers_.emplace_back([this] { worker_loop(); });
  TUTTI_LOG(LogLevel::INFO, rank, group_name_, "gloo: connected {} device(s), {} thread(s)",
            contexts_.size(), workers_.size());
}

GlooBackend::~GlooBackend() {
  std::deque<Queued> abandoned;
  {
    std::lock_guard<std::mutex> lock(queue_mutex_);
    stopping_ = true;
    abandoned.swap(queue_);
  }
  queue_cv_.notify_all();
  for (auto& queued : abandoned) {
    auto& work = queued.work;
    work->complete(std::make_exception_ptr(DistBackendError(
        fmt::format("{} was not started: its process group was destroyed", work->description()))));
  }
  {
    std::lock_guard<std::mutex> lock(p2p_mutex_);
    for (auto& weak : p2p_pending_) {
      if (auto work = weak.lock()) {
        work->fail_and_cancel(std::make_exception_ptr(DistBackendError(fmt::format(
            "{} did not complete: its process group was destroyed", work->description()))));
      }
    }
    p2p_pending_.clear();
  }
  // Running operations fail fast once the connections are closed.
  for (auto& context : contexts_) {
    try {
      context->closeConnections();
    } catch (...) {
    }
  }
  for (auto& worker : workers_) worker.join();
}

bool GlooBackend::supports(OpType op) const { return op != OpType::UNKNOWN; }

std::string GlooBackend::describe_op(OpType op, uint64_t sequence) const {
  return fmt::format("{} #{} on group '{}' rank {}/{} (gloo)", to_string(op), sequence, group_name_,
                     rank(), size());
}

namespace {

// Handing an operation to a worker thread costs a wake-up on each side,
// more than a small collective, so a queued operation is left this long for
// the thread that waits on it to run it (Work::wait) before a worker does.
constexpr std::chrono::microseconds kInlineGrace{500};

}  // namespace

std::shared_ptr<Work> GlooBackend::enqueue(OpType op, std::chrono::milliseconds timeout,
                                           std::vector<Tensor> outputs, Job job) {
  std::shared_ptr<GlooWork> work;
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(queue_mutex_);
    const uint64_t sequence = ++next_sequence_;
    work = std::make_shared<GlooWork>(op, describe_op(op, sequence), std::move(outputs),
                                      resolve(timeout));
    OpContext ctx;
    ctx.tag = static_cast<uint32_t>(sequence);
    ctx.context = contexts_[sequence % contexts_.size()];
    ctx.timeout = work->timeout();
    ctx.allreduce_algorithm = options_.allreduce_algorithm;
    // gloo enforces the timeout inside the call, so the waiting thread can
    // run it with the same guarantee as a worker.
    std::weak_ptr<GlooBackend> weak = weak_from_this();
    if (!weak.expired()) {
      const GlooWork* target = work.get();
      work->set_helper([weak, target] {
        if (auto self = weak.lock()) self->help(target);
      });
    }
    // A Work its caller drops still runs: the other ranks take part in it.
    queue_.push_back({work, [ctx, job = std::move(job), raw = work.get()] { job(ctx, *raw); },
                      std::chrono::steady_clock::now()});
    // A worker in its grace wait wakes by itself; only an idle one needs it.
    wake = idle_workers_ > 0;
  }
  if (wake) queue_cv_.notify_one();
  return work;
}

void GlooBackend::run(Queued& queued) {
  GlooWork& work = *queued.work;
  try {
    work.started();
    queued.run();
    work.complete();
  } catch (...) {
    auto error = translate_current_exception(work.description(), work.timeout());
    TUTTI_LOG(LogLevel::ERROR, rank(), group_name_, "{}", message_of(error));
    work.complete(error);
  }
}

void GlooBackend::help(const GlooWork* target) {
  for (;;) {
    Queued next;
    {
      std::lock_guard<std::mutex> lock(queue_mutex_);
      auto it = std::find_if(queue_.begin(), queue_.end(),
                             [&](const Queued& q) { return q.work.get() == target; });
      if (it == queue_.end()) return;  // taken by a worker, or done
      next = std::move(queue_.front());
      queue_.pop_front();
    }
    const bool mine = next.work.get() == target;
    run(next);
    if (mine) return;
  }
}

void GlooBackend::worker_loop() {
  using Clock = std::chrono::steady_clock;
  std::unique_lock<std::mutex> lock(queue_mutex_);
  while (true) {
    if (queue_.empty()) {
      if (stopping_) return;
      ++idle_workers_;
      queue_cv_.wait(lock);
      --idle_workers_;
      continue;
    }
    Queued& front = queue_.front();
    const auto ready = front.enqueued_at + kInlineGrace;
    if (!stopping_ && Clock::now() < ready) {
      queue_cv_.wait_until(lock, ready);
      continue;
    }
    Queued next = std::move(front);
    queue_.pop_front();
    lock.unlock();
    run(next);
    next = {};
    lock.lock();
  }
}

}  // namespace tutti::gloo_backend
