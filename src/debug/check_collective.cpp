// The DETAIL check of one collective: a round between every rank and rank 0
// over the helper backend (see debug_backend.hpp).
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cstring>

#include "debug/debug_backend.hpp"
#include "tutti/debug.hpp"
#include "tutti/errors.hpp"

namespace tutti::debug {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Helper tags: collectives use bit 30 clear, point to point bit 30 set.
int collective_tag(uint64_t sequence) { return static_cast<int>(sequence & 0x3FFFFFFF); }

enum Verdict : int64_t { kAgreed = 0, kSendFull = 1, kFailed = 2 };

// Record a rank sends rank 0: sequence, hash, length of the full
// fingerprint, whether it needs the cross-check.
constexpr int64_t kRecordWords = 4;
// Verdict rank 0 sends back: verdict, length of the message that follows.
constexpr int64_t kVerdictWords = 2;

Tensor words(int64_t n) { return Tensor::zeros({n}, DType::Int64); }

Tensor bytes(const std::string& text) {
  Tensor t = Tensor::empty({static_cast<int64_t>(text.size())}, DType::UInt8);
  if (!text.empty()) std::memcpy(t.data_ptr(), text.data(), text.size());
  return t;
}

Tensor bytes(const std::vector<uint8_t>& data) {
  Tensor t = Tensor::empty({static_cast<int64_t>(data.size())}, DType::UInt8);
  if (!data.empty()) std::memcpy(t.data_ptr(), data.data(), data.size());
  return t;
}

milliseconds until(Clock::time_point deadline) {
  return std::max(std::chrono::duration_cast<milliseconds>(deadline - Clock::now()),
                  milliseconds(1));
}

}  // namespace

