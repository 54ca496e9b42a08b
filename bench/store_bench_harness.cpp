#include "store_bench_harness.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <stdexcept>
#include <vector>

#include "store_bench_proc.hpp"

namespace store_bench {
namespace {

// Generous: on a loaded 2-core machine 64 processes may take a while, and a
// store that times out should fail the benchmark, not skew it.
constexpr std::chrono::milliseconds kStoreTimeout{60'000};
const std::string kHost = "127.0.0.1";

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

}  // namespace

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
      // Untimed round trips, so the loop starts on a warm connection; add is
      // checked in passing, as the loop checks get.
      const int64_t joined = store->add("bench/joined", 1);
      if (joined < 1 || joined > clients) throw std::runtime_error("add returned a wrong count");
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

double rendezvous_seconds(const StoreKind& kind, int procs, bool started_together) {
  ServerProcess server(kind);
  std::vector<std::string> keys;
  keys.reserve(static_cast<size_t>(procs));
  for (int rank = 0; rank < procs; ++rank) keys.push_back(fmt::format("addr/{}", rank));
  Pipe ready, go, reports, release;
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
    // Stay until every rank is done: a rank that exits early would tear down
    // its address space on a CPU the others are still rendezvousing on, as a
    // real rank (which goes on to train) does not.
    read_byte(release.read_fd());
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
  write_bytes(release.write_fd(), procs);
  group.wait_all(deadline);
  return static_cast<double>(last - start) / 1e9;
}

void add_worker_options(CLI::App& app, WorkerArgs* args) {
  app.add_option("--worker", args->measure,
                 "run one measurement with this binary's store and print its figure")
      ->check(CLI::IsMember(std::vector<std::string>(std::begin(kMeasures), std::end(kMeasures))));
  app.add_option("--seconds", args->seconds, "length of each throughput run")
      ->check(CLI::PositiveNumber);
  app.add_option("--clients", args->clients, "client processes in the concurrent run")
      ->check(CLI::PositiveNumber);
  app.add_option("--procs", args->procs, "processes in the rendezvous")->check(CLI::PositiveNumber);
}

int run_worker(const StoreKind& kind, const WorkerArgs& args) {
  try {
    double figure;
    if (args.measure == "one") {
      figure = round_trips_per_second(kind, 1, args.seconds);
    } else if (args.measure == "many") {
      figure = round_trips_per_second(kind, args.clients, args.seconds);
    } else if (args.measure == "rendezvous") {
      figure = rendezvous_seconds(kind, args.procs, false);
    } else if (args.measure == "rendezvous-together") {
      figure = rendezvous_seconds(kind, args.procs, true);
    } else {
      throw std::invalid_argument("unknown measurement '" + args.measure + "'");
    }
    std::printf("%.17g\n", figure);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "store_bench worker (%s, %s): %s\n", kind.name, args.measure.c_str(),
                 e.what());
    return 1;
  }
}

}  // namespace store_bench
