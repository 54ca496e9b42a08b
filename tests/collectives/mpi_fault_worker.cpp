// One rank of a fault-injection job under mpirun (driven by
// mpi_fault_test.cpp, which asserts on what the ranks print):
//
//   mpi_fault_worker <op> <elements> <kill|stop> <victim rank> <timeout ms>
//
// Every rank runs <op> once, to connect, and a barrier. Then the victim
// prints "VICTIM <rank> <pid>" and sends itself SIGKILL or SIGSTOP, while
// the survivors run <op> again and then a barrier (an operation a survivor
// completes without the victim, as an eager send to it, is followed by one
// that cannot). Each survivor prints one line:
//
//   SURVIVOR <rank> <error type> <seconds in the call that raised> <what>
//
// or "SURVIVOR <rank> none ..." if nothing raised; then it leaves main
// normally (destroying its group, finalising MPI), so a hang at exit shows.
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "tutti/errors.hpp"
#include "tutti/init.hpp"
#include "tutti/process_group.hpp"

namespace {

using namespace tutti;
using Clock = std::chrono::steady_clock;

// Runs `op` of `n` float elements per rank's part on `pg` and waits for it.
void run(ProcessGroup& pg, const std::string& op, int64_t n) {
  const int size = pg.size();
  const int rank = pg.rank();
  auto floats = [](int64_t count) { return Tensor::zeros({count}, DType::Float32); };
  if (op == "broadcast") {
    std::vector<Tensor> t = {floats(n)};
    pg.broadcast(t, {.root_rank = 0})->wait();
  } else if (op == "allreduce") {
    std::vector<Tensor> t = {floats(n)};
    pg.allreduce(t)->wait();
  } else if (op == "allreduce_coalesced") {
    std::vector<Tensor> t = {floats(n), floats(n / 2 + 1)};
    pg.allreduce_coalesced(t)->wait();
  } else if (op == "reduce") {
    std::vector<Tensor> t = {floats(n)};
    pg.reduce(t, {.root_rank = 0})->wait();
  } else if (op == "allgather") {
    Tensor out = floats(n * size);
    Tensor in = floats(n);
    pg.allgather_into_tensor(out, in)->wait();
  } else if (op == "gather") {
    std::vector<std::vector<Tensor>> out(1);
    if (rank == 0) {
      for (int r = 0; r < size; ++r) out[0].push_back(floats(n));
    } else {
      out.clear();
    }
    std::vector<Tensor> in = {floats(n)};
    pg.gather(out, in, {.root_rank = 0})->wait();
  } else if (op == "scatter") {
    std::vector<std::vector<Tensor>> in(1);
    if (rank == 0) {
      for (int r = 0; r < size; ++r) in[0].push_back(floats(n));
    } else {
      in.clear();
    }
    std::vector<Tensor> out = {floats(n)};
    pg.scatter(out, in, {.root_rank = 0})->wait();
  } else if (op == "reduce_scatter") {
    Tensor out = floats(n);
    Tensor in = floats(n * size);
    pg.reduce_scatter_tensor(out, in)->wait();
  } else if (op == "alltoall") {
    Tensor out = floats(n * size);
    Tensor in = floats(n * size);
    pg.alltoall_base(out, in, {}, {})->wait();
  } else if (op == "barrier") {
    pg.barrier()->wait();
  } else if (op == "sendrecv") {
    // A ring: each rank sends to the next and receives from the previous.
    std::vector<Tensor> out = {floats(n)};
    std::vector<Tensor> in = {floats(n)};
    auto send = pg.send(out, (rank + 1) % size, 9);
    auto recv = pg.recv(in, (rank + size - 1) % size, 9);
    recv->wait();
    send->wait();
  } else {
    std::fprintf(stderr, "unknown op %s\n", op.c_str());
    std::exit(2);
  }
}

const char* type_of(const std::exception& e) {
  if (dynamic_cast<const TimeoutError*>(&e)) return "TimeoutError";
  if (dynamic_cast<const DistNetworkError*>(&e)) return "DistNetworkError";
  if (dynamic_cast<const DistBackendError*>(&e)) return "DistBackendError";
  return "other";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: %s op elements kill|stop victim timeout_ms\n", argv[0]);
    return 2;
  }
  const std::string op = argv[1];
  const int64_t n = std::atoll(argv[2]);
  const bool stop = std::string(argv[3]) == "stop";
  const int victim = std::atoi(argv[4]);
  const std::chrono::milliseconds timeout(std::atoi(argv[5]));

  auto pg = init_process_group({.backend = "mpi", .timeout = timeout});
  run(*pg, op, n);
  pg->barrier()->wait();

  if (pg->rank() == victim) {
    std::printf("VICTIM %d %d\n", victim, static_cast<int>(getpid()));
    std::fflush(stdout);
    std::raise(stop ? SIGSTOP : SIGKILL);
    // Continued by the driver: it only wanted this rank stopped for a while.
    std::_Exit(3);
  }
  std::string type = "none", what;
  double seconds = 0;
  for (const std::string& step : {op, std::string("barrier")}) {
    const auto start = Clock::now();
    try {
      run(*pg, step, n);
    } catch (const std::exception& e) {
      seconds = std::chrono::duration<double>(Clock::now() - start).count();
      type = type_of(e);
      what = e.what();
      break;
    }
  }
  std::printf("SURVIVOR %d %s %.3f %s\n", pg->rank(), type.c_str(), seconds, what.c_str());
  std::fflush(stdout);
  return 0;
}
