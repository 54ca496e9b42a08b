#include "debug/debug_backend.hpp"

#include <fmt/format.h>

#include "core/error_context.hpp"
#include "core/logging.hpp"
#include "tutti/debug.hpp"
#include "tutti/errors.hpp"
#include "tutti/prefix_store.hpp"

namespace tutti::debug {
namespace {

// The helper gloo backend of one wrapped backend, on its own store prefix.
std::shared_ptr<Backend> make_helper(const GroupInfo& group, const std::string& wrapped) {
  const BackendInfo* gloo = find_backend("gloo");
  if (gloo == nullptr) {
    throw InvalidArgument(fmt::format(
        "TUTTI_DEBUG=DETAIL on group '{}' rank {}/{}: the checks talk over a gloo backend, and "
        "this build has none; build tutti with TUTTI_WITH_GLOO=ON, or use TUTTI_DEBUG=INFO",
        group.group_name, group.rank, group.size));
  }
  if (!group.store) {
    throw InvalidArgument(fmt::format(
        "TUTTI_DEBUG=DETAIL on group '{}' rank {}/{}: the checks need the group's store to "
        "connect their helper gloo backend, and this group has none; create it with a store, "
        "or use TUTTI_DEBUG=INFO",
        group.group_name, group.rank, group.size));
  }
  BackendConfig config;
  config.store = std::make_shared<PrefixStore>(fmt::format("debug/{}", wrapped), group.store);
  // The checks name the ranks that did not arrive themselves, within the
  // operation's timeout; a roll call's grace would eat into it.
  config.roll_call = false;
  config.rank = group.rank;
  config.size = group.size;
  // The checks keep their own deadlines (the group's timeout) and abort
  // helper operations when they pass; gloo's own, later, would close the
  // connection instead.
  config.timeout = group.timeout * 2 + std::chrono::seconds(10);
  config.group_name = group.group_name + "/debug";
  return gloo->factory(config);
}

}  // namespace

void instrument_group(std::array<std::shared_ptr<Backend>, kNumDeviceTypes>& backends,
                      const GroupInfo& group, const std::string& backend_name) {
  const DebugLevel level = debug_level();
  if (level == DebugLevel::OFF) return;
  logging::write(LogLevel::INFO, group.rank, group.group_name,
                 fmt::format("created process group '{}': rank {} of {}, backend '{}', "
                             "timeout {} ms, TUTTI_DEBUG={}",
                             group.group_name, group.rank, group.size, backend_name,
                             group.timeout.count(), to_string(level)));
  // A backend serving several device types is wrapped once.
  std::vector<std::pair<Backend*, std::shared_ptr<Backend>>> wrapped;
  for (size_t slot = 0; slot < backends.size(); ++slot) {
    auto& backend = backends[slot];
    if (!backend) continue;
    std::shared_ptr<Backend> wrapper;
    for (const auto& [raw, w] : wrapped) {
      if (raw == backend.get()) wrapper = w;
    }
    if (!wrapper) {
      const std::string name =
          fmt::format("{}/{}", backend->name(), to_string(static_cast<DeviceType>(slot)));
      std::shared_ptr<Backend> helper;
      if (level == DebugLevel::DETAIL) helper = make_helper(group, name);
      wrapper = std::make_shared<DebugBackend>(backend, std::move(helper), group, name);
      wrapped.emplace_back(backend.get(), wrapper);
    }
    backend = std::move(wrapper);
  }
}

DeadlineWatcher::~DeadlineWatcher() {
  std::thread thread;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    thread = std::move(thread_);
  }
  cv_.notify_all();
  if (thread.joinable()) thread.join();
}

DeadlineWatcher::Key DeadlineWatcher::at(Clock::time_point when, std::function<void()> action) {
  std::lock_guard<std::mutex> lock(mutex_);
  const Key key{when, next_id_++};
  actions_.emplace(key, std::move(action));
  if (!thread_.joinable()) thread_ = std::thread([this] { loop(); });
  cv_.notify_all();
  return key;
}

void DeadlineWatcher::cancel(const Key& key) {
  std::lock_guard<std::mutex> lock(mutex_);
  actions_.erase(key);
}

