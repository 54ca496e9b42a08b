// The tutti side of the gloo comparison: one rank of a ProcessGroup with the
// "gloo" backend over a TCPStore (rank 0 hosts it on the port the launcher
// picked), timing allreduce (float32 SUM) and allgather_into_tensor the way
// a user calls them: issue, then wait on the Work. Each timed iteration
// therefore includes everything tutti adds to gloo: the argument checks, the
// hop to a worker thread, the completion of the Work and the wake-up of the
// waiting caller.
//
// The allreduce algorithm is the backend's own choice by size unless
// TUTTI_GLOO_ALLREDUCE forces one (the launcher's tutti-ALGO sides).
//
//   gloo_compare_tutti --rank R --world-size N --port P
//   (then commands on standard input: side.hpp)
#include <algorithm>
#include <cstdio>
#include <exception>
#include <stdexcept>
#include <tutti/tutti.hpp>

#include "side.hpp"

namespace gloo_compare {
namespace {

void fill(tutti::Tensor& t, float value) {
  float* data = t.data<float>();
  std::fill(data, data + t.numel(), value);
}

void allreduce(tutti::ProcessGroup& group, const Command& command) {
  const int64_t n = group.size();
  const auto count = std::max<int64_t>(1, static_cast<int64_t>(command.bytes / sizeof(float)));
  std::vector<tutti::Tensor> tensors{tutti::Tensor::empty({count}, tutti::DType::Float32)};
  fill(tensors[0], static_cast<float>(group.rank() + 1));
  group.allreduce(tensors)->wait();
  expect_equal(command, tensors[0].data<float>(), static_cast<size_t>(count),
               [&](size_t) { return static_cast<float>(n * (n + 1) / 2); });
  // Zeros keep the timed sums finite; the values do not change the cost.
  fill(tensors[0], 0.0f);
  measure(command, [&] { group.allreduce(tensors)->wait(); });
}

void allgather(tutti::ProcessGroup& group, const Command& command) {
  const int64_t n = group.size();
  const auto per_rank =
      std::max<int64_t>(1, static_cast<int64_t>(command.bytes / sizeof(float)) / n);
  auto input = tutti::Tensor::empty({per_rank}, tutti::DType::Float32);
  auto output = tutti::Tensor::empty({per_rank * n}, tutti::DType::Float32);
  fill(input, static_cast<float>(group.rank() + 1));
  group.allgather_into_tensor(output, input)->wait();
  expect_equal(command, output.data<float>(), static_cast<size_t>(output.numel()),
               [&](size_t i) { return static_cast<float>(i / static_cast<size_t>(per_rank) + 1); });
  measure(command, [&] { group.allgather_into_tensor(output, input)->wait(); });
}

void run(const Args& args) {
  tutti::TCPStoreOptions store_options;
  store_options.port = static_cast<uint16_t>(args.port);
  store_options.is_server = args.rank == 0;
  store_options.num_workers = args.world_size;
  auto store = std::make_shared<tutti::TCPStore>(args.host, store_options);
  tutti::ProcessGroup group(store, args.rank, args.world_size, {.backend = "gloo"});
  serve([&](const Command& command) {
    if (command.op == "allreduce") {
      allreduce(group, command);
    } else if (command.op == "allgather") {
      allgather(group, command);
    } else {
      throw std::invalid_argument("unknown op '" + command.op + "'");
    }
  });
  // Rank 0 hosts the store: nobody leaves while a peer may still use it.
  group.barrier()->wait();
}

}  // namespace
}  // namespace gloo_compare

int main(int argc, char** argv) {
  const auto args =
      gloo_compare::parse_args(argc, argv, "tutti side of the gloo comparison (one rank)");
  try {
    gloo_compare::run(args);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tutti_side rank %d: %s\n", args.rank, e.what());
    return 1;
  }
  return 0;
}
