#include "backends/mpi/health.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <thread>

#include "backends/mpi/runtime.hpp"

namespace tutti::mpi_backend {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// On the control communicator; monitored_barrier uses 1 and 2.
constexpr int kQueryTag = 3;
constexpr int kReplyTag = 4;
// A reply: query id, state, sequence, op, running_for_ms.
constexpr int kReplyWords = 5;
using Reply = std::array<int64_t, kReplyWords>;

std::string describe(int rank, const Reply& reply) {
  const auto state = static_cast<RankStatus::State>(reply[1]);
  const auto sequence = static_cast<uint64_t>(reply[2]);
  const char* op = to_string(static_cast<OpType>(reply[3]));
  switch (state) {
    case RankStatus::kRunning:
      return fmt::format("rank {} is in {} #{} (for {} ms)", rank, op, sequence, reply[4]);
    case RankStatus::kBroken:
      return fmt::format("rank {} timed out in {} #{} too", rank, op, sequence);
    case RankStatus::kIdle:
      break;
  }
  if (sequence == 0) return fmt::format("rank {} is idle and has run no collective", rank);
  return fmt::format("rank {} is idle after collective #{}", rank, sequence);
}

}  // namespace

milliseconds diagnosis_grace(milliseconds timeout) {
  return std::clamp(timeout / 2, milliseconds{250}, milliseconds{2000});
}

Health::Health(MPI_Comm comm, int rank, int size) : comm_(comm), rank_(rank), size_(size) {
  CallLock call;
  check(MPI_Irecv(&query_in_, 1, MPI_INT64_T, MPI_ANY_SOURCE, kQueryTag, comm_, &query_request_),
        "MPI_Irecv (status requests)");
}

Health::~Health() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) close();
}

void Health::close() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (closed_) return;
  closed_ = true;
  // Under MPI_THREAD_SERIALIZED a collective stuck past its deadline holds
  // MPI's lock for good: the pending receive is then left to MPI.
  CallLock call(std::try_to_lock);
  if (!call.owns()) return;
  if (query_request_ != MPI_REQUEST_NULL) {
    MPI_Cancel(&query_request_);
    MPI_Wait(&query_request_, MPI_STATUS_IGNORE);
  }
  reap_sends_locked();
  for (auto& out : sends_) {
    // MPI may still read the buffer of a send to a rank that never took it
    // (a stopped one): it is left to MPI, a few bytes per such rank.
    MPI_Request_free(&out.request);
    static_cast<void>(out.buffer.release());
  }
  sends_.clear();
}

void Health::send_locked(int peer, int tag, std::vector<int64_t> words) {
  Outbound out;
  out.buffer = std::make_unique<int64_t[]>(words.size());
  std::copy(words.begin(), words.end(), out.buffer.get());
  if (MPI_Isend(out.buffer.get(), static_cast<int>(words.size()), MPI_INT64_T, peer, tag, comm_,
                &out.request) == MPI_SUCCESS) {
    sends_.push_back(std::move(out));
  }
}

void Health::reap_sends_locked() {
  std::erase_if(sends_, [](Outbound& out) {
    int flag = 0;
    if (MPI_Test(&out.request, &flag, MPI_STATUS_IGNORE) != MPI_SUCCESS) return false;
    return flag != 0;
  });
}

void Health::serve_locked(const RankStatus& mine) {
  for (;;) {
    if (query_request_ == MPI_REQUEST_NULL &&
        MPI_Irecv(&query_in_, 1, MPI_INT64_T, MPI_ANY_SOURCE, kQueryTag, comm_, &query_request_) !=
            MPI_SUCCESS) {
      break;
    }
    int flag = 0;
    MPI_Status status;
    if (MPI_Test(&query_request_, &flag, &status) != MPI_SUCCESS || !flag) break;
    query_request_ = MPI_REQUEST_NULL;
    if (askers_ != nullptr) askers_->push_back(status.MPI_SOURCE);
    send_locked(status.MPI_SOURCE, kReplyTag,
                {query_in_, static_cast<int64_t>(mine.state), static_cast<int64_t>(mine.sequence),
                 static_cast<int64_t>(mine.op), mine.running_for_ms});
  }
  reap_sends_locked();
}

void Health::serve(const RankStatus& mine) {
  std::unique_lock<std::mutex> lock(mutex_, std::try_to_lock);
  if (!lock.owns_lock() || closed_) return;
  CallLock call(std::try_to_lock);
  if (call.owns()) serve_locked(mine);
}

