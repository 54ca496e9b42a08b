// MpiBackend: its communicators, the queue its collectives enter, and
// posted sends and receives. The threads that run them are in engine.cpp.
#include "backends/mpi/backend.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "backends/mpi/engine.hpp"
#include "backends/mpi/runtime.hpp"
#include "core/logging.hpp"
#include "tutti/errors.hpp"

namespace tutti::mpi_backend {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

void set_errors_return(MPI_Comm comm) {
  check(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
}

// TUTTI_MPI_INLINE=1: see docs/mpi.md, "Inline mode".
bool inline_mode_from_env() {
  const char* value = std::getenv("TUTTI_MPI_INLINE");
  return value != nullptr && std::string(value) == "1";
}

int finalized() {
  int done = 0;
  MPI_Finalized(&done);
  return done;
}

}  // namespace

MpiBackend::MpiBackend(MPI_Comm comm, int rank, int size, std::string group_name,
                       milliseconds timeout)
    : Backend(rank, size),
      group_name_(std::move(group_name)),
      where_(std::make_shared<const std::string>(
          fmt::format("group '{}' rank {}/{} (mpi)", group_name_, rank, size))),
      timeout_(timeout),
      comm_(comm),
      core_(std::make_shared<Core>()) {
  {
    CallLock call;
    set_errors_return(comm_);
    check(MPI_Comm_dup(comm_, &control_comm_), "MPI_Comm_dup");
    set_errors_return(control_comm_);
    int flag = 0;
    int* tag_ub = nullptr;
    MPI_Comm_get_attr(comm_, MPI_TAG_UB, static_cast<void*>(&tag_ub), &flag);
    if (flag && tag_ub != nullptr) tag_ub_ = *tag_ub;
    // Inline mode changes which calls small operations make (blocking, not
    // nonblocking), so it is used only when every rank asks for it.
    const int asks[2] = {inline_mode_from_env() ? 1 : 0, inline_mode_from_env() ? 0 : 1};
    int all[2] = {0, 0};  // {every rank asks, no rank asks} as MIN
    check(MPI_Allreduce(asks, all, 2, MPI_INT, MPI_MIN, comm_), "MPI_Allreduce (TUTTI_MPI_INLINE)");
    inline_mode_ = all[0] == 1;
    if (!inline_mode_ && all[1] == 0 && rank == 0) {
      TUTTI_LOG(LogLevel::WARNING, rank, group_name_,
                "mpi: TUTTI_MPI_INLINE=1 is set on some ranks only; the group runs in the "
                "default mode");
    }
  }
  core_->health = std::make_unique<Health>(control_comm_, rank, size);
  core_->comm = comm_;
  core_->inline_mode = inline_mode_;
  auto core = core_;
  core_->worker = std::thread([core] { core->worker_loop(); });
  core_->watchdog = std::thread([core] { core->watchdog_loop(); });
  TUTTI_LOG(LogLevel::INFO, rank, group_name_, "mpi: group of {} ranks ready (MPI thread level {})",
            size, thread_multiple() ? "multiple" : "serialized");
}

MpiBackend::~MpiBackend() {
  auto& core = *core_;
  std::vector<std::shared_ptr<Core::Posted>> pending;
  bool stuck = false;
  {
    std::unique_lock<std::mutex> lock(core.mutex);
    core.stopping = true;
    core.worker_cv.notify_all();
    // Queued collectives still run: the other ranks expect them. Each is
    // bounded by its deadline.
    core.idle_cv.wait(
        lock, [&] { return (core.queue.empty() && !core.running) || core.broken.has_value(); });
    stuck = core.running != nullptr;
    pending.swap(core.posted);
    core.watchdog_stop = true;
    core.worker_cv.notify_all();
  }
  core.watchdog_cv.notify_all();
  for (auto& p : pending) {
    p->work->complete(std::make_exception_ptr(DistBackendError(fmt::format(
        "{} did not complete: its process group was destroyed", p->work->description()))));
  }
  if (!finalized()) {
    CallLock call;
    for (auto& p : pending) {
      if (p->request == MPI_REQUEST_NULL) continue;
      if (p->is_recv) MPI_Cancel(&p->request);
      MPI_Request_free(&p->request);
    }
  }
  core.watchdog.join();
  if (!finalized()) core.health->close();
  if (stuck) {
    // The worker is inside a collective that will never end; it holds only
    // the shared core and values it copied.
    core.worker.detach();
    TUTTI_LOG(LogLevel::WARNING, rank(), group_name_,
              "mpi: destroyed with a collective stuck in MPI ({}); its thread is left behind",
              core.broken.value_or("timed out"));
    return;
  }
  core.worker.join();
  if (!finalized()) {
    CallLock call;
    MPI_Comm_free(&control_comm_);
    MPI_Comm comm = comm_;
    MPI_Comm_free(&comm);
  }
}

std::shared_ptr<MpiBackend> MpiBackend::create_world(const BackendConfig& config) {
  ensure_initialized();
  int rank = -1, size = -1;
  MPI_Comm comm = MPI_COMM_NULL;
  {
    CallLock call;
    check(MPI_Comm_rank(MPI_COMM_WORLD, &rank), "MPI_Comm_rank");
    check(MPI_Comm_size(MPI_COMM_WORLD, &size), "MPI_Comm_size");
    if (rank != config.rank || size != config.size) {
      throw InvalidArgument(fmt::format(
          "backend 'mpi' makes a group over all of MPI_COMM_WORLD, where this process is rank "
          "{} of {}; the group '{}' asks for rank {} of {}. Create the group with "
          "init_process_group(backend=\"mpi\") under mpirun, and smaller groups with new_group",
          rank, size, config.group_name, config.rank, config.size));
    }
    check(MPI_Comm_dup(MPI_COMM_WORLD, &comm), "MPI_Comm_dup(MPI_COMM_WORLD)");
  }
  return std::make_shared<MpiBackend>(comm, rank, size, config.group_name, config.timeout);
}

std::shared_ptr<Backend> MpiBackend::create_subgroup(const std::vector<int>& ranks,
                                                     const BackendConfig& config) {
  auto result = std::make_shared<MPI_Comm>(MPI_COMM_NULL);
  const MPI_Comm parent = comm_;
  auto work = enqueue(OpType::UNKNOWN, kUnsetTimeout, {}, [parent, ranks, result] {
    CallLock call;
    MPI_Group parent_group = MPI_GROUP_NULL, group = MPI_GROUP_NULL;
    check(MPI_Comm_group(parent, &parent_group), "MPI_Comm_group");
    check(MPI_Group_incl(parent_group, static_cast<int>(ranks.size()), ranks.data(), &group),
          "MPI_Group_incl");
    const int rc = MPI_Comm_create(parent, group, result.get());
    MPI_Group_free(&group);
    MPI_Group_free(&parent_group);
    check(rc, "MPI_Comm_create");
  });
  work->wait();
  if (*result == MPI_COMM_NULL) return nullptr;
  int rank = -1, size = -1;
  {
    CallLock call;
    check(MPI_Comm_rank(*result, &rank), "MPI_Comm_rank");
    check(MPI_Comm_size(*result, &size), "MPI_Comm_size");
  }
  if (rank != config.rank || size != config.size) {
    throw DistBackendError(
        fmt::format("mpi: MPI_Comm_create gave rank {} of {} for subgroup '{}', expected {} of {}",
                    rank, size, config.group_name, config.rank, config.size));
  }
  return std::make_shared<MpiBackend>(*result, rank, size, config.group_name, config.timeout);
}

bool MpiBackend::supports(OpType op) const {
  return op != OpType::ALLREDUCE_SPARSE && op != OpType::UNKNOWN;
}

std::string MpiBackend::describe_internal(uint64_t sequence) const {
  return fmt::format("new_group #{} on {}", sequence, *where_);
}

std::shared_ptr<Work> MpiBackend::submit(OpType op, milliseconds timeout, bool polls, MakeWork make,
                                         void* maker) {
  auto& core = *core_;
  std::unique_lock<std::mutex> lock(core.mutex);
  const uint64_t sequence = ++core.next_sequence;
  std::shared_ptr<MpiWork> work = make(maker, sequence);
  work->set_spin(kWaiterSpin);
  if (core.broken) {
    auto error = core.unusable_error(work->description());
    lock.unlock();
    work->complete(error);
    return work;
  }
  const bool on_waiter = polls || core.inline_mode;
  if (on_waiter) work->run_on_waiter(core_, sequence);
  Core::Entry entry;
  entry.work = work;
  entry.timeout = resolve(timeout);
  entry.polls = polls;
  entry.on_waiter = on_waiter;
  if (core.inline_mode) {
    entry.enqueued_tick = core.watchdog_ticks;
  } else if (on_waiter) {
    entry.enqueued_at = Clock::now();
  }
  entry.sequence = sequence;
  entry.op = op;
  core.queue.push_back(std::move(entry));
  core.queued.fetch_add(1, std::memory_order_release);
  // An entry left to its waiter first needs the worker woken only when it
  // sleeps with nothing to time out on; in inline mode the watchdog hands
  // it over instead.
  const bool wake = core.inline_mode ? false : (on_waiter ? core.worker_idle : core.worker_waiting);
  lock.unlock();
  if (wake) core.worker_cv.notify_one();
  return work;
}

std::shared_ptr<Work> MpiBackend::post_p2p(OpType op, const Tensor& tensor, int peer, int tag) {
  auto& core = *core_;
  const bool is_recv = op != OpType::SEND;
  uint64_t number = 0;
  {
    std::lock_guard<std::mutex> lock(core.mutex);
    number = ++core.next_p2p;
  }
  const std::string peer_text =
      peer == MPI_ANY_SOURCE ? std::string("any rank") : fmt::format("rank {}", peer);
  auto work = std::make_shared<MpiWork>(
      op,
      fmt::format("{} {} {} (tag {}) #{} on group '{}' rank {}/{} (mpi)", to_string(op),
                  is_recv ? "from" : "to", peer_text, tag, number, group_name_, rank(), size()),
      is_recv ? std::vector<Tensor>{tensor} : std::vector<Tensor>{});
  if (tag < 0) {
    throw InvalidArgument(fmt::format("{}: tag {} is negative", work->description(), tag));
  }
  auto posted = std::make_shared<Core::Posted>();
  posted->work = work;
  posted->is_recv = is_recv;
  posted->expected_count = static_cast<int64_t>(tensor.nbytes());
  posted->peer = peer;
  posted->timeout = timeout_;
  posted->deadline = Clock::now() + timeout_;
  const int64_t count = tensor.numel();
  if (count > INT32_MAX) {
    throw InvalidArgument(fmt::format("{}: {} elements exceed MPI's count limit of {}",
                                      work->description(), count, INT32_MAX));
  }
  {
    CallLock call;
    if (tag > tag_ub_) {
      throw InvalidArgument(fmt::format("{}: tag {} is above this MPI's largest tag, {}",
                                        work->description(), tag, tag_ub_));
    }
    void* data = const_cast<void*>(tensor.data_ptr());
    const MPI_Datatype type = datatype(tensor.dtype());
    const int rc =
        is_recv
            ? MPI_Irecv(data, static_cast<int>(count), type, peer, tag, comm_, &posted->request)
            : MPI_Isend(data, static_cast<int>(count), type, peer, tag, comm_, &posted->request);
    check(rc, work->description());
  }
  work->started();
  // abort(): a receive is cancelled; a send can only be abandoned.
  std::weak_ptr<Core::Posted> weak = posted;
  std::weak_ptr<Core> weak_core = core_;
  work->set_cancel([weak, weak_core] {
    auto p = weak.lock();
    auto c = weak_core.lock();
    if (!p || !c) return;
    {
      std::lock_guard<std::mutex> lock(c->mutex);
      p->abandoned = true;
    }
    if (p->is_recv) p->cancel_wanted = true;
    c->worker_cv.notify_all();
  });
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(core.mutex);
    core.posted.push_back(posted);
    wake = core.worker_waiting;
  }
  if (wake) core.worker_cv.notify_one();
  return work;
}

std::shared_ptr<Work> MpiBackend::send(std::vector<Tensor>& tensors, int dst_rank, int tag) {
  return post_p2p(OpType::SEND, tensors.at(0), dst_rank, tag);
}

std::shared_ptr<Work> MpiBackend::recv(std::vector<Tensor>& tensors, int src_rank, int tag) {
  return post_p2p(OpType::RECV, tensors.at(0), src_rank, tag);
}

std::shared_ptr<Work> MpiBackend::recv_anysource(std::vector<Tensor>& tensors, int tag) {
  return post_p2p(OpType::RECV_ANYSOURCE, tensors.at(0), MPI_ANY_SOURCE, tag);
}

}  // namespace tutti::mpi_backend
