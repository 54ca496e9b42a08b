// The DETAIL check of sends and receives (see debug_backend.hpp): each end
// describes its tensor to the other over the helper backend, and only a
// pair that agrees goes on to the real backend.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <atomic>

#include "core/engine_work.hpp"
#include "debug/debug_backend.hpp"
#include "debug/p2p_description.hpp"
#include "tutti/debug.hpp"
#include "tutti/errors.hpp"

namespace tutti::debug {
namespace {

// Helper tags with bit 30 set: bit 29 tells the description a send sends
// from the answer its receiver returns; the low 29 bits are the user's tag.
constexpr int kUserTagMask = 0x1FFFFFFF;
int describe_tag(int tag) { return 0x40000000 | (tag & kUserTagMask); }
int answer_tag(int tag) { return 0x60000000 | (tag & kUserTagMask); }

enum Direction { kSending = 0, kReceiving = 1 };

std::string mismatch(int sender, int receiver, int tag, const Tensor& sent, const Tensor& received,
                     bool anysource) {
  return fmt::format(
      "the send of {} from rank {} to rank {} with tag {} met a {} of {} on rank {}; they "
      "differ in {}. A send and the recv it meets must agree in dtype and number of elements",
      Description::text(sent), sender, receiver, tag, anysource ? "recv_anysource" : "recv",
      Description::text(received), receiver, Description::differences(sent, received));
}

// The error of a check whose helper operation failed: DesyncError saying
// `on_timeout` if its deadline passed, else the failure with context.
std::exception_ptr error_of(const std::string& context, const Future& f, bool expired,
                            const std::string& on_timeout) {
  std::string what = "unknown error";
  try {
    std::rethrow_exception(f.exception());
  } catch (const TimeoutError&) {
    expired = true;
  } catch (const std::exception& e) {
    what = e.what();
  }
  if (expired) {
    return std::make_exception_ptr(
        DesyncError(fmt::format("{} (TUTTI_DEBUG=DETAIL check): {}", context, on_timeout)));
  }
  return std::make_exception_ptr(
      DistBackendError(fmt::format("{}: the DETAIL check failed: {}", context, what)));
}

// Completes `work` when `real` does, with its error if it failed.
void follow(const std::shared_ptr<EngineWork>& work, const std::shared_ptr<Work>& real,
            int source) {
  real->get_future()->then([work, source](Future& f) {
    if (f.has_error()) {
      work->complete(f.exception());
      return;
    }
    if (source >= 0) work->set_source(source);
    work->complete();
  });
}

// The real operation of a checked pair, and whether it was cancelled first.
struct Pending {
  std::mutex mutex;
  std::shared_ptr<Work> real;                  // GUARDED_BY(mutex)
  bool cancelled = false;                      // GUARDED_BY(mutex)
  std::vector<std::shared_ptr<Work>> helpers;  // set before it is shared
  std::atomic<bool> expired{false};
  DeadlineWatcher::Key deadline{};  // set before it is shared

  // Aborts the helper operations when the deadline passes first.
  static void watch(DeadlineWatcher& watcher, const std::shared_ptr<Pending>& pending,
                    std::chrono::milliseconds timeout) {
    std::weak_ptr<Pending> weak = pending;
    pending->deadline = watcher.at(DeadlineWatcher::Clock::now() + timeout, [weak] {
      if (auto p = weak.lock()) {
        p->expired = true;
        for (auto& h : p->helpers) h->abort();
      }
    });
  }

