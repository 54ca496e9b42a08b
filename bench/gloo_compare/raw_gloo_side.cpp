// The raw gloo side of the gloo comparison: one rank calling the gloo library
// directly (no tutti), the floor that tutti's gloo backend is held to.
//
// Rendezvous through gloo's own FileStore in a directory the launcher makes
// fresh for each run, then the same calls tutti's backend makes: a full
// mesh over TCP on the loopback, gloo::allreduce (float32 SUM through
// gloo::sum<float>, as PyTorch's ProcessGroupGloo does) with each requested
// algorithm ("ring" is gloo's default: UNSPECIFIED runs the ring), and
// gloo::allgather. Called inline on the caller's thread: no queue, no
// worker, no Work.
//
//   gloo_compare_raw_gloo --rank R --world-size N --store-dir DIR
//   (then commands on standard input: side.hpp)
#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/file_store.h>
#include <gloo/transport/tcp/device.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <memory>
#include <stdexcept>
#include <vector>

#include "side.hpp"

namespace gloo_compare {
namespace {

::gloo::AllreduceOptions::Algorithm algorithm_named(const std::string& name) {
  if (name == "ring") return ::gloo::AllreduceOptions::Algorithm::UNSPECIFIED;
  if (name == "bcube") return ::gloo::AllreduceOptions::Algorithm::BCUBE;
  throw std::invalid_argument("unknown gloo allreduce algorithm '" + name + "'");
}

void allreduce(const std::shared_ptr<::gloo::Context>& context, const Command& command) {
  const auto n = static_cast<size_t>(context->size);
  std::vector<float> buffer(std::max<size_t>(1, command.bytes / sizeof(float)));
  ::gloo::AllreduceOptions opts(context);
  opts.setAlgorithm(algorithm_named(command.variant));
  opts.setOutput(buffer.data(), buffer.size());
  opts.setReduceFunction(
      static_cast<void (*)(void*, const void*, const void*, size_t)>(&::gloo::sum<float>));
  std::fill(buffer.begin(), buffer.end(), static_cast<float>(context->rank + 1));
  ::gloo::allreduce(opts);
  expect_equal(command, buffer.data(), buffer.size(),
               [&](size_t) { return static_cast<float>(n * (n + 1) / 2); });
  // Zeros keep the timed sums finite; the values do not change the cost.
  std::fill(buffer.begin(), buffer.end(), 0.0f);
  measure(command, [&] { ::gloo::allreduce(opts); });
}

void allgather(const std::shared_ptr<::gloo::Context>& context, const Command& command) {
  const auto n = static_cast<size_t>(context->size);
  const size_t per_rank = std::max<size_t>(1, command.bytes / sizeof(float) / n);
  std::vector<float> input(per_rank, static_cast<float>(context->rank + 1));
  std::vector<float> output(per_rank * n);
  ::gloo::AllgatherOptions opts(context);
  opts.setInput(input.data(), input.size());
  opts.setOutput(output.data(), output.size());
  ::gloo::allgather(opts);
  expect_equal(command, output.data(), output.size(),
               [&](size_t i) { return static_cast<float>(i / per_rank + 1); });
  measure(command, [&] { ::gloo::allgather(opts); });
}

void run(const Args& args) {
  ::gloo::transport::tcp::attr attr;
  attr.hostname = args.host;
  auto device = ::gloo::transport::tcp::CreateDevice(attr);
  ::gloo::rendezvous::FileStore store(args.store_dir);
  auto context = std::make_shared<::gloo::rendezvous::Context>(args.rank, args.world_size);
  context->connectFullMesh(store, device);
  serve([&](const Command& command) {
    if (command.op == "allreduce") {
      allreduce(context, command);
    } else if (command.op == "allgather") {
      allgather(context, command);
    } else {
      throw std::invalid_argument("unknown op '" + command.op + "'");
    }
  });
  // As the other sides do: nobody closes its connections while a peer may
  // still be reading the last result.
  ::gloo::BarrierOptions barrier(context);
  ::gloo::barrier(barrier);
}

}  // namespace
}  // namespace gloo_compare

int main(int argc, char** argv) {
  const auto args =
      gloo_compare::parse_args(argc, argv, "raw gloo side of the gloo comparison (one rank)");
  try {
    gloo_compare::run(args);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "raw_gloo_side rank %d: %s\n", args.rank, e.what());
    return 1;
  }
  return 0;
}
