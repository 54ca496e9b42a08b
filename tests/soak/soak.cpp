// tutti-soak: many random collectives, every result checked, and the
// process's memory, file descriptors and threads watched for growth.
//
//   tuttirun -n 4 tutti-soak [--ops N] [--seed S] [--max-bytes B]
//            [--churn-every C] [--rss-tolerance-mib M]
//
// Every rank draws the same sequence (soak_ops.hpp): for each operation a
// group (the world, halves and parities as a split would make, the world
// reversed, a random subset, and a "churn" group re-created every C
// operations), a kind (every collective and point-to-point call), a dtype,
// a reduce op, a size (0 to B bytes, skewed small) and roots; one in eight
// draws is a batch of 2 to 4 operations issued before any is waited for.
// Ranks outside the group skip it. Results are checked against the
// reference computed locally.
//
// Samples /proc/self (VmRSS, open fds, threads) once warmed up (at the
// first churn after 10% of the operations) and at the end, both taken
// between two churn groups, so the same groups are alive. Fails if fds grew
// at all, threads by more than kThreadTolerance, or RSS by more than M MiB
// (see kDefaultRssToleranceMib).
// Under AddressSanitizer RSS is reported, not checked: its quarantine holds
// freed memory on purpose; LeakSanitizer checks for leaks at exit instead.
#include <dirent.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <malloc.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "core/storage.hpp"
#include "soak/soak_ops.hpp"
#include "tutti/tutti.hpp"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// RSS may grow by this much between warm-up and the end without counting as
// a leak. After warm-up every buffer size has been allocated and freed many
// times, but glibc's allocator keeps freed chunks in per-thread arenas and
// trims them only from the top, so where a 1 MiB buffer lands can leave
// holes: a few of the largest messages' worth (each operation holds at most
// about 4 MiB: inputs, outputs, the reference and gloo's scratch). A leak of
// 100 bytes per operation over 100,000 operations (10 MiB) still shows.
constexpr int64_t kDefaultRssToleranceMib = 8;

// Threads may grow by this much: each group's waiter pool (gloo backend)
// keeps up to 2 idle threads, so a group that had fewer at warm-up may have
// 2 more at the end; a thread leaked per churned group exceeds it.
constexpr int64_t kThreadTolerance = 4;

// Live heap (mallinfo2: allocated, not freed) may grow by this much: the
// largest operation's buffers (about 4 MiB with 1 MiB messages) are freed
// some operations after it completes (gloo backend's Retired), so which ones
// are alive at a sample varies. A leak of 25 bytes per operation over
// 100,000 operations exceeds it (700 bytes over soak.short's 3,000).
constexpr int64_t kHeapToleranceMib = 2;

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kUnderAsan = true;
#else
constexpr bool kUnderAsan = false;
#endif

struct Args {
  int64_t ops = 3000;
  uint64_t seed = 1;
  int64_t max_bytes = 1 << 20;
  int64_t churn_every = 500;
  int64_t rss_tolerance_mib = kDefaultRssToleranceMib;
  bool trace = false;  // print every operation as it is issued
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string name = argv[i];
    const std::string value = argv[i + 1];
    if (name == "--ops") {
      a.ops = std::stoll(value);
    } else if (name == "--seed") {
      a.seed = std::stoull(value);
    } else if (name == "--max-bytes") {
      a.max_bytes = std::stoll(value);
    } else if (name == "--churn-every") {
      a.churn_every = std::stoll(value);
    } else if (name == "--trace") {
      a.trace = value != "0";
    } else if (name == "--rss-tolerance-mib") {
      a.rss_tolerance_mib = std::stoll(value);
    } else {
      throw std::invalid_argument("unknown option " + name + " (see the source's header)");
    }
  }
  if (a.ops < 1 || a.max_bytes < 1 || a.churn_every < 1) {
    throw std::invalid_argument("--ops, --max-bytes and --churn-every must be positive");
  }
  return a;
}

struct Sample {
  int64_t heap_kib = 0;  // allocated and not freed (mallinfo2): live memory
  int64_t rss_kib = 0;
  int64_t fds = 0;
  int64_t threads = 0;
};

Sample sample() {
  Sample s;
  // Free pages go back to the system first, so RSS counts memory in use
  // and what fragmentation keeps, not what the allocator merely holds.
  ::malloc_trim(0);
  // Likewise tutti's cache of freed large tensor blocks (bounded, 8 MiB):
  // its level at an instant depends on the last few sizes freed.
  tutti::detail::release_cached_storage();
  const struct mallinfo2 heap = ::mallinfo2();
  s.heap_kib = static_cast<int64_t>((heap.uordblks + heap.hblkhd) / 1024);
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.starts_with("VmRSS:")) s.rss_kib = std::stoll(line.substr(6));
    if (line.starts_with("Threads:")) s.threads = std::stoll(line.substr(8));
  }
  if (DIR* dir = ::opendir("/proc/self/fd")) {
    while (const dirent* e = ::readdir(dir)) {
      if (e->d_name[0] != '.') ++s.fds;
    }
    ::closedir(dir);
    --s.fds;  // the directory's own
  }
  return s;
}

