// What tutti's MPI backend costs on top of MPI itself: the same allreduce
// and allgather sizes through ProcessGroup (issue, then Work::wait) in each
// of the backend's two modes, and through direct MPI calls (an OSU-style
// loop), in one mpirun, in rotating rounds so all sides see the same
// machine:
//
//   direct   MPI_Allreduce / MPI_Allgather on a communicator of its own
//   tutti    the default mode (a worker runs blocking calls; catchable
//            TimeoutError at the deadline)
//   inline   TUTTI_MPI_INLINE=1 (the waiting thread runs them; the job
//            ends at a deadline), a group made with new_group
//
//   mpirun -n 2 build/release/bench/mpi_overhead [--rounds 15] [--json FILE]
//
// Per round and side: the mean time per call over `iters` calls, the
// slowest rank's. Reported per side: the median over rounds, the
// difference to direct (µs per call), and the median of the per-round
// ratios to direct (paired: each round's sides ran back to back).
#include <mpi.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tutti/init.hpp"
#include "tutti/process_group.hpp"

namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// Runs `body` iters times; returns µs per call, the slowest rank's.
template <class Body>
double timed(MPI_Comm comm, int iters, Body body) {
  MPI_Barrier(comm);
  const auto start = Clock::now();
  for (int i = 0; i < iters; ++i) body();
  double us = std::chrono::duration<double, std::micro>(Clock::now() - start).count() / iters;
  double slowest = 0;
  MPI_Allreduce(&us, &slowest, 1, MPI_DOUBLE, MPI_MAX, comm);
  return slowest;
}

struct Row {
  std::string op;
  size_t bytes;
  double direct_us, tutti_us, inline_us;
  double tutti_ratio, inline_ratio;  // medians of per-round ratios to direct
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tutti MPI backend overhead against direct MPI calls"};
  int rounds = 15;
  size_t min_bytes = 8, max_bytes = size_t{4} << 20;
  std::string json_path;
  app.add_option("--rounds", rounds, "alternating rounds per size and side")
      ->check(CLI::Range(1, 1000));
  app.add_option("--min-bytes", min_bytes, "smallest message per rank");
  app.add_option("--max-bytes", max_bytes, "largest message per rank");
  app.add_option("--json", json_path, "also write the rows as JSON here");
  CLI11_PARSE(app, argc, argv);

  // The world group in the default mode, a second group over the same ranks
  // in inline mode (the backend reads TUTTI_MPI_INLINE as it makes a group).
  unsetenv("TUTTI_MPI_INLINE");
  auto pg = tutti::init_process_group({.backend = "mpi"});
  std::vector<int> everyone(static_cast<size_t>(pg->size()));
  for (int r = 0; r < pg->size(); ++r) everyone[static_cast<size_t>(r)] = r;
  setenv("TUTTI_MPI_INLINE", "1", 1);
  auto inline_pg = pg->new_group(everyone);
  unsetenv("TUTTI_MPI_INLINE");
  // The direct side gets a communicator of its own, as an application would.
  MPI_Comm comm;
  MPI_Comm_dup(MPI_COMM_WORLD, &comm);
  const int rank = pg->rank(), size = pg->size();

  // The goals' sizes (8 B, 64 KiB and up) and steps between.
  const std::vector<size_t> sizes = {8, 64, 512, 4096, 32768, 65536, 262144, 1u << 20, 4u << 20};
  std::vector<Row> rows;
  for (const char* op : {"allreduce", "allgather"}) {
    for (size_t bytes : sizes) {
      if (bytes < min_bytes || bytes > max_bytes) continue;
      const int64_t count = static_cast<int64_t>(bytes / 4);
      tutti::Tensor in = tutti::Tensor::zeros({count}, tutti::DType::Float32);
      tutti::Tensor out = tutti::Tensor::zeros({count * size}, tutti::DType::Float32);
      std::vector<tutti::Tensor> list = {in};
      const bool is_allreduce = std::string(op) == "allreduce";
      const int iters = bytes <= 65536 ? 2000 : bytes <= (1 << 20) ? 100 : 20;
      auto direct = [&] {
        if (is_allreduce) {
          MPI_Allreduce(MPI_IN_PLACE, in.data_ptr(), static_cast<int>(count), MPI_FLOAT, MPI_SUM,
                        comm);
        } else {
          MPI_Allgather(in.data_ptr(), static_cast<int>(count), MPI_FLOAT, out.data_ptr(),
                        static_cast<int>(count), MPI_FLOAT, comm);
        }
      };
      auto through = [&](tutti::ProcessGroup& group) {
        return [&] {
          if (is_allreduce) {
            group.allreduce(list)->wait();
          } else {
            group.allgather_into_tensor(out, in)->wait();
          }
        };
      };
      auto through_tutti = through(*pg);
      auto through_inline = through(*inline_pg);
      // Warm up every path.
      timed(comm, std::max(iters / 10, 2), direct);
      timed(comm, std::max(iters / 10, 2), through_tutti);
      timed(comm, std::max(iters / 10, 2), through_inline);
      std::vector<double> d, t, n, t_ratio, n_ratio;
      for (int r = 0; r < rounds; ++r) {
        // Rotate which side goes first.
        double dr = 0, tr = 0, nr = 0;
        for (int k = 0; k < 3; ++k) {
          switch ((r + k) % 3) {
            case 0:
              dr = timed(comm, iters, direct);
              break;
            case 1:
              tr = timed(comm, iters, through_tutti);
              break;
            default:
              nr = timed(comm, iters, through_inline);
              break;
          }
        }
        d.push_back(dr);
        t.push_back(tr);
        n.push_back(nr);
        t_ratio.push_back(tr / dr);
        n_ratio.push_back(nr / dr);
      }
      rows.push_back(
          {op, bytes, median(d), median(t), median(n), median(t_ratio), median(n_ratio)});
    }
  }
  if (rank == 0) {
    std::printf(
        "# tutti MPI backend vs direct MPI calls: %d ranks, %d rounds; medians of per-round "
        "means (slowest rank), ratio = median of per-round ratios to direct\n",
        size, rounds);
    std::printf("%-10s %9s %10s %10s %9s %7s %10s %9s %7s\n", "op", "bytes", "direct(us)",
                "tutti(us)", "diff(us)", "ratio", "inline(us)", "diff(us)", "ratio");
    nlohmann::json json = nlohmann::json::array();
    for (const auto& r : rows) {
      std::printf("%-10s %9zu %10.2f %10.2f %9.2f %7.3f %10.2f %9.2f %7.3f\n", r.op.c_str(),
                  r.bytes, r.direct_us, r.tutti_us, r.tutti_us - r.direct_us, r.tutti_ratio,
                  r.inline_us, r.inline_us - r.direct_us, r.inline_ratio);
      json.push_back({{"op", r.op},
                      {"bytes", r.bytes},
                      {"ranks", size},
                      {"direct_us", r.direct_us},
                      {"tutti_us", r.tutti_us},
                      {"inline_us", r.inline_us},
                      {"tutti_ratio", r.tutti_ratio},
                      {"inline_ratio", r.inline_ratio}});
    }
    if (!json_path.empty()) std::ofstream(json_path) << json.dump(2) << "\n";
  }
  MPI_Comm_free(&comm);
  inline_pg.reset();
  pg.reset();
  return 0;
}
