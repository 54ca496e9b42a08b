// What the soak (tests/soak/soak.cpp) found, each pinned by a test that
// failed before its fix.
#include <gtest/gtest.h>

#include "collectives/reference.hpp"
#include "harness/groups.hpp"
#include "harness/multiproc.hpp"
#include "tutti/process_group.hpp"

namespace tutti::testing {
namespace {

using namespace std::chrono_literals;

void finish(ProcessGroup& pg) { pg.barrier()->wait(); }

// Soak seed 1, operation 175: recv_anysource of an empty tensor.
TEST(SoakFound, EmptyRecvAnysourceThenMoreTraffic) {
  run_ranks(3,
            [](const RankContext& ctx) {
              auto pg = make_gloo_group(ctx, 20s);
              for (int round = 0; round < 3; ++round) {
                const int tag = 100 + round;
                if (ctx.rank == 0) {
                  for (int i = 1; i < ctx.world_size; ++i) {
                    std::vector<Tensor> in = {Tensor::zeros({0}, DType::Int16)};
                    auto work = pg->recv_anysource(in, tag);
                    work->wait();
                    EXPECT_GE(work->source_rank(), 1);
                  }
                } else {
                  std::vector<Tensor> out = {Tensor::zeros({0}, DType::Int16)};
                  pg->send(out, 0, tag)->wait();
                }
                std::vector<Tensor> t = {make_input(DType::Float32, ReduceOp::SUM, ctx.rank, 1000)};
                pg->allreduce(t)->wait();
                EXPECT_EQ(compare_reduced(t[0], ReduceOp::SUM, ctx.world_size), "");
              }
              finish(*pg);
            },
            {.deadline = 60s});
}

}  // namespace
}  // namespace tutti::testing