// After the waiter pools' extra threads have left (gloo's WaiterPool keeps
// 2 idle threads per group and lets the others go after 1 s idle).
Sample settled_sample() {
  std::this_thread::sleep_for(1500ms);
  return sample();
}

std::string show(const Sample& s) {
  return fmt::format("RSS {:.1f} MiB (heap in use {:.1f} MiB), {} fds, {} threads",
                     static_cast<double>(s.rss_kib) / 1024, static_cast<double>(s.heap_kib) / 1024,
                     s.fds, s.threads);
}

// A group of the soak and which world ranks are in it, in group-rank order.
struct Group {
  std::string name;
  std::vector<int> members;
  std::shared_ptr<tutti::ProcessGroup> pg;  // null on ranks outside
};

Group make_group(tutti::ProcessGroup& world, std::string name, std::vector<int> members) {
  auto pg = world.new_group(members);
  return Group{std::move(name), std::move(members), std::move(pg)};
}

std::vector<int> random_subset(tutti::soak::Drawer& drawer, int world, int min_size) {
  std::vector<int> ranks;
  while (static_cast<int>(ranks.size()) < min_size) {
    ranks.clear();
    for (int r = 0; r < world; ++r) {
      if (drawer.below(2) == 1) ranks.push_back(r);
    }
  }
  // A random order: group rank k is not world rank k.
  for (size_t i = ranks.size(); i > 1; --i) std::swap(ranks[i - 1], ranks[drawer.below(i)]);
  return ranks;
}

