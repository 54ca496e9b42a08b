// TCPStore side by side: tutti::TCPStore against PyTorch's c10d::TCPStore
// (when built with libtorch), through the same Driver and the same loops.
//
//   1 client     set+get round trips per second, one client process hammering
//                one server process, small key and 8-byte value.
//   N clients    the same with N client processes at once (default 16);
//                the aggregate of their rates.
//   rendezvous   P processes (default 64) each connect, set "addr/<rank>",
//                then wait for all P keys. Timed twice: from just before the
//                first fork to the last process done waiting ("incl. fork"),
//                and from a start signal to processes already forked and
//                blocked on a pipe ("started together": no process creation).
//
// Every server and client is a forked process of its own, so no two loops
// share a thread, and the process that forks them never starts a thread
// (both stores start threads; fork copies only the calling one). Each run
// uses a fresh server on a free port.
//
// Each measurement run happens in a worker process: `store_bench --worker`
// for tutti, `store_bench_c10d --worker` for c10d (built only when libtorch
// is installed). The two stores do not share a binary because a process
// with libtorch loaded forks and exits about ten times slower (its page
// tables are large), which would charge tutti's rendezvous for libtorch.
// This orchestrator runs the workers --runs times per store, alternating
// (A B A B), so a noisy machine weighs on both alike, and prints the median
// and the min-max.
//
//   store_bench [--runs 5] [--seconds 3] [--clients 16] [--procs 64]
//               [--stores tutti,c10d] [--measure one,many,rendezvous]
#include <fmt/format.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "store_bench_harness.hpp"
#include "store_bench_proc.hpp"

namespace store_bench {
namespace {

struct Options {
  int runs = 5;
  std::vector<std::string> stores;
  std::vector<std::string> measures;  // empty: all
  bool warmup = true;
  WorkerArgs worker;

  bool wants(const char* name) const {
    return measures.empty() || std::find(measures.begin(), measures.end(), name) != measures.end();
  }
};

// A store measured through a worker binary.
struct Worker {
  std::string store;
  std::string path;
};

std::string self_path() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) throw std::runtime_error("cannot find this program's path in /proc/self/exe");
  return std::string(buf, static_cast<size_t>(n));
}

std::vector<Worker> available_workers() {
  std::vector<Worker> workers{{"tutti", self_path()}};
#ifdef TUTTI_BENCH_C10D_WORKER
  workers.push_back({"c10d", TUTTI_BENCH_C10D_WORKER});
#endif
  return workers;
}

double measure(const Worker& w, const std::string& what, const Options& opts) {
  const std::vector<std::string> argv{w.path,
                                      "--worker",
                                      what,
                                      "--seconds",
                                      fmt::format("{}", opts.worker.seconds),
                                      "--clients",
                                      std::to_string(opts.worker.clients),
                                      "--procs",
                                      std::to_string(opts.worker.procs)};
  // Generous: a worker fails on its own stores' timeouts well before this.
  const auto deadline = Clock::now() + std::chrono::minutes(10);
  const std::string out = run_program(argv, deadline);
  try {
    return std::stod(out);
  } catch (const std::exception&) {
    throw std::runtime_error(fmt::format("{} worker printed '{}', not a figure", w.store, out));
  }
}

// ------------------------------------------------------------------ report

struct Summary {
  double median, min, max;
};

Summary summarize(std::vector<double> xs) {
  std::sort(xs.begin(), xs.end());
  const size_t n = xs.size();
  const double median = n % 2 == 1 ? xs[n / 2] : (xs[n / 2 - 1] + xs[n / 2]) / 2;
  return {median, xs.front(), xs.back()};
}