void DeadlineWatcher::loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stopping_) {
    if (actions_.empty()) {
      cv_.wait(lock);
      continue;
    }
    auto first = actions_.begin();
    // A copy: cancel() may erase the entry while this waits.
    const Clock::time_point when = first->first.first;
    if (Clock::now() < when) {
      cv_.wait_until(lock, when);
      continue;
    }
    auto action = std::move(first->second);
    actions_.erase(first);
    lock.unlock();
    action();
    lock.lock();
  }
}

std::shared_ptr<Work> DebugBackend::helper_p2p(OpType op, Tensor tensor, int peer, int tag) {
  std::vector<Tensor> tensors{std::move(tensor)};
  try {
    if (op == OpType::SEND) return helper_->send(tensors, peer, tag);
    if (peer < 0) return helper_->recv_anysource(tensors, tag);
    return helper_->recv(tensors, peer, tag);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw DistNetworkError(fmt::format(
        "posting a {} of the DETAIL checks on group '{}' rank {}/{} (peer {}) failed: {}",
        to_string(op), group_.group_name, rank(), size(), peer, e.what()));
  }
}

DebugBackend::DebugBackend(std::shared_ptr<Backend> target, std::shared_ptr<Backend> helper,
                           GroupInfo group, const std::string& wrapped)
    : BackendWrapper(std::move(target)), helper_(std::move(helper)), group_(std::move(group)) {
  if (helper_ && group_.store) {
    checks_store_ =
        std::make_shared<PrefixStore>(fmt::format("debug/checks/{}", wrapped), group_.store);
  }
}

DebugBackend::~DebugBackend() = default;

std::string DebugBackend::where(const Fingerprint& fp) const {
  return fmt::format("{} #{} on group '{}' rank {}/{}", to_string(fp.op), fp.sequence,
                     group_.group_name, rank(), size());
}

void DebugBackend::log_failure(const CallText& call, const std::exception_ptr& error) const {
  logging::write(LogLevel::ERROR, rank(), group_.group_name,
                 fmt::format("{} failed: {}", call(), message_of(error)));
}

void DebugBackend::watch(CallText call, const std::shared_ptr<Work>& work) const {
  if (!work) return;
  const int rank = this->rank();
  std::string group = group_.group_name;
  work->get_future()->then([call = std::move(call), rank, group](Future& f) {
    if (f.has_error()) {
      logging::write(LogLevel::ERROR, rank, group,
                     fmt::format("{} failed: {}", call(), message_of(f.exception())));
    }
  });
}

std::shared_ptr<Work> DebugBackend::collective(
    Fingerprint fp, std::chrono::milliseconds timeout,
    const std::function<std::shared_ptr<Work>()>& forward) {
  std::unique_lock<std::mutex> lock(collective_mutex_);
  fp.sequence = ++sequence_;
  auto print = std::make_shared<const Fingerprint>(std::move(fp));
  CallText call = [print, where = where(*print)] {
    return fmt::format("{} ({})", where, print->call());
  };
  try {
    if (helper_) check(*print, effective_timeout(timeout, group_.timeout));
    auto work = forward();
    lock.unlock();
    watch(std::move(call), work);
    return work;
  } catch (...) {
    log_failure(call, std::current_exception());
    throw;
  }
}

// ------------------------------------------------------------- collectives

std::shared_ptr<Work> DebugBackend::broadcast(std::vector<Tensor>& tensors,
                                              const BroadcastOptions& opts) {
  return collective(fingerprint_broadcast(tensors, opts), opts.timeout,
                    [&] { return target()->broadcast(tensors, opts); });
}

std::shared_ptr<Work> DebugBackend::allreduce(std::vector<Tensor>& tensors,
                                              const AllreduceOptions& opts) {
  return collective(fingerprint_allreduce(OpType::ALLREDUCE, tensors, opts.reduce_op), opts.timeout,
                    [&] { return target()->allreduce(tensors, opts); });
}

std::shared_ptr<Work> DebugBackend::allreduce_sparse(std::vector<SparseTensor>& tensors,
                                                     const AllreduceOptions& opts) {
  return collective(fingerprint_allreduce_sparse(tensors, opts.reduce_op), opts.timeout,
                    [&] { return target()->allreduce_sparse(tensors, opts); });
}

