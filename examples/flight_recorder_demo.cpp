// The flight recorder and the root cause, on purpose: a loop of allreduces
// in which one rank dies or fails, so that you can see what the others
// report and what tutti-trace makes of the dumps.
//
//   export TUTTI_TRACE_DIR=/tmp/trace
//   tuttirun -n 3 ./build/release/examples/flight_recorder_demo --kill-rank 2 --at 9
//   tutti-trace /tmp/trace
//
//   tuttirun -n 3 ./build/release/examples/flight_recorder_demo --fail-rank 2 --at 5
//
// --kill-rank R --at N: rank R kills itself (SIGKILL) before allreduce N.
// --fail-rank R --at N: before allreduce N, rank R waits 500 ms for a
//   message nobody sends (TimeoutError) and then stays away; the others'
//   allreduce N times out after --timeout-ms and names rank R as the root
//   cause.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <tutti/tutti.hpp>

namespace {

int int_flag(int argc, char** argv, const char* name, int fallback) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], name) == 0) return std::atoi(argv[i + 1]);
  }
  return fallback;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace std::chrono_literals;
  const int kill_rank = int_flag(argc, argv, "--kill-rank", -1);
  const int fail_rank = int_flag(argc, argv, "--fail-rank", -1);
  const int at = int_flag(argc, argv, "--at", 9);
  const int steps = int_flag(argc, argv, "--steps", 20);
  const auto timeout = std::chrono::milliseconds(int_flag(argc, argv, "--timeout-ms", 3000));
  auto pg = tutti::init_process_group({.backend = "gloo", .timeout = timeout});
  const int rank = pg->rank();
  for (int step = 1; step <= steps; ++step) {
    if (step == at && rank == kill_rank) {
      std::this_thread::sleep_for(300ms);  // let the others finish the last allreduce
      ::kill(::getpid(), SIGKILL);
    }
    if (step == at && rank == fail_rank) {
      std::vector<tutti::Tensor> buffer = {tutti::Tensor::zeros({1}, tutti::DType::Float32)};
      try {
        pg->recv(buffer, (rank + 1) % pg->size(), 99)->wait(500ms);
      } catch (const tutti::TimeoutError& e) {
        std::printf("rank %d failed first: %s\n", rank, e.what());
      }
      std::this_thread::sleep_for(timeout + 2s);  // stays away from the allreduce
      return 1;
    }
    std::vector<tutti::Tensor> grads = {tutti::Tensor::zeros({1024}, tutti::DType::Float32)};
    try {
      pg->allreduce(grads)->wait();
    } catch (const tutti::Error& e) {
      std::printf("rank %d: allreduce %d failed: %s\n", rank, step, e.what());
      return 1;
    }
  }
  std::printf("rank %d: %d allreduces done\n", rank, steps);
  return 0;
}
