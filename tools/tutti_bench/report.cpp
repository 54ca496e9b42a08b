#include "tutti_bench/report.hpp"

#include <fmt/format.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "tutti/reduce_op.hpp"
#include "tutti/types.hpp"

namespace tutti::bench {
namespace {

// nccl-tests' columns and widths: "%12li  %12li  %8s  %6s  %6i  %7s  %6.2f  %6.2f  %5s".
constexpr const char* kColumns = "{:>12}  {:>12}  {:>8}  {:>6}  {:>6}  {:>7}  {:>6}  {:>6}  {:>6}";

// nccl-tests prints fewer decimals as times grow.
std::string format_time(double us) {
  if (us >= 10000.0) return fmt::format("{:7.0f}", us);
  if (us >= 100.0) return fmt::format("{:7.1f}", us);
  return fmt::format("{:7.2f}", us);
}

}  // namespace

void Report::preamble(const BenchOptions& o, const std::string& backend, int world_size) {
  fmt::print(out_,
             "# tutti-bench: backend {}, {} ranks, dtype {}, redop {}, root {}\n"
             "# minBytes {} maxBytes {} step: 2(factor) warmup iters: {} iters: {} "
             "validation: {}\n"
             "# time: median over iterations of the slowest rank's time for the iteration\n"
             "#\n",
             backend, world_size, to_string(o.dtype), to_string(o.redop), o.root, o.min_bytes,
             o.max_bytes, o.warmup, o.iters, o.check ? 1 : 0);
  std::fflush(out_);
}

void Report::op_header(const std::string& op, const std::string& call, const BenchOptions& o,
                       const std::string& backend, int world_size) {
  fmt::print(out_, "# op {} (ProcessGroup::{}): dtype {}, ranks {}, backend {}\n#\n", op, call,
             to_string(o.dtype), world_size, backend);
  fmt::print(out_, "#{:>11}  {:>12}  {:>8}  {:>6}  {:>6}  {:>7}  {:>6}  {:>6}  {:>6}\n", "size",
             "count", "type", "redop", "root", "time", "algbw", "busbw", "#wrong");
  fmt::print(out_, "#{:>11}  {:>12}  {:>8}  {:>6}  {:>6}  {:>7}  {:>6}  {:>6}\n", "(B)",
             "(elements)", "", "", "", "(us)", "(GB/s)", "(GB/s)");
  std::fflush(out_);
}

void Report::note(const std::string& text) {
  fmt::print(out_, "{}\n", text.empty() ? "#" : "# " + text);
  std::fflush(out_);
}

void Report::row(const Row& r) {
  fmt::print(out_, kColumns, r.size, r.count, r.type, r.redop, r.root, format_time(r.time_us),
             fmt::format("{:.2f}", r.algbw), fmt::format("{:.2f}", r.busbw),
             r.wrong ? std::to_string(*r.wrong) : std::string("N/A"));
  fmt::print(out_, "\n");
  std::fflush(out_);
  if (r.wrong) total_wrong_ += *r.wrong;
  rows_.push_back(r);
}

void Report::summary(bool checked) {
  double sum = 0;
  int counted = 0;
  for (const Row& r : rows_) {
    if (r.op == "barrier") continue;  // moves no data
    sum += r.busbw;
    ++counted;
  }
  if (checked) {
    fmt::print(out_, "# Out of bounds values : {} {}\n", total_wrong_,
               total_wrong_ == 0 ? "OK" : "FAILED");
  } else {
    fmt::print(out_, "# Out of bounds values : N/A (not checked: --check 0)\n");
  }
  fmt::print(out_, "# Avg bus bandwidth    : {:g}\n#\n", counted > 0 ? sum / counted : 0.0);
  std::fflush(out_);
}

void Report::write_json(const std::string& path) const {
  nlohmann::json rows = nlohmann::json::array();
  for (const Row& r : rows_) {
    rows.push_back({
        {"op", r.op},
        {"backend", r.backend},
        {"world_size", r.world_size},
        {"size", r.size},
        {"count", r.count},
        {"type", r.type},
        {"redop", r.redop},
        {"root", r.root},
        {"time_us", r.time_us},
        {"algbw", r.algbw},
        {"busbw", r.busbw},
        {"wrong", r.wrong ? nlohmann::json(*r.wrong) : nlohmann::json(nullptr)},
    });
  }
  std::ofstream file(path);
  file << rows.dump(2) << '\n';
  file.close();
  if (!file) throw std::runtime_error(fmt::format("cannot write the JSON results to '{}'", path));
}

}  // namespace tutti::bench