int run(const Args& args) {
  tutti::InitOptions init;
  init.backend = "gloo";
  init.timeout = 60s;
  auto world = tutti::init_process_group(init);
  const int rank = world->rank();
  const int size = world->size();
  tutti::soak::Drawer drawer(args.seed);

  std::vector<Group> groups;
  std::vector<int> all, evens, odds, low, high, reversed;
  for (int r = 0; r < size; ++r) {
    all.push_back(r);
    (r % 2 == 0 ? evens : odds).push_back(r);
    (r < (size + 1) / 2 ? low : high).push_back(r);
    reversed.insert(reversed.begin(), r);
  }
  groups.push_back(Group{"world", all, world});
  for (auto& [name, members] :
       std::vector<std::pair<std::string, std::vector<int>>>{{"low half", low},
                                                             {"high half", high},
                                                             {"evens", evens},
                                                             {"odds", odds},
                                                             {"reversed", reversed}}) {
    if (!members.empty()) groups.push_back(make_group(*world, name, members));
  }
  groups.push_back(make_group(*world, "random", random_subset(drawer, size, std::min(size, 2))));
  const size_t churn = groups.size();
  groups.push_back(make_group(*world, "churn", random_subset(drawer, size, 1)));
  if (rank == 0) {
    for (const auto& g : groups)
      fmt::print("group {}: ranks {}\n", g.name, fmt::join(g.members, ","));
  }

  const int64_t warm_at = ((args.ops / 10) / args.churn_every + 1) * args.churn_every;
  Sample warm, end;
  bool warmed = false;
  int64_t failures = 0, executed = 0, drawn = 0;
  std::vector<int64_t> per_kind(tutti::soak::kNumKinds, 0);
  const auto start = Clock::now();
  auto warm_time = start;
  int64_t warm_drawn = 0;
  int64_t next_report = args.ops / 10;

  while (drawn < args.ops) {
    if (drawn > 0 && drawn % args.churn_every == 0) {
      Group& old = groups[churn];
      if (old.pg) old.pg->barrier()->wait();  // peers are done with it
      old.pg.reset();
      if (!warmed && drawn >= warm_at) {
        warmed = true;
        warm = settled_sample();
        warm_time = Clock::now();
        warm_drawn = drawn;
      }
      groups[churn] = make_group(*world, "churn", random_subset(drawer, size, 1));
    }
    Group& g = groups[drawer.below(groups.size())];
    const int batch = drawer.below(8) == 0 ? 2 + static_cast<int>(drawer.below(3)) : 1;
    std::vector<tutti::soak::Draw> draws;
    for (int b = 0; b < batch && drawn < args.ops; ++b) {
      draws.push_back(drawer.draw(static_cast<int>(g.members.size()), args.max_bytes,
                                  static_cast<int>(drawn % (1 << 30))));
      ++drawn;
    }
    if (!g.pg) continue;
    std::vector<tutti::soak::Issued> issued;
    for (const auto& d : draws) {
      if (args.trace) {
        fmt::print("op {} group {}: {}\n", drawn, g.name, tutti::soak::describe(d));
        std::fflush(stdout);
      }
      issued.push_back(tutti::soak::issue(*g.pg, d));
      ++per_kind[static_cast<size_t>(d.kind)];
    }
    for (auto& op : issued) {
      for (auto& w : op.works) w->wait();
    }
    for (size_t k = 0; k < issued.size(); ++k) {
      ++executed;
      const std::string diff = issued[k].check();
      if (!diff.empty()) {
        ++failures;
        if (failures <= 20) fmt::print("rank {}: WRONG in group {}: {}\n", rank, g.name, diff);
      }
    }
    if (rank == 0 && drawn >= next_report) {
      const double s = std::chrono::duration<double>(Clock::now() - start).count();
      fmt::print("{} ops, {:.1f} s, {}\n", drawn, s, show(sample()));
      std::fflush(stdout);
      next_report += args.ops / 10;
    }
  }
  // Between two churn groups, as at warm-up.
  if (groups[churn].pg) groups[churn].pg->barrier()->wait();
  groups[churn].pg.reset();
  world->barrier()->wait();
  end = settled_sample();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (!warmed) {
    warm = end;
    warm_time = Clock::now();
  }

  int problems = failures > 0 ? 1 : 0;
  const int64_t rss_growth_kib = end.rss_kib - warm.rss_kib;
  fmt::print(
      "rank {}: {} ops drawn, {} run here, {} wrong; warm (op {}): {}; end: {}; RSS {:+.1f} "
      "MiB\n",
      rank, drawn, executed, failures, warm_drawn, show(warm), show(end),
      static_cast<double>(rss_growth_kib) / 1024);
  if (end.fds > warm.fds) {
    fmt::print("rank {}: FAIL: open fds grew from {} to {}\n", rank, warm.fds, end.fds);
    problems = 1;
  }
  if (end.threads > warm.threads + kThreadTolerance) {
    fmt::print("rank {}: FAIL: threads grew from {} to {} (more than {})\n", rank, warm.threads,
               end.threads, kThreadTolerance);
    problems = 1;
  }
  const int64_t heap_growth_kib = end.heap_kib - warm.heap_kib;
  if (!kUnderAsan && heap_growth_kib > kHeapToleranceMib * 1024) {
    fmt::print("rank {}: FAIL: live heap grew by {:.1f} MiB (more than {} MiB)\n", rank,
               static_cast<double>(heap_growth_kib) / 1024, kHeapToleranceMib);
    problems = 1;
  }
  if (kUnderAsan) {
    fmt::print("rank {}: RSS not checked under AddressSanitizer (its quarantine)\n", rank);
  } else if (rss_growth_kib > args.rss_tolerance_mib * 1024) {
    fmt::print("rank {}: FAIL: RSS grew by more than {} MiB\n", rank, args.rss_tolerance_mib);
    problems = 1;
  }
  if (rank == 0) {
    const double after_warm = std::chrono::duration<double>(Clock::now() - warm_time).count();
    std::string kinds;
    for (int k = 0; k < tutti::soak::kNumKinds; ++k) {
      kinds += fmt::format("{}{} {}", k == 0 ? "" : ", ",
                           tutti::soak::to_string(static_cast<tutti::soak::Kind>(k)),
                           per_kind[static_cast<size_t>(k)]);
    }
    fmt::print("rank 0 ran: {}\n", kinds);
    fmt::print(
        "soak: {} ops on {} ranks in {:.1f} s ({:.0f} ops/s; {:.0f} ops/s after warm-up), "
        "seed {}\n",
        drawn, size, seconds, static_cast<double>(drawn) / seconds,
        static_cast<double>(drawn - warm_drawn) / std::max(after_warm, 1e-9), args.seed);
  }
  // Everyone's verdict, so each rank's exit code says whether the soak passed.
  tutti::Tensor verdict = tutti::Tensor::zeros({1}, tutti::DType::Int32);
  verdict.data<int32_t>()[0] = problems;
  std::vector<tutti::Tensor> v = {verdict};
  world->allreduce(v, {.reduce_op = tutti::ReduceOp::MAX})->wait();
  world->barrier()->wait();
  return verdict.data<int32_t>()[0] == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  // Lines reach tuttirun as they are written, even from a rank it stops.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  try {
    return run(parse(argc, argv));
  } catch (const std::exception& e) {
    fmt::print(stderr, "tutti-soak: {}\n", e.what());
    return 1;
  }
}