void DebugBackend::check(const Fingerprint& fp, milliseconds timeout) {
  const auto start = Clock::now();
  const std::string context = fmt::format("{} (TUTTI_DEBUG=DETAIL check)", where(fp));
  const std::string advice =
      " Every rank must issue the same collectives in the same order, with matching arguments.";
  auto fail = [&](const std::string& what) -> void {
    throw DesyncError(fmt::format("{}: {}.{}", context, what, advice));
  };
  if (size() == 1) {
    if (fp.cross_checked()) {
      const std::string report = compare({fp});
      if (!report.empty()) fail(report);
    }
    return;
  }
  const int tag = collective_tag(fp.sequence);
  const std::vector<uint8_t> full = fp.serialize();
  const uint64_t hash = fp.hash();
  auto send = [&](Tensor t, int peer) { return helper_p2p(OpType::SEND, std::move(t), peer, tag); };
  auto recv = [&](Tensor t, int peer) { return helper_p2p(OpType::RECV, std::move(t), peer, tag); };

  if (rank() != 0) {
    const auto deadline = start + timeout;
    Tensor record = words(kRecordWords);
    auto* r = record.data<int64_t>();
    r[0] = static_cast<int64_t>(fp.sequence);
    r[1] = static_cast<int64_t>(hash);
    r[2] = static_cast<int64_t>(full.size());
    r[3] = fp.cross_checked() ? 1 : 0;
    Tensor verdict = words(kVerdictWords);
    try {
      auto sent = send(record, 0);
      auto answered = recv(verdict, 0);
      sent->wait(until(deadline));
      answered->wait(until(deadline));
      if (verdict.data<int64_t>()[0] == kSendFull) {
        send(bytes(full), 0)->wait(until(deadline));
        recv(verdict, 0)->wait(until(deadline));
      }
      if (verdict.data<int64_t>()[0] == kAgreed) return;
    } catch (const TimeoutError&) {
      fail(fmt::format(
          "rank 0, which runs the checks of this group, gave no verdict on {} within {} ms: "
          "rank 0 did not reach this collective (it may have skipped it, be blocked in another "
          "operation, or have exited), or another rank stalled it",
          fp.call(), timeout.count()));
    } catch (const Error& e) {
      fail(fmt::format("exchanging fingerprints with rank 0 failed: {}", e.what()));
    }
    const int64_t length = verdict.data<int64_t>()[1];
    Tensor text = Tensor::empty({length}, DType::UInt8);
    try {
      recv(text, 0)->wait(until(deadline));
    } catch (const Error& e) {
      fail(fmt::format("rank 0 found a mismatch but its report did not arrive: {}", e.what()));
    }
    fail(std::string(static_cast<const char*>(text.data_ptr()), static_cast<size_t>(length)));
  }

  // Rank 0 leaves itself a margin before the timeout, so that the ranks
  // that arrived still get its verdict before their own deadline.
  const milliseconds margin = std::min(timeout / 5, milliseconds(2000));
  const auto gather_deadline = start + timeout - margin;
  const auto deadline = start + timeout;
  const size_t n = static_cast<size_t>(size());
  std::vector<Tensor> records(n);
  std::vector<std::shared_ptr<Work>> pending(n);
  std::vector<int> arrived = {0}, missing;
  std::vector<std::string> lost;
  for (size_t p = 1; p < n; ++p) {
    records[p] = words(kRecordWords);
    try {
      pending[p] = recv(records[p], static_cast<int>(p));
    } catch (const Error& e) {
      lost.push_back(e.what());
    }
  }
  for (size_t p = 1; p < n; ++p) {
    if (!pending[p]) {
      missing.push_back(static_cast<int>(p));
      continue;
    }
    try {
      pending[p]->wait(until(gather_deadline));
      arrived.push_back(static_cast<int>(p));
    } catch (const TimeoutError&) {
      missing.push_back(static_cast<int>(p));
    } catch (const Error& e) {
      missing.push_back(static_cast<int>(p));
      lost.push_back(e.what());
    }
  }
  // Sends the verdict (and the report, if any) to every rank that arrived.
  auto answer = [&](Verdict v, const std::string& report) {
    std::vector<std::shared_ptr<Work>> sends;
    for (int p : arrived) {
      if (p == 0) continue;
      Tensor head = words(kVerdictWords);
      head.data<int64_t>()[0] = v;
      head.data<int64_t>()[1] = static_cast<int64_t>(report.size());
      try {
        sends.push_back(send(head, p));
        if (v == kFailed) sends.push_back(send(bytes(report), p));
      } catch (const Error&) {
        // Lost connection: that rank raises on its own.
      }
    }
    try {
      for (auto& s : sends) s->wait(until(deadline));
    } catch (const Error&) {
      // A rank that arrived and then went away; our own verdict stands.
    }
  };
  if (!missing.empty()) {
    const std::string report = fmt::format(
        "{} did not reach {} within {} ms while {} did; {} may have skipped this collective, "
        "be blocked in another operation, or have exited{}{}",
        fmt::format("rank{} {}", missing.size() > 1 ? "s" : "", fmt::join(missing, ", ")),
        fp.call(), (timeout - margin).count(),
        fmt::format("rank{} {}", arrived.size() > 1 ? "s" : "", fmt::join(arrived, ", ")),
        missing.size() > 1 ? "they" : "it", lost.empty() ? "" : " (",
        lost.empty() ? std::string() : fmt::format("{})", fmt::join(lost, "; ")));
    answer(kFailed, report);
    fail(report);
  }
  std::vector<int> differing;
  bool cross_check = fp.cross_checked();
  for (size_t p = 1; p < n; ++p) {
    const auto* r = records[p].data<int64_t>();
    if (r[0] != static_cast<int64_t>(fp.sequence) || r[1] != static_cast<int64_t>(hash)) {
      differing.push_back(static_cast<int>(p));
    }
    cross_check = cross_check || r[3] != 0;
  }
  if (differing.empty() && !cross_check) {
    answer(kAgreed, {});
    return;
  }
  // Something differs: fetch every full fingerprint and say what.
  answer(kSendFull, {});
  std::vector<Fingerprint> prints(n);
  prints[0] = fp;
  try {
    std::vector<Tensor> blobs(n);
    std::vector<std::shared_ptr<Work>> fetches(n);
    for (size_t p = 1; p < n; ++p) {
      blobs[p] = Tensor::empty({records[p].data<int64_t>()[2]}, DType::UInt8);
      fetches[p] = recv(blobs[p], static_cast<int>(p));
    }
    for (size_t p = 1; p < n; ++p) {
      fetches[p]->wait(until(deadline));
      prints[p] = Fingerprint::deserialize(static_cast<const uint8_t*>(blobs[p].data_ptr()),
                                           blobs[p].nbytes());
    }
  } catch (const Error& e) {
    const std::string report = fmt::format(
        "rank{} {} differ from {} (the hashes of their calls differ), but fetching their "
        "fingerprints to say how failed: {}",
        differing.size() > 1 ? "s" : "", fmt::join(differing, ", "), fp.call(), e.what());
    answer(kFailed, report);
    fail(report);
  }
  const std::string report = compare(prints);
  answer(report.empty() ? kAgreed : kFailed, report);
  if (!report.empty()) fail(report);
}

}  // namespace tutti::debug
