// Cost of the flight recorder per operation: the life of one Work as the
// ProcessGroup front end and an engine drive it (issue, start, complete,
// wait), with the recorder on (2000 entries, the default) and off (0).
// The difference is what every collective pays for the recorder.
#include <benchmark/benchmark.h>

#include "core/engine_work.hpp"
#include "debug/group_tracer.hpp"
#include "tutti/hash_store.hpp"

namespace {

using namespace tutti;

void BM_OpLifecycle(benchmark::State& state) {
  trace::FlightRecorder recorder(static_cast<size_t>(state.range(0)));
  auto tracer =
      trace::GroupTracer::create(std::make_shared<HashStore>(), 0, 2, "default", recorder);
  Tensor t = Tensor::zeros({2}, DType::Float32);
  std::vector<Tensor> tensors = {t};
  uint64_t seq = 0;
  for (auto _ : state) {
    std::shared_ptr<EngineWork> engine;
    auto work = tracer->issue(++seq, trace::describe_op(OpType::ALLREDUCE, tensors), [&] {
      engine = std::make_shared<EngineWork>(OpType::ALLREDUCE, "allreduce");
      return std::static_pointer_cast<Work>(engine);
    });
    engine->started();
    engine->complete();
    benchmark::DoNotOptimize(work->wait());
  }
}
BENCHMARK(BM_OpLifecycle)->Arg(0)->Arg(2000)->ArgName("TUTTI_TRACE_BUFFER");

}  // namespace

BENCHMARK_MAIN();