Health::Diagnosis Health::diagnose(const RankStatus& mine, std::vector<int> peers,
                                   milliseconds grace) {
  if (peers.empty()) {
    for (int r = 0; r < size_; ++r) {
      if (r != rank_) peers.push_back(r);
    }
  }
  std::lock_guard<std::mutex> lock(mutex_);
  if (closed_ || peers.empty()) return {};
  const int64_t id = ++next_query_;
  const size_t n = peers.size();
  std::vector<Reply> replies(n);
  std::vector<MPI_Request> requests(n, MPI_REQUEST_NULL);
  std::vector<bool> heard(n, false);
  std::vector<std::string> unreachable(n);
  {
    CallLock call(std::try_to_lock);
    if (!call.owns()) {
      return {{},
              "the other ranks could not be asked for their status: MPI grants only "
              "MPI_THREAD_SERIALIZED and a collective holds MPI's lock"};
    }
    for (size_t i = 0; i < n; ++i) {
      const int rc = MPI_Irecv(replies[i].data(), kReplyWords, MPI_INT64_T, peers[i], kReplyTag,
                               comm_, &requests[i]);
      if (rc != MPI_SUCCESS) unreachable[i] = error_string(rc);
      send_locked(peers[i], kQueryTag, {id});
    }
  }
  std::vector<int> askers;
  askers_ = &askers;
  const auto deadline = Clock::now() + grace;
  size_t waiting = n;
  while (waiting > 0 && Clock::now() < deadline) {
    {
      CallLock call(std::try_to_lock);
      if (call.owns()) {
        serve_locked(mine);
        for (size_t i = 0; i < n; ++i) {
          if (heard[i] || requests[i] == MPI_REQUEST_NULL) continue;
          int flag = 0;
          const int rc = MPI_Test(&requests[i], &flag, MPI_STATUS_IGNORE);
          if (rc != MPI_SUCCESS) {
            unreachable[i] = error_string(rc);
            requests[i] = MPI_REQUEST_NULL;
            --waiting;
          } else if (flag && replies[i][0] == id) {
            heard[i] = true;
            --waiting;
          } else if (flag) {
            // The late answer to an earlier request: listen again.
            MPI_Irecv(replies[i].data(), kReplyWords, MPI_INT64_T, peers[i], kReplyTag, comm_,
                      &requests[i]);
          }
        }
      }
    }
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  askers_ = nullptr;
  auto asked = [&](int peer) {
    return std::find(askers.begin(), askers.end(), peer) != askers.end();
  };
  Diagnosis result;
  std::vector<std::string> parts;
  std::vector<std::string> answers;
  {
    CallLock call;
    for (size_t i = 0; i < n; ++i) {
      if (heard[i]) {
        answers.push_back(describe(peers[i], replies[i]));
        continue;
      }
      if (requests[i] != MPI_REQUEST_NULL) {
        // A cancelled receive completes locally; waiting for it keeps MPI
        // from writing into `replies` after this returns.
        MPI_Cancel(&requests[i]);
        MPI_Wait(&requests[i], MPI_STATUS_IGNORE);
      }
      if (asked(peers[i])) {
        answers.push_back(fmt::format(
            "rank {} is alive (it asked for this rank's status) but its answer was late",
            peers[i]));
        continue;
      }
      result.silent.push_back(peers[i]);
      if (!unreachable[i].empty()) {
        parts.push_back(fmt::format("rank {} is unreachable ({})", peers[i], unreachable[i]));
      }
    }
  }
  std::vector<int> silent_only;
  for (size_t i = 0; i < n; ++i) {
    if (!heard[i] && unreachable[i].empty() && !asked(peers[i])) silent_only.push_back(peers[i]);
  }
  if (!silent_only.empty()) {
    parts.insert(parts.begin(),
                 fmt::format("rank{} {} did not answer a status request within {} ms (stopped, "
                             "dead or cut off)",
                             silent_only.size() > 1 ? "s" : "", fmt::join(silent_only, ", "),
                             grace.count()));
  }
  parts.insert(parts.end(), answers.begin(), answers.end());
  result.text = fmt::format("{}", fmt::join(parts, "; "));
  if (!result.silent.empty()) peer_went_silent();
  return result;
}

}  // namespace tutti::mpi_backend
