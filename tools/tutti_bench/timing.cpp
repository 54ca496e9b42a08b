#include "tutti_bench/timing.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <set>
#include <thread>

#include "tutti/errors.hpp"

namespace tutti::bench {
namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kKeyPrefix = "tutti-bench/";

std::string row_key(uint64_t row_id, int rank) {
  return fmt::format("{}row/{}/{}", kKeyPrefix, row_id, rank);
}

// [wrong: int64][seconds: double...], in this machine's byte order (all
// ranks of a job share it).
std::vector<uint8_t> serialize(const Measurement& m) {
  std::vector<uint8_t> bytes(sizeof(int64_t) + m.seconds.size() * sizeof(double));
  std::memcpy(bytes.data(), &m.wrong, sizeof(int64_t));
  if (!m.seconds.empty()) {
    std::memcpy(bytes.data() + sizeof(int64_t), m.seconds.data(),
                m.seconds.size() * sizeof(double));
  }
  return bytes;
}

Measurement deserialize(const std::vector<uint8_t>& bytes, size_t iters, int rank) {
  if (bytes.size() != sizeof(int64_t) + iters * sizeof(double)) {
    throw DistStoreError(fmt::format(
        "tutti-bench: rank {} reported {} bytes of results, expected {}; do all ranks run the "
        "same tutti-bench with the same options?",
        rank, bytes.size(), sizeof(int64_t) + iters * sizeof(double)));
  }
  Measurement m;
  m.seconds.resize(iters);
  std::memcpy(&m.wrong, bytes.data(), sizeof(int64_t));
  if (iters > 0) {
    std::memcpy(m.seconds.data(), bytes.data() + sizeof(int64_t), iters * sizeof(double));
  }
  return m;
}

double median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t mid = values.size() / 2;
  return values.size() % 2 == 1 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
}

}  // namespace

Measurement measure(OpCase& op, ProcessGroup& pg, const MeasureOptions& options) {
  op.fill();
  for (int i = 0; i < options.warmup; ++i) op.run();
  // Start the timed iterations together; the barrier itself is not timed.
  pg.barrier()->wait(pg.timeout());
  Measurement m;
  m.seconds.reserve(static_cast<size_t>(options.iters));
  for (int i = 0; i < options.iters; ++i) {
    const auto start = Clock::now();
    op.run();
    m.seconds.push_back(std::chrono::duration<double>(Clock::now() - start).count());
  }
  if (options.check) {
    op.fill();  // fresh inputs: in-place operations overwrote them
    op.run();
    if (options.corrupt) corrupt(op.results());
    m.wrong = op.count_wrong();
  }
  return m;
}

std::optional<Combined> combine(Store& store, int rank, int size, uint64_t row_id,
                                const Measurement& mine) {
  if (rank != 0) {
    store.set(row_key(row_id, rank), serialize(mine));
    return std::nullopt;
  }
  std::vector<double> slowest = mine.seconds;
  Combined combined;
  combined.wrong = mine.wrong;
  for (int r = 1; r < size; ++r) {
    const std::string key = row_key(row_id, r);
    const Measurement theirs = deserialize(store.get(key), slowest.size(), r);
    store.delete_key(key);
    for (size_t i = 0; i < slowest.size(); ++i) {
      slowest[i] = std::max(slowest[i], theirs.seconds[i]);
    }
    combined.wrong += theirs.wrong;
  }
  combined.seconds = median(std::move(slowest));
  return combined;
}

int64_t share_total(ProcessGroup& pg, int64_t total_on_rank0, std::chrono::milliseconds timeout) {
  Store& store = *pg.store();
  const std::string total_key = std::string(kKeyPrefix) + "total-wrong";
  const std::string done_key = std::string(kKeyPrefix) + "done";
  if (pg.rank() != 0) {
    const std::string text = store.get_string(total_key);
    store.add(done_key, 1);
    return std::stoll(text);
  }
  store.set(total_key, std::to_string(total_on_rank0));
  // Rank 0 hosts the store: stay until every rank has read the total.
  const auto deadline = Clock::now() + timeout;
  while (store.add(done_key, 0) < pg.size() - 1) {
    if (Clock::now() > deadline) {
      throw TimeoutError(fmt::format(
          "tutti-bench: rank 0 waited {} ms for the other ranks to read the result; some rank "
          "did not finish",
          timeout.count()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return total_on_rank0;
}

void corrupt(std::vector<Tensor> tensors) {
  for (Tensor& t : tensors) {
    if (t.numel() == 0) continue;
    const std::set<int64_t> victims{0, t.numel() / 2, t.numel() - 1};
    auto* bytes = static_cast<uint8_t*>(t.data_ptr());
    for (const int64_t i : victims) {
      for (size_t b = 0; b < t.element_size(); ++b) {
        bytes[static_cast<size_t>(i) * t.element_size() + b] ^= 0xff;
      }
    }
  }
}

}  // namespace tutti::bench