std::shared_ptr<Work> DebugBackend::allreduce_coalesced(std::vector<Tensor>& tensors,
                                                        const AllreduceCoalescedOptions& opts) {
  return collective(fingerprint_allreduce(OpType::ALLREDUCE_COALESCED, tensors, opts.reduce_op),
                    opts.timeout, [&] { return target()->allreduce_coalesced(tensors, opts); });
}

std::shared_ptr<Work> DebugBackend::reduce(std::vector<Tensor>& tensors,
                                           const ReduceOptions& opts) {
  return collective(fingerprint_reduce(tensors, opts), opts.timeout,
                    [&] { return target()->reduce(tensors, opts); });
}

std::shared_ptr<Work> DebugBackend::allgather(std::vector<std::vector<Tensor>>& outputs,
                                              std::vector<Tensor>& inputs,
                                              const AllgatherOptions& opts) {
  return collective(fingerprint_lists(OpType::ALLGATHER, "outputs", outputs, "inputs", inputs),
                    opts.timeout, [&] { return target()->allgather(outputs, inputs, opts); });
}

std::shared_ptr<Work> DebugBackend::allgather_into_tensor(Tensor& output, Tensor& input,
                                                          const AllgatherOptions& opts) {
  return collective(fingerprint_flat(OpType::ALLGATHER_INTO_TENSOR, {output}, {input}),
                    opts.timeout,
                    [&] { return target()->allgather_into_tensor(output, input, opts); });
}

std::shared_ptr<Work> DebugBackend::allgather_coalesced(
    std::vector<std::vector<Tensor>>& output_lists, std::vector<Tensor>& inputs,
    const AllgatherOptions& opts) {
  return collective(fingerprint_lists(OpType::ALLGATHER_COALESCED, "output_lists", output_lists,
                                      "inputs", inputs),
                    opts.timeout,
                    [&] { return target()->allgather_coalesced(output_lists, inputs, opts); });
}

std::shared_ptr<Work> DebugBackend::allgather_into_tensor_coalesced(std::vector<Tensor>& outputs,
                                                                    std::vector<Tensor>& inputs,
                                                                    const AllgatherOptions& opts) {
  return collective(
      fingerprint_flat(OpType::ALLGATHER_INTO_TENSOR_COALESCED, outputs, inputs), opts.timeout,
      [&] { return target()->allgather_into_tensor_coalesced(outputs, inputs, opts); });
}

std::shared_ptr<Work> DebugBackend::gather(std::vector<std::vector<Tensor>>& outputs,
                                           std::vector<Tensor>& inputs, const GatherOptions& opts) {
  return collective(fingerprint_gather(inputs, opts), opts.timeout,
                    [&] { return target()->gather(outputs, inputs, opts); });
}

std::shared_ptr<Work> DebugBackend::scatter(std::vector<Tensor>& outputs,
                                            std::vector<std::vector<Tensor>>& inputs,
                                            const ScatterOptions& opts) {
  return collective(fingerprint_scatter(outputs, opts), opts.timeout,
                    [&] { return target()->scatter(outputs, inputs, opts); });
}

std::shared_ptr<Work> DebugBackend::reduce_scatter(std::vector<Tensor>& outputs,
                                                   std::vector<std::vector<Tensor>>& inputs,
                                                   const ReduceScatterOptions& opts) {
  Fingerprint fp = fingerprint_lists(OpType::REDUCE_SCATTER, "inputs", inputs, "outputs", outputs);
  fp.fields.push_back({"reduce_op", describe_reduce_op(opts.reduce_op)});
  return collective(std::move(fp), opts.timeout,
                    [&] { return target()->reduce_scatter(outputs, inputs, opts); });
}

std::shared_ptr<Work> DebugBackend::reduce_scatter_tensor(Tensor& output, Tensor& input,
                                                          const ReduceScatterOptions& opts) {
  Fingerprint fp = fingerprint_flat(OpType::REDUCE_SCATTER_TENSOR, {output}, {input});
  fp.fields.push_back({"reduce_op", describe_reduce_op(opts.reduce_op)});
  return collective(std::move(fp), opts.timeout,
                    [&] { return target()->reduce_scatter_tensor(output, input, opts); });
}

