// The measurements of store_bench, written once against Driver and run by a
// worker process per measurement run (see store_bench.cpp for why).
#pragma once

#include <string>

#include "store_bench_driver.hpp"

namespace CLI {
class App;
}

namespace store_bench {

// Aggregate set+get round trips per second of `clients` client processes
// against one server process, each looping for `seconds` on a key of its own
// (8-byte value) once all are connected.
double round_trips_per_second(const StoreKind& kind, int clients, double seconds);

// Seconds until the last of `procs` processes has connected, set
// "addr/<rank>" and seen every rank's key. started_together: the processes
// are forked and blocked on a pipe before the clock starts; otherwise the
// clock starts just before the first fork.
double rendezvous_seconds(const StoreKind& kind, int procs, bool started_together);

// One measurement run, as the orchestrator asks a worker for it.
struct WorkerArgs {
  std::string measure;  // one, many, rendezvous, rendezvous-together
  double seconds = 3.0;
  int clients = 16;
  int procs = 64;
};
inline constexpr const char* kMeasures[] = {"one", "many", "rendezvous", "rendezvous-together"};

// Adds --worker MEASURE and the options it takes.
void add_worker_options(CLI::App& app, WorkerArgs* args);
// Runs the measurement and prints its figure (round trips/s or seconds) on
// stdout, alone on a line; returns the exit code.
int run_worker(const StoreKind& kind, const WorkerArgs& args);

}  // namespace store_bench