  void cancel() {
    std::shared_ptr<Work> r;
    {
      std::lock_guard<std::mutex> lock(mutex);
      cancelled = true;
      r = real;
    }
    for (auto& h : helpers) h->abort();
    if (r) r->abort();
  }
  // Runs `post`, keeps its work for cancel(); false if already cancelled.
  std::shared_ptr<Work> start(const std::function<std::shared_ptr<Work>()>& post) {
    std::lock_guard<std::mutex> lock(mutex);
    if (cancelled) return nullptr;
    real = post();
    return real;
  }
};

// The sequencer's action for a matched pair: posts the real send or recv
// (`post`, on the wrapped backend) and completes `work` with it; `source` is
// the peer a recv reports (-1 for a send). It holds the backend weakly: it
// may wait in the sequencer, which the backend owns.
std::function<void()> start_real(std::weak_ptr<DebugBackend> weak, std::shared_ptr<EngineWork> work,
                                 std::shared_ptr<Pending> pending, int source,
                                 std::function<std::shared_ptr<Work>(Backend&)> post) {
  return [weak = std::move(weak), work = std::move(work), pending = std::move(pending), source,
          post = std::move(post)] {
    try {
      auto self = weak.lock();
      if (!self) {
        work->complete(std::make_exception_ptr(DistBackendError(
            fmt::format("{}: its process group was destroyed first", work->description()))));
        return;
      }
      auto real = pending->start([&] { return post(*self->target()); });
      if (real) follow(work, real, source);
    } catch (...) {
      work->complete(std::current_exception());
    }
  };
}

}  // namespace

void Sequencer::arrive(const Key& key, uint64_t counter, std::function<void()> action) {
  std::unique_lock<std::mutex> lock(mutex_);
  Channel& channel = channels_[key];
  channel.ready[counter] = std::move(action);
  // One thread at a time runs a channel's actions, so they start in order.
  if (channel.draining) return;
  channel.draining = true;
  for (;;) {
    auto it = channel.ready.find(channel.next);
    if (it == channel.ready.end()) break;
    auto run = std::move(it->second);
    channel.ready.erase(it);
    ++channel.next;
    lock.unlock();
    if (run) run();
    lock.lock();
  }
  channel.draining = false;
}

std::shared_ptr<Work> DebugBackend::post_send(std::vector<Tensor>& tensors, int dst, int tag) {
  const std::string context =
      fmt::format("send of {} to rank {} with tag {} on group '{}' rank {}/{}",
                  describe_tensor(tensors[0]), dst, tag, group_.group_name, rank(), size());
  auto work = std::make_shared<EngineWork>(OpType::SEND, context, tensors);
  uint64_t counter = 0;
  {
    std::lock_guard<std::mutex> lock(p2p_mutex_);
    counter = send_counters_[{dst, tag}]++;
  }
  Tensor sent = Description::of(tensors[0], tag, counter);
  Tensor answer = Tensor::zeros({Description::kWords}, DType::Int64);
  auto pending = std::make_shared<Pending>();
  pending->helpers.push_back(helper_p2p(OpType::SEND, sent, dst, describe_tag(tag)));
  auto answered = helper_p2p(OpType::RECV, answer, dst, answer_tag(tag));
  pending->helpers.push_back(answered);
  Pending::watch(deadlines_, pending, group_.timeout);
  work->set_cancel([pending] { pending->cancel(); });
  std::weak_ptr<DebugBackend> weak = weak_from_this();
  const int me = rank();
  const auto timeout = group_.timeout;
  std::vector<Tensor> data = tensors;
  answered->get_future()->then([=](Future& f) {
    auto self = weak.lock();
    const Sequencer::Key key{dst, tag, kSending};
    if (!self) {
      work->complete(std::make_exception_ptr(
          DistBackendError(fmt::format("{}: its process group was destroyed first", context))));
      return;
    }
    self->deadlines_.cancel(pending->deadline);
    if (f.has_error()) {
      self->sequencer_.arrive(key, counter, nullptr);
      work->complete(error_of(
          context, f, pending->expired,
          fmt::format("rank {} posted no recv from rank {} (nor recv_anysource) with tag {} within "
                      "{} ms; post the matching recv on rank {}, or check the peer and the tag",
                      dst, me, tag, timeout.count(), dst)));
      return;
    }
    if (answer.data<int64_t>()[Description::kAgrees] == 0) {
      self->sequencer_.arrive(key, counter, nullptr);
      const bool anysource = answer.data<int64_t>()[Description::kAnysource] != 0;
      work->complete(std::make_exception_ptr(
          DesyncError(fmt::format("{} (TUTTI_DEBUG=DETAIL check): {}", context,
                                  mismatch(me, dst, tag, sent, answer, anysource)))));
      return;
    }
    self->sequencer_.arrive(key, counter,
                            start_real(weak, work, pending, -1, [data, dst, tag](Backend& real) {
                              auto copy = data;
                              return real.send(copy, dst, tag);
                            }));
  });
  return work;
}

std::shared_ptr<Work> DebugBackend::post_recv(OpType op, std::vector<Tensor>& tensors, int src,
                                              int tag) {
  const bool anysource = src < 0;
  const std::string context =
      anysource
          ? fmt::format("recv_anysource of {} with tag {} on group '{}' rank {}/{}",
                        describe_tensor(tensors[0]), tag, group_.group_name, rank(), size())
          : fmt::format("recv of {} from rank {} with tag {} on group '{}' rank {}/{}",
                        describe_tensor(tensors[0]), src, tag, group_.group_name, rank(), size());
  auto work = std::make_shared<EngineWork>(op, context, tensors);
  Tensor incoming = Tensor::zeros({Description::kWords}, DType::Int64);
  auto described = helper_p2p(OpType::RECV, incoming, src, describe_tag(tag));
  auto pending = std::make_shared<Pending>();
  pending->helpers.push_back(described);
  Pending::watch(deadlines_, pending, group_.timeout);
  work->set_cancel([pending] { pending->cancel(); });
  std::weak_ptr<DebugBackend> weak = weak_from_this();
  const int me = rank();
  const auto timeout = group_.timeout;
  std::vector<Tensor> data = tensors;
  described->get_future()->then([=](Future& f) {
    auto self = weak.lock();
    if (!self) {
      work->complete(std::make_exception_ptr(
          DistBackendError(fmt::format("{}: its process group was destroyed first", context))));
      return;
    }
    self->deadlines_.cancel(pending->deadline);
    if (f.has_error()) {
      // Nothing was consumed, so the channel's order is untouched.
      work->complete(error_of(
          context, f, pending->expired,
          fmt::format("no send {}with tag {} arrived within {} ms (expected {}); check that the "
                      "sender posts it, and the peer and the tag",
                      anysource ? std::string() : fmt::format("from rank {} ", src), tag,
                      timeout.count(), describe_list(data))));
      return;
    }
    const int source = anysource ? described->source_rank() : src;
    const auto counter = static_cast<uint64_t>(incoming.data<int64_t>()[Description::kCounter]);
    Tensor mine = Description::of(data[0], tag, counter);
    const std::string differs = Description::differences(incoming, mine);
    mine.data<int64_t>()[Description::kAgrees] = differs.empty() ? 1 : 0;
    mine.data<int64_t>()[Description::kAnysource] = anysource ? 1 : 0;
    try {
      self->helper_p2p(OpType::SEND, mine, source, answer_tag(tag));
    } catch (...) {
      // The sender then times out waiting and says so.
    }
    const Sequencer::Key key{source, tag, kReceiving};
    if (!differs.empty()) {
      self->sequencer_.arrive(key, counter, nullptr);
      work->complete(std::make_exception_ptr(
          DesyncError(fmt::format("{} (TUTTI_DEBUG=DETAIL check): {}", context,
                                  mismatch(source, me, tag, incoming, mine, anysource)))));
      return;
    }
    self->sequencer_.arrive(
        key, counter, start_real(weak, work, pending, source, [data, source, tag](Backend& real) {
          auto copy = data;
          return real.recv(copy, source, tag);
        }));
  });
  return work;
}

}  // namespace tutti::debug