std::shared_ptr<Work> DebugBackend::reduce_scatter_tensor_coalesced(
    std::vector<Tensor>& outputs, std::vector<Tensor>& inputs, const ReduceScatterOptions& opts) {
  Fingerprint fp = fingerprint_flat(OpType::REDUCE_SCATTER_TENSOR_COALESCED, outputs, inputs);
  fp.fields.push_back({"reduce_op", describe_reduce_op(opts.reduce_op)});
  return collective(std::move(fp), opts.timeout, [&] {
    return target()->reduce_scatter_tensor_coalesced(outputs, inputs, opts);
  });
}

std::shared_ptr<Work> DebugBackend::alltoall_base(Tensor& output, Tensor& input,
                                                  std::vector<int64_t> output_split_sizes,
                                                  std::vector<int64_t> input_split_sizes,
                                                  const AllToAllOptions& opts) {
  return collective(
      fingerprint_alltoall_base(output, input, output_split_sizes, input_split_sizes, size()),
      opts.timeout, [&] {
        return target()->alltoall_base(output, input, std::move(output_split_sizes),
                                       std::move(input_split_sizes), opts);
      });
}

std::shared_ptr<Work> DebugBackend::alltoall(std::vector<Tensor>& outputs,
                                             std::vector<Tensor>& inputs,
                                             const AllToAllOptions& opts) {
  return collective(fingerprint_alltoall(outputs, inputs), opts.timeout,
                    [&] { return target()->alltoall(outputs, inputs, opts); });
}

std::shared_ptr<Work> DebugBackend::barrier(const BarrierOptions& opts) {
  return collective(fingerprint_barrier(OpType::BARRIER), opts.timeout,
                    [&] { return target()->barrier(opts); });
}

void DebugBackend::monitored_barrier(const BarrierOptions& opts, bool wait_all_ranks) {
  collective(fingerprint_barrier(OpType::MONITORED_BARRIER), opts.timeout, [&] {
    target()->monitored_barrier(opts, wait_all_ranks);
    return std::shared_ptr<Work>();
  });
}

// ---------------------------------------------------------- point to point

std::shared_ptr<Work> DebugBackend::send(std::vector<Tensor>& tensors, int dst_rank, int tag) {
  if (helper_) return post_send(tensors, dst_rank, tag);
  CallText call = [tensors, dst_rank, tag, group = group_.group_name, me = rank(), n = size()] {
    return fmt::format("send of {} to rank {} with tag {} on group '{}' rank {}/{}",
                       describe_list(tensors), dst_rank, tag, group, me, n);
  };
  try {
    auto work = target()->send(tensors, dst_rank, tag);
    watch(call, work);
    return work;
  } catch (...) {
    log_failure(call, std::current_exception());
    throw;
  }
}

std::shared_ptr<Work> DebugBackend::recv(std::vector<Tensor>& tensors, int src_rank, int tag) {
  if (helper_) return post_recv(OpType::RECV, tensors, src_rank, tag);
  CallText call = [tensors, src_rank, tag, group = group_.group_name, me = rank(), n = size()] {
    return fmt::format("recv of {} from rank {} with tag {} on group '{}' rank {}/{}",
                       describe_list(tensors), src_rank, tag, group, me, n);
  };
  try {
    auto work = target()->recv(tensors, src_rank, tag);
    watch(call, work);
    return work;
  } catch (...) {
    log_failure(call, std::current_exception());
    throw;
  }
}

std::shared_ptr<Work> DebugBackend::recv_anysource(std::vector<Tensor>& tensors, int tag) {
  if (helper_) return post_recv(OpType::RECV_ANYSOURCE, tensors, -1, tag);
  CallText call = [tensors, tag, group = group_.group_name, me = rank(), n = size()] {
    return fmt::format("recv_anysource of {} with tag {} on group '{}' rank {}/{}",
                       describe_list(tensors), tag, group, me, n);
  };
  try {
    auto work = target()->recv_anysource(tensors, tag);
    watch(call, work);
    return work;
  } catch (...) {
    log_failure(call, std::current_exception());
    throw;
  }
}

}  // namespace tutti::debug
