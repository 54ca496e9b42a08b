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
//                and from a start signal to forked processes already blocked
//                on a pipe ("started together": no process creation).
//
// Every server and client is a process of its own (fork), so no two loops
// share a thread, and the parent, which only times, never starts a thread:
// both stores start threads, and fork copies only the calling one. Each
// measurement runs --runs times per store, the stores alternating (A B A B),
// so a noisy machine weighs on both alike; the table gives the median and the
// min-max. Each run uses a fresh server on a free port.
//
//   store_bench [--runs 5] [--seconds 3] [--clients 16] [--procs 64]
//               [--stores tutti,c10d]
#include <fmt/format.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "store_bench_driver.hpp"
#include "store_bench_proc.hpp"

namespace store_bench {
namespace {

// Generous: on a loaded 2-core machine 64 processes may take a while, and a
// store that times out should fail the benchmark, not skew it.
constexpr std::chrono::milliseconds kStoreTimeout{60'000};
const std::string kHost = "127.0.0.1";

struct Options {
  int runs = 5;
  double seconds = 3.0;
  int clients = 16;
  int procs = 64;
  std::vector<std::string> stores;
  bool warmup = true;
};

void read_byte(int fd) {
  char byte;
  while (true) {
    ssize_t n = ::read(fd, &byte, 1);
    if (n == 1) return;
    if (n < 0 && errno == EINTR) continue;
    throw std::runtime_error("the benchmark's parent went away");
  }
}

void write_bytes(int fd, int count) {
  const std::vector<char> bytes(static_cast<size_t>(count), 1);
  write_all(fd, bytes.data(), bytes.size());
}

// A store server in a child process of its own, killed on destruction.
class ServerProcess {
 public:
  explicit ServerProcess(const StoreKind& kind) {
    Pipe port_pipe;
    children_.spawn(fmt::format("{} server", kind.name), [&] {
      auto server = kind.serve(kStoreTimeout);
      const uint16_t port = server->port();
      write_all(port_pipe.write_fd(), &port, sizeof port);
      while (true) ::pause();
    });
    children_.read(port_pipe.read_fd(), &port_, sizeof port_, Clock::now() + kStoreTimeout);
  }
  uint16_t port() const { return port_; }

 private:
  Children children_;
  uint16_t port_ = 0;
};

struct ClientReport {
  int64_t round_trips;
  int64_t elapsed_ns;
};

// Aggregate set+get round trips per second of `clients` processes, each
// looping for `seconds` on a key of its own once all are connected.
double round_trips_per_second(const StoreKind& kind, int clients, double seconds) {
  ServerProcess server(kind);
  Pipe ready, go, reports;
  Children group;
  const auto duration =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  for (int i = 0; i < clients; ++i) {
    group.spawn(fmt::format("{} client {}", kind.name, i), [&, i] {
      auto store = kind.connect(kHost, server.port(), kStoreTimeout);
      const std::string key = fmt::format("bench/{}", i);
      const std::vector<uint8_t> value(8, static_cast<uint8_t>('a' + i % 26));
      // One untimed round trip, so the loop starts on a warm connection.
      store->set(key, value);
      store->get(key);
      write_bytes(ready.write_fd(), 1);
      read_byte(go.read_fd());
      const auto start = Clock::now();
      const auto end = start + duration;
      int64_t n = 0;
      auto now = start;
      do {
        store->set(key, value);
        // Checked, so a store that answers wrongly cannot look fast.
        if (store->get(key) != value) throw std::runtime_error("get returned a wrong value");
        ++n;
        now = Clock::now();
      } while (now < end);
      const ClientReport report{n, (now - start).count()};
      write_all(reports.write_fd(), &report, sizeof report);
    });
  }
  const auto deadline = Clock::now() + kStoreTimeout + duration;
  std::vector<char> ready_bytes(static_cast<size_t>(clients));
  group.read(ready.read_fd(), ready_bytes.data(), ready_bytes.size(), deadline);
  write_bytes(go.write_fd(), clients);
  double total = 0;
  for (int i = 0; i < clients; ++i) {
    ClientReport report;
    group.read(reports.read_fd(), &report, sizeof report, deadline);
    total += static_cast<double>(report.round_trips) * 1e9 / static_cast<double>(report.elapsed_ns);
  }
  group.wait_all(deadline);
  return total;
}

// Seconds until the last of `procs` processes has seen every address.
// started_together: the processes are forked and blocked on a pipe before
// the clock starts; otherwise the clock starts just before the first fork.
double rendezvous_seconds(const StoreKind& kind, int procs, bool started_together) {
  ServerProcess server(kind);
  std::vector<std::string> keys;
  for (int rank = 0; rank < procs; ++rank) keys.push_back(fmt::format("addr/{}", rank));
  Pipe ready, go, reports;
  Children group;
  const auto deadline = Clock::now() + 2 * kStoreTimeout;
  auto rank_body = [&](int rank) {
    if (started_together) {
      write_bytes(ready.write_fd(), 1);
      read_byte(go.read_fd());
    }
    auto store = kind.connect(kHost, server.port(), kStoreTimeout);
    const std::string address = fmt::format("10.0.{}.{}:29500", rank / 256, rank % 256);
    store->set(keys[static_cast<size_t>(rank)],
               std::vector<uint8_t>(address.begin(), address.end()));
    store->wait(keys);
    const int64_t done = now_ns();
    write_all(reports.write_fd(), &done, sizeof done);
  };
  int64_t start = 0;
  if (!started_together) start = now_ns();
  for (int rank = 0; rank < procs; ++rank) {
    group.spawn(fmt::format("{} rank {}", kind.name, rank), [&, rank] { rank_body(rank); });
  }
  if (started_together) {
    std::vector<char> ready_bytes(static_cast<size_t>(procs));
    group.read(ready.read_fd(), ready_bytes.data(), ready_bytes.size(), deadline);
    start = now_ns();
    write_bytes(go.write_fd(), procs);
  }
  int64_t last = start;
  for (int rank = 0; rank < procs; ++rank) {
    int64_t done;
    group.read(reports.read_fd(), &done, sizeof done, deadline);
    last = std::max(last, done);
  }
  group.wait_all(deadline);
  return static_cast<double>(last - start) / 1e9;
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

struct Metric {
  std::string name;
  bool higher_is_better;
  std::string (*format)(double);
  std::map<std::string, std::vector<double>> samples;  // by store name
};

std::string format_rate(double x) { return thousands(x); }
std::string format_ms(double seconds) { return fmt::format("{:.1f}", seconds * 1e3); }

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

void print_table(const std::vector<Metric>& metrics) {
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
    auto r = speedup(*m);
    if (r) {
      fmt::print("  ops/s >= 2x c10d, {}: {:.2f}x -> {}\n", m->name.substr(0, m->name.find(':')),
                 *r, *r >= 2.0 ? "met" : "NOT met");
    }
  }
  auto it = rendezvous.samples.find("tutti");
  if (it != rendezvous.samples.end() && !it->second.empty()) {
    const Summary s = summarize(it->second);
    fmt::print("  {} < 1 s: median {:.3f} s, max {:.3f} s -> {}\n", rendezvous.name, s.median,
               s.max, s.median < 1.0 ? "met" : "NOT met");
  }
}

std::vector<StoreKind> available_stores() {
  std::vector<StoreKind> kinds{tutti_store_kind()};
#ifdef TUTTI_BENCH_HAVE_C10D
  kinds.push_back(c10d_store_kind());
#endif
  return kinds;
}

int run(const Options& opts) {
  std::vector<StoreKind> kinds;
  for (const auto& kind : available_stores()) {
    if (opts.stores.empty() ||
        std::find(opts.stores.begin(), opts.stores.end(), kind.name) != opts.stores.end()) {
      kinds.push_back(kind);
    }
  }
  for (const auto& name : opts.stores) {
    if (std::none_of(kinds.begin(), kinds.end(),
                     [&](const StoreKind& k) { return name == k.name; })) {
      fmt::print(stderr, "store_bench: store '{}' is not built in{}\n", name,
                 name == "c10d" ? " (libtorch was not found when configuring)" : "");
      return 2;
    }
  }
  fmt::print(
      "store_bench: {} run(s) each, {} s per throughput run, {} clients, {} processes; "
      "stores:",
      opts.runs, opts.seconds, opts.clients, opts.procs);
  for (const auto& k : kinds) fmt::print(" {}", k.name);
  fmt::print("\nevery server and client is a forked process; host {}\n", kHost);

  Metric one{"1 client: set+get round trips/s", true, format_rate, {}};
  Metric one_ops{"1 client: ops/s", true, format_rate, {}};
  Metric many{
      fmt::format("{} clients: set+get round trips/s (sum)", opts.clients), true, format_rate, {}};
  Metric many_ops{fmt::format("{} clients: ops/s (sum)", opts.clients), true, format_rate, {}};
  Metric rdv{fmt::format("{}-process rendezvous incl. fork, ms", opts.procs), false, format_ms, {}};
  Metric rdv_together{
      fmt::format("{}-process rendezvous started together, ms", opts.procs), false, format_ms, {}};

  if (opts.warmup) {
    // Untimed: faults in code and warms the caches and the CPU clock, so the
    // first store measured is not the one that pays for it.
    for (const auto& kind : kinds) round_trips_per_second(kind, 1, 0.5);
  }
  auto progress = [](const Metric& m, const StoreKind& k, int run, double x) {
    fmt::print(stderr, "  [{}] {} run {}: {}\n", k.name, m.name, run + 1, m.format(x));
  };
  for (int r = 0; r < opts.runs; ++r) {
    for (const auto& kind : kinds) {
      const double x = round_trips_per_second(kind, 1, opts.seconds);
      one.samples[kind.name].push_back(x);
      one_ops.samples[kind.name].push_back(2 * x);
      progress(one, kind, r, x);
    }
  }
  for (int r = 0; r < opts.runs; ++r) {
    for (const auto& kind : kinds) {
      const double x = round_trips_per_second(kind, opts.clients, opts.seconds);
      many.samples[kind.name].push_back(x);
      many_ops.samples[kind.name].push_back(2 * x);
      progress(many, kind, r, x);
    }
  }
  for (int r = 0; r < opts.runs; ++r) {
    for (const auto& kind : kinds) {
      const double x = rendezvous_seconds(kind, opts.procs, false);
      rdv.samples[kind.name].push_back(x);
      progress(rdv, kind, r, x);
      const double y = rendezvous_seconds(kind, opts.procs, true);
      rdv_together.samples[kind.name].push_back(y);
      progress(rdv_together, kind, r, y);
    }
  }
  print_table({one, one_ops, many, many_ops, rdv, rdv_together});
  print_goals(one_ops, many_ops, rdv);
  return 0;
}

}  // namespace
}  // namespace store_bench

int main(int argc, char** argv) {
  store_bench::Options opts;
  CLI::App app{"TCPStore round trips and rendezvous: tutti against c10d (when built in)"};
  app.add_option("--runs", opts.runs, "runs of each measurement per store")
      ->check(CLI::PositiveNumber);
  app.add_option("--seconds", opts.seconds, "length of each throughput run")
      ->check(CLI::PositiveNumber);
  app.add_option("--clients", opts.clients, "client processes in the concurrent run")
      ->check(CLI::PositiveNumber);
  app.add_option("--procs", opts.procs, "processes in the rendezvous")->check(CLI::PositiveNumber);
  app.add_option("--stores", opts.stores, "stores to measure (default: all built in)")
      ->delimiter(',');
  app.add_flag("!--no-warmup", opts.warmup, "skip the untimed warm-up run");
  CLI11_PARSE(app, argc, argv);
  try {
    return store_bench::run(opts);
  } catch (const std::exception& e) {
    fmt::print(stderr, "store_bench: {}\n", e.what());
    return 1;
  }
}