std::string thousands(double x) {
  std::string digits = fmt::format("{:.0f}", x);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string format_rate(double x) { return thousands(x); }
std::string format_ms(double seconds) { return fmt::format("{:.1f}", seconds * 1e3); }

struct Metric {
  std::string name;
  bool higher_is_better;
  std::string (*format)(double);
  std::map<std::string, std::vector<double>> samples;  // by store name
};

std::string cell(const Metric& m, const std::string& store) {
  auto it = m.samples.find(store);
  if (it == m.samples.end() || it->second.empty()) return "n/a";
  const Summary s = summarize(it->second);
  return fmt::format("{} ({}-{})", m.format(s.median), m.format(s.min), m.format(s.max));
}

// tutti's advantage: > 1 means tutti is better, for rates and times alike.
std::optional<double> speedup(const Metric& m) {
  auto t = m.samples.find("tutti");
  auto c = m.samples.find("c10d");
  if (t == m.samples.end() || c == m.samples.end() || t->second.empty() || c->second.empty()) {
    return std::nullopt;
  }
  const double tm = summarize(t->second).median;
  const double cm = summarize(c->second).median;
  return m.higher_is_better ? tm / cm : cm / tm;
}

void print_table(std::vector<Metric> metrics) {
  // Measurements left out with --measure have no samples.
  std::erase_if(metrics, [](const Metric& m) { return m.samples.empty(); });
  size_t w0 = 6, w1 = 5, w2 = 4;
  for (const auto& m : metrics) {
    w0 = std::max(w0, m.name.size());
    w1 = std::max(w1, cell(m, "tutti").size());
    w2 = std::max(w2, cell(m, "c10d").size());
  }
  fmt::print("\n| {:<{}} | {:>{}} | {:>{}} | {:>13} |\n", "metric", w0, "tutti", w1, "c10d", w2,
             "tutti vs c10d");
  fmt::print("|{:-<{}}|{:->{}}:|{:->{}}:|{:->14}:|\n", "", w0 + 2, "", w1 + 1, "", w2 + 1, "");
  for (const auto& m : metrics) {
    auto r = speedup(m);
    fmt::print("| {:<{}} | {:>{}} | {:>{}} | {:>13} |\n", m.name, w0, cell(m, "tutti"), w1,
               cell(m, "c10d"), w2, r ? fmt::format("{:.2f}x", *r) : "n/a");
  }
  fmt::print(
      "\nmedian (min-max) of the runs; 'tutti vs c10d' compares medians, > 1 = tutti better\n"
      "(rates: tutti/c10d, times: c10d/tutti). One round trip = one set + one get.\n");
}

void print_goals(const Metric& one, const Metric& many, const Metric& rendezvous) {
  fmt::print("\ngoals:\n");
  for (const Metric* m : {&one, &many}) {
    if (auto r = speedup(*m)) {
      fmt::print("  ops/s >= 2x c10d, {}: {:.3f}x -> {}\n", m->name.substr(0, m->name.find(':')),
                 *r, *r >= 2.0 ? "met" : "NOT met");
    }
  }
  auto it = rendezvous.samples.find("tutti");
  if (it != rendezvous.samples.end() && !it->second.empty()) {
    const Summary s = summarize(it->second);
    fmt::print("  {} < 1 s (tutti): median {:.3f} s, max {:.3f} s -> {}\n",
               rendezvous.name.substr(0, rendezvous.name.find(',')), s.median, s.max,
               s.median < 1.0 ? "met" : "NOT met");
  }
}

int orchestrate(const Options& opts) {
  std::vector<Worker> workers;
  for (const auto& w : available_workers()) {
    if (opts.stores.empty() ||
        std::find(opts.stores.begin(), opts.stores.end(), w.store) != opts.stores.end()) {
      workers.push_back(w);
    }
  }
  for (const auto& name : opts.stores) {
    if (std::none_of(workers.begin(), workers.end(),
                     [&](const Worker& w) { return name == w.store; })) {
      fmt::print(stderr, "store_bench: store '{}' is not built in{}\n", name,
                 name == "c10d" ? " (libtorch was not found when configuring)" : "");
      return 2;
    }
  }
  const WorkerArgs& wa = opts.worker;
  fmt::print(
      "store_bench: {} run(s) per store and measurement, {} s per throughput run, "
      "{} clients, {} processes; stores:",
      opts.runs, wa.seconds, wa.clients, wa.procs);
  for (const auto& w : workers) fmt::print(" {}", w.store);
  fmt::print("\nservers and clients are forked processes on 127.0.0.1\n");
  std::fflush(stdout);

  Metric one{"1 client: set+get round trips/s", true, format_rate, {}};
  Metric one_ops{"1 client: ops/s", true, format_rate, {}};
  Metric many{
      fmt::format("{} clients: set+get round trips/s (sum)", wa.clients), true, format_rate, {}};
  Metric many_ops{fmt::format("{} clients: ops/s (sum)", wa.clients), true, format_rate, {}};
  Metric rdv{fmt::format("{}-process rendezvous, incl. fork, ms", wa.procs), false, format_ms, {}};
  Metric rdv_together{
      fmt::format("{}-process rendezvous, started together, ms", wa.procs), false, format_ms, {}};

  if (opts.warmup) {
    // Untimed: loads the binaries and libraries into the page cache and
    // warms the CPU clock, so the first store measured does not pay for it.
    Options warm = opts;
    warm.worker.seconds = 0.5;
    for (const auto& w : workers) measure(w, "one", warm);
  }
  auto run_all = [&](const char* what, Metric* m, Metric* doubled) {
    for (int r = 0; r < opts.runs; ++r) {
      for (const auto& w : workers) {
        const double x = measure(w, what, opts);
        m->samples[w.store].push_back(x);
        if (doubled != nullptr) doubled->samples[w.store].push_back(2 * x);
        fmt::print(stderr, "  [{}] {} run {}: {}\n", w.store, m->name, r + 1, m->format(x));
      }
    }
  };
  if (opts.wants("one")) run_all("one", &one, &one_ops);
  if (opts.wants("many")) run_all("many", &many, &many_ops);
  if (opts.wants("rendezvous")) {
    run_all("rendezvous", &rdv, nullptr);
    run_all("rendezvous-together", &rdv_together, nullptr);
  }
  print_table({one, one_ops, many, many_ops, rdv, rdv_together});
  print_goals(one_ops, many_ops, rdv);
  return 0;
}

}  // namespace
}  // namespace store_bench

int main(int argc, char** argv) {
  store_bench::Options opts;
  CLI::App app{"TCPStore round trips and rendezvous: tutti against c10d::TCPStore (when built in)"};
  store_bench::add_worker_options(app, &opts.worker);
  app.add_option("--runs", opts.runs, "runs of each measurement per store")
      ->check(CLI::PositiveNumber);
  app.add_option("--stores", opts.stores, "stores to measure (default: all built in)")
      ->delimiter(',');
  app.add_option("--measure", opts.measures, "one, many, rendezvous (default: all)")
      ->delimiter(',')
      ->check(CLI::IsMember({"one", "many", "rendezvous"}));
  app.add_flag("!--no-warmup", opts.warmup, "skip the untimed warm-up runs");
  CLI11_PARSE(app, argc, argv);
  if (!opts.worker.measure.empty()) {
    return store_bench::run_worker(store_bench::tutti_store_kind(), opts.worker);
  }
  try {
    return store_bench::orchestrate(opts);
  } catch (const std::exception& e) {
    fmt::print(stderr, "store_bench: {}\n", e.what());
    return 1;
  }
}
