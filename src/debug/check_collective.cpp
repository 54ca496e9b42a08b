// The DETAIL check of one collective (see debug_backend.hpp): one small
// allgather over the helper backend when all is well, the group's store to
// compare full fingerprints and name absent ranks when it is not.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cstring>
#include <thread>

#include "debug/debug_backend.hpp"
#include "tutti/debug.hpp"
#include "tutti/errors.hpp"

namespace tutti::debug {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// What each rank contributes to the allgather: sequence number, hash of the
// fingerprint, and its term of the cross-check (0 for ops without one).
constexpr int64_t kWords = 3;

uint64_t mix(uint64_t x) {
  // splitmix64's finaliser: every input bit moves every output bit.
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

uint64_t pair_term(uint64_t sender, uint64_t receiver, int64_t count) {
  return mix(mix(mix(sender) ^ receiver) ^ static_cast<uint64_t>(count));
}

// XORed over all ranks, the terms of a pair cancel exactly when what the
// sender sends equals what the receiver expects (barring a 2^-64 accident).
uint64_t cross_check_term(const Fingerprint& fp, int rank) {
  uint64_t term = 0;
  for (size_t j = 0; j < fp.send_counts.size(); ++j) {
    term ^= pair_term(static_cast<uint64_t>(rank), j, fp.send_counts[j]);
  }
  for (size_t j = 0; j < fp.recv_counts.size(); ++j) {
    term ^= pair_term(j, static_cast<uint64_t>(rank), fp.recv_counts[j]);
  }
  return term;
}

std::string ranks_text(const std::vector<int>& ranks) {
  return fmt::format("rank{} {}", ranks.size() > 1 ? "s" : "", fmt::join(ranks, ", "));
}

}  // namespace

void DebugBackend::check(const Fingerprint& fp, milliseconds timeout) {
  const auto start = Clock::now();
  const auto deadline = start + timeout;
  const std::string context = fmt::format("{} (TUTTI_DEBUG=DETAIL check)", where(fp));
  auto fail = [&](const std::string& what) {
    throw DesyncError(fmt::format(
        "{}: {}. Every rank must issue the same collectives in the same order, with matching "
        "arguments.",
        context, what));
  };
  if (size() == 1) {
    const std::string report = fp.cross_checked() ? compare({fp}) : std::string();
    if (!report.empty()) fail(report);
    return;
  }

  // Fast round: everyone's (sequence, hash, cross-check term). It runs on
  // this thread, like the collective it checks, and ends a margin before the
  // timeout so that the slow round below still fits in it.
  const size_t n = static_cast<size_t>(size());
  const milliseconds margin = std::min(timeout / 5, milliseconds(2000));
  Tensor mine = Tensor::zeros({kWords}, DType::Int64);
  mine.data<int64_t>()[0] = static_cast<int64_t>(fp.sequence);
  mine.data<int64_t>()[1] = static_cast<int64_t>(fp.hash());
  mine.data<int64_t>()[2] = static_cast<int64_t>(cross_check_term(fp, rank()));
  Tensor all = Tensor::zeros({kWords * size()}, DType::Int64);
  std::string round_error;
  try {
    AllgatherOptions opts;
    opts.timeout = timeout - margin;
    helper_->allgather_into_tensor(all, mine, opts)->wait();
  } catch (const std::exception& e) {
    round_error = e.what();
  }
  if (round_error.empty()) {
    const auto* w = all.data<int64_t>();
    bool agreed = true;
    uint64_t cross = 0;
    for (size_t r = 0; r < n; ++r) {
      agreed = agreed && w[r * kWords] == w[0] && w[r * kWords + 1] == w[1];
      cross ^= static_cast<uint64_t>(w[r * kWords + 2]);
    }
    if (agreed && cross == 0) return;
  }

  // Slow round: the full fingerprints through the store, which also tells
  // who never arrived (the helper's connections may be gone by now).
  auto key = [&fp](size_t r) { return fmt::format("{}/{}", fp.sequence, r); };
  std::vector<Fingerprint> prints(n);
  std::vector<bool> present(n, false);
  try {
    const std::vector<uint8_t> full = fp.serialize();
    checks_store_->set(key(static_cast<size_t>(rank())), full);
    prints[static_cast<size_t>(rank())] = fp;
    present[static_cast<size_t>(rank())] = true;
    for (;;) {
      bool all_present = true;
      for (size_t r = 0; r < n; ++r) {
        if (present[r]) continue;
        if (checks_store_->check({key(r)})) {
          const auto blob = checks_store_->get(key(r));
          prints[r] = Fingerprint::deserialize(blob.data(), blob.size());
          present[r] = true;
        } else {
          all_present = false;
        }
      }
      if (all_present || Clock::now() >= deadline) break;
      std::this_thread::sleep_for(milliseconds(5));
    }
  } catch (const Error& e) {
    fail(
        fmt::format("the ranks disagree about {} or did not all reach it ({}), and comparing "
                    "their calls through the store failed: {}",
                    fp.call(), round_error.empty() ? "hashes differ" : round_error, e.what()));
  }
  std::vector<int> arrived, missing;
  std::vector<Fingerprint> arrived_prints;
  for (size_t r = 0; r < n; ++r) {
    if (present[r]) {
      arrived.push_back(static_cast<int>(r));
      arrived_prints.push_back(prints[r]);
    } else {
      missing.push_back(static_cast<int>(r));
    }
  }
  if (!missing.empty()) {
    std::string report = fmt::format(
        "{} did not reach collective #{} within {} ms while {} did; {} may have skipped it, be "
        "blocked in another operation, or have exited",
        ranks_text(missing), fp.sequence, timeout.count(), ranks_text(arrived),
        missing.size() > 1 ? "they" : "it");
    // What the ranks that did arrive called (in their own rank numbering).
    std::vector<std::string> calls;
    for (size_t i = 0; i < arrived.size();) {
      std::vector<int> same = {arrived[i]};
      size_t j = i + 1;
      while (j < arrived.size() && arrived_prints[j].call() == arrived_prints[i].call()) {
        same.push_back(arrived[j++]);
      }
      calls.push_back(fmt::format("{} called {}", ranks_text(same), arrived_prints[i].call()));
      i = j;
    }
    fail(fmt::format("{} ({})", report, fmt::join(calls, "; ")));
  }
  const std::string report = compare(prints);
  if (!report.empty()) fail(report);
  if (!round_error.empty()) {
    throw DistBackendError(
        fmt::format("{}: every rank called {}, but the check's own exchange failed: {}", context,
                    fp.call(), round_error));
  }
}

}  // namespace tutti::debug
