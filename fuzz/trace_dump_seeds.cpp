// Writes seed inputs for the trace dump fuzzer: dumps of a recorder holding
// every kind of entry (collectives, point-to-point, failed, in flight).
//   trace_dump_seeds DIR
#include <cstdio>
#include <string>

#include "debug/flight_recorder.hpp"

using namespace tutti;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  trace::FlightRecorder recorder(8);
  const uint32_t world = recorder.register_group("default", 1, 3);
  const uint32_t sub = recorder.register_group("default/1", 0, 2);
  Tensor t = Tensor::zeros({2, 3}, DType::BFloat16);
  auto bcast = trace::describe_op(OpType::BROADCAST, t);
  bcast.root = 2;
  recorder.completed(recorder.record(world, 1, bcast));
  auto recv = trace::describe_op(OpType::RECV, t);
  recv.peer = 0;
  recv.tag = 5;
  recorder.started(recorder.record(sub, 1, recv));
  recorder.failed(recorder.record(world, 2, trace::describe_op(OpType::BARRIER)),
                  "TimeoutError: barrier #2 timed out");
  recorder.record(world, 3, trace::describe_op(OpType::ALLREDUCE, t));
  int n = 0;
  for (const char* reason : {"seed", "SIGUSR1"}) {
    const std::string path = std::string(argv[1]) + "/seed-" + std::to_string(n++) + ".json";
    FILE* f = std::fopen(path.c_str(), "wb");
    if (f == nullptr) return 1;
    const std::string text = trace::to_json(recorder.snapshot(reason));
    std::fwrite(text.data(), 1, text.size(), f);
    std::fclose(f);
  }
  return 0;
}
