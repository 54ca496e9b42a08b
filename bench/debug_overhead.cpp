// What TUTTI_DEBUG=DETAIL costs per collective: in one job of N ranks
// (launched with tuttirun), the same allreduce on a group created with
// DETAIL off and on one created with it on (both subgroups of all ranks),
// alternating round by round. Each round times `iters` calls of
// allreduce(float32 SUM) + Work::wait() after a barrier; the rank-0 figure
// of each round is its mean per call. Prints the medians and their ratio.
//
//   tuttirun --nproc-per-node 2 build/release/bench/debug_overhead [rounds]
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <numeric>
#include <string>
#include <vector>

#include "tutti/tutti.hpp"

namespace {

double time_allreduce(tutti::ProcessGroup& pg, int64_t bytes, int iters) {
  std::vector<tutti::Tensor> t = {tutti::Tensor::zeros({bytes / 4}, tutti::DType::Float32)};
  pg.barrier()->wait();
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) pg.allreduce(t)->wait();
  const std::chrono::duration<double, std::micro> spent = std::chrono::steady_clock::now() - start;
  return spent.count() / iters;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 11;
  tutti::set_debug_level(tutti::DebugLevel::OFF);
  auto world = tutti::init_process_group({.backend = "gloo"});
  std::vector<int> everyone(static_cast<size_t>(world->size()));
  std::iota(everyone.begin(), everyone.end(), 0);
  // Both timed groups are subgroups of all ranks, built the same way, so
  // that the debug level is all that differs. "control" as the second
  // argument: both OFF, to see the noise.
  const bool control = argc > 2 && std::string(argv[2]) == "control";
  auto off = world->new_group(everyone);
  tutti::set_debug_level(control ? tutti::DebugLevel::OFF : tutti::DebugLevel::DETAIL);
  auto detail = world->new_group(everyone);
  if (off->rank() == 0) {
    fmt::print("# {} ranks, {} rounds; us per allreduce(float32, sum) + wait()\n", off->size(),
               rounds);
    fmt::print("{:>9} {:>11} {:>11} {:>9} {:>11}\n", "bytes", "OFF us", "DETAIL us", "ratio",
               "added us");
  }
  for (int64_t bytes : {int64_t{8}, int64_t{1} << 20}) {
    const int iters = bytes <= 4096 ? 2000 : 100;
    std::vector<double> t_off, t_detail;
    time_allreduce(*off, bytes, iters / 10);  // warm up both
    time_allreduce(*detail, bytes, iters / 10);
    for (int r = 0; r < rounds; ++r) {
      // Which goes first alternates, so a drift in load hits both alike.
      if (r % 2 == 0) {
        t_off.push_back(time_allreduce(*off, bytes, iters));
        t_detail.push_back(time_allreduce(*detail, bytes, iters));
      } else {
        t_detail.push_back(time_allreduce(*detail, bytes, iters));
        t_off.push_back(time_allreduce(*off, bytes, iters));
      }
    }
    if (off->rank() == 0) {
      const double a = median(t_off), b = median(t_detail);
      fmt::print("{:>9} {:>11.1f} {:>11.1f} {:>9.2f} {:>11.1f}\n", bytes, a, b, b / a, b - a);
    }
  }
  detail->barrier()->wait();
  off->barrier()->wait();
  world->barrier()->wait();
  return 0;
}
