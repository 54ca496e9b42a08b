// tutti-bench: nccl-tests for tutti. Times every collective over a sweep of
// sizes, checks each result, and prints nccl-tests' table on rank 0.
//
//   tuttirun -n 4 tutti-bench --op allreduce --min-bytes 8 --max-bytes 64M
//
// Run one process per rank with MASTER_ADDR, MASTER_PORT, RANK and
// WORLD_SIZE set (env://). Exit status: 0 all results right, 1 some wrong
// elements on some rank, 2 bad options, 3 an operation or the store failed.
//
// Test hook: TUTTI_BENCH_CORRUPT=op[,op...] or all makes rank 0 flip a few
// elements of its checked results of those ops before checking them.
#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <set>
#include <sstream>

#include "tutti/errors.hpp"
#include "tutti/init.hpp"
#include "tutti_bench/ops.hpp"
#include "tutti_bench/options.hpp"
#include "tutti_bench/report.hpp"
#include "tutti_bench/timing.hpp"

namespace tutti::bench {
namespace {

// The sizes of the sweep: min_bytes, doubling, up to max_bytes.
std::vector<uint64_t> sweep(const BenchOptions& o) {
  std::vector<uint64_t> sizes;
  for (uint64_t size = o.min_bytes; size <= o.max_bytes; size = size == 0 ? 1 : size * 2) {
    sizes.push_back(size);
  }
  return sizes;
}

std::set<std::string> ops_to_corrupt() {
  std::set<std::string> ops;
  const char* value = std::getenv("TUTTI_BENCH_CORRUPT");
  if (value == nullptr) return ops;
  std::stringstream list(value);
  for (std::string name; std::getline(list, name, ',');) {
    if (name == "all") {
      for (const auto& op : all_ops()) ops.insert(op.name);
    } else {
      ops.insert(name);
    }
  }
  return ops;
}

// nccl-tests' "# Using devices" block: where each rank runs.
void print_ranks(ProcessGroup& pg, Report& report) {
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  const std::string mine = fmt::format("Rank {:>2} Pid {:>7} on {}", pg.rank(), getpid(), host);
  if (pg.rank() != 0) {
    pg.store()->set(fmt::format("tutti-bench/host/{}", pg.rank()), mine);
    return;
  }
  report.note("Using ranks");
  report.note(fmt::format(" {}", mine));
  for (int r = 1; r < pg.size(); ++r) {
    const std::string key = fmt::format("tutti-bench/host/{}", r);
    report.note(fmt::format(" {}", pg.store()->get_string(key)));
    pg.store()->delete_key(key);
  }
  report.note("");
}

Row make_row(const OpSpec& spec, const Counts& counts, const BenchOptions& o,
             const std::string& backend, int world_size, const Combined& combined) {
  Row row;
  row.op = spec.name;
  row.backend = backend;
  row.world_size = world_size;
  row.size = std::max(counts.send, counts.recv) * static_cast<int64_t>(itemsize(o.dtype));
  row.count = counts.param;
  row.type = spec.sized ? to_string(o.dtype) : "none";
  row.redop = spec.reduces ? to_string(o.redop) : "none";
  row.root = spec.rooted ? o.root : -1;
  row.time_us = combined.seconds * 1e6;
  row.algbw = combined.seconds > 0 ? static_cast<double>(row.size) / 1e9 / combined.seconds : 0;
  row.busbw = row.algbw * spec.bus_factor(world_size);
  if (o.check) row.wrong = combined.wrong;
  return row;
}

int run(const BenchOptions& o) {
  InitOptions init;
  init.backend = o.backend;
  init.timeout = std::chrono::seconds(o.timeout_seconds);
  std::shared_ptr<ProcessGroup> pg;
  try {
    pg = init_process_group(init);
  } catch (const InvalidArgument& e) {
    std::fprintf(stderr, "tutti-bench: %s\n", e.what());
    return kExitUsage;
  }
  const int rank = pg->rank();
  const int n = pg->size();
  if (o.root >= n) {
    if (rank == 0) {
      std::fprintf(stderr, "tutti-bench: --root %d is not a rank of this %d-rank job\n", o.root, n);
    }
    return kExitUsage;
  }
  const std::string backend = pg->backend_name();
  const std::set<std::string> corrupt = ops_to_corrupt();
  Report report(stdout);
  if (rank == 0) report.preamble(o, backend, n);
  print_ranks(*pg, report);

  uint64_t row_id = 0;
  for (const std::string& name : o.ops) {
    const OpSpec& spec = *find_op(name);
    if (n < spec.min_ranks) {
      if (rank == 0) {
        report.note(fmt::format("{} skipped: needs at least {} ranks", name, spec.min_ranks));
        report.note("");
      }
      continue;
    }
    const std::vector<uint64_t> sizes = spec.sized ? sweep(o) : std::vector<uint64_t>{0};
    MeasureOptions measure_options;
    measure_options.warmup = o.warmup;
    measure_options.iters = o.iters;
    measure_options.check = o.check;
    measure_options.corrupt = rank == 0 && corrupt.count(name) > 0;
    bool header_printed = false;
    for (const uint64_t bytes : sizes) {
      CaseParams params;
      params.pg = pg.get();
      params.dtype = o.dtype;
      params.redop = o.redop;
      params.root = o.root;
      params.counts = spec.counts(static_cast<int64_t>(bytes / itemsize(o.dtype)), n);
      std::unique_ptr<OpCase> op = spec.make(params);
      if (rank == 0 && !header_printed) {
        report.op_header(name, op->call(), o, backend, n);
        header_printed = true;
      }
      const Measurement mine = measure(*op, *pg, measure_options);
      op.reset();  // free the buffers before the next, larger size
      const auto combined = combine(*pg->store(), rank, n, row_id++, mine);
      if (combined) report.row(make_row(spec, params.counts, o, backend, n, *combined));
    }
    if (rank == 0) report.note("");
  }

  int status = kExitOk;
  if (rank == 0) {
    report.summary(o.check);
    if (!o.json_path.empty()) {
      try {
        report.write_json(o.json_path);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "tutti-bench: %s\n", e.what());
        status = kExitRuntimeError;
      }
    }
  }
  // Every rank learns whether any rank saw a wrong element, so that all exit
  // with the same status.
  const int64_t total_wrong = share_total(*pg, report.total_wrong(), pg->timeout());
  if (total_wrong > 0) return kExitWrongResults;
  return status;
}

}  // namespace
}  // namespace tutti::bench

int main(int argc, char** argv) {
  using namespace tutti::bench;
  // Every rank parses the same arguments; only rank 0 (or a lone process)
  // explains what is wrong with them.
  const char* rank = std::getenv("RANK");
  const bool speaks = rank == nullptr || std::string(rank) == "0";
  int exit_code = kExitOk;
  const auto options = parse_options(argc, argv, speaks, exit_code);
  if (!options) return exit_code;
  try {
    return run(*options);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tutti-bench: rank %s: %s\n", rank != nullptr ? rank : "0", e.what());
    return kExitRuntimeError;
  }
}
