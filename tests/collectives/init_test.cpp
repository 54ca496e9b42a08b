// init_process_group over its three init methods, its errors, and
// new_group on 4 real processes.
#include "tutti/init.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <thread>

#include "collectives/reference.hpp"
#include "harness/expect.hpp"
#include "harness/multiproc.hpp"
#include "tutti/errors.hpp"

namespace tutti::testing {
namespace {

using namespace std::chrono_literals;

// allreduce(SUM) of rank-dependent data, checked against the reference.
void expect_allreduce_works(ProcessGroup& pg) {
  std::vector<Tensor> t = {make_input(DType::Float32, ReduceOp::SUM, pg.rank(), 1001)};
  pg.allreduce(t)->wait();
  EXPECT_EQ(compare_reduced(t[0], ReduceOp::SUM, pg.size()), "") << pg.describe();
}

TEST(InitProcessGroup, EnvMethodReadsTheTorchrunVariables) {
  run_ranks(3, [](const RankContext& ctx) {
    setenv("MASTER_ADDR", "127.0.0.1", 1);
    setenv("MASTER_PORT", std::to_string(ctx.port).c_str(), 1);
    setenv("RANK", std::to_string(ctx.rank).c_str(), 1);
    setenv("WORLD_SIZE", std::to_string(ctx.world_size).c_str(), 1);
    auto pg = init_process_group({.backend = "gloo", .timeout = 60s});
    EXPECT_EQ(pg->rank(), ctx.rank);
    EXPECT_EQ(pg->size(), 3);
    EXPECT_EQ(pg->backend_name(), "gloo");
    expect_allreduce_works(*pg);
    pg->barrier()->wait();
  });
}

TEST(InitProcessGroup, TcpMethodWithExplicitRanks) {
  run_ranks(2, [](const RankContext& ctx) {
    auto pg = init_process_group({.backend = "auto",
                                  .init_method = "tcp://127.0.0.1:" + std::to_string(ctx.port),
                                  .rank = ctx.rank,
                                  .world_size = ctx.world_size,
                                  .timeout = 60s});
    EXPECT_EQ(pg->backend_name(), "gloo");  // "auto" resolved
    expect_allreduce_works(*pg);
    pg->barrier()->wait();
  });
}

TEST(InitProcessGroup, FileMethod) {
  run_ranks(3, [](const RankContext& ctx) {
    auto pg = init_process_group({.init_method = "file://" + ctx.shared_dir + "/init",
                                  .rank = ctx.rank,
                                  .world_size = ctx.world_size,
                                  .timeout = 60s});
    expect_allreduce_works(*pg);
    pg->barrier()->wait();
  });
}

TEST(InitProcessGroup, MissingAndMalformedVariablesAreNamed) {
  // Run in a child so the environment changes stay there.
  run_ranks(1, [](const RankContext&) {
    unsetenv("MASTER_ADDR");
    unsetenv("MASTER_PORT");
    unsetenv("RANK");
    unsetenv("WORLD_SIZE");
    EXPECT_INVALID_ARGUMENT(init_process_group(), "MASTER_ADDR", "e.g.", "tuttirun");
    setenv("MASTER_ADDR", "127.0.0.1", 1);
    EXPECT_INVALID_ARGUMENT(init_process_group(), "MASTER_PORT", "MASTER_PORT=29500");
    setenv("MASTER_PORT", "twenty", 1);
    EXPECT_INVALID_ARGUMENT(init_process_group(), "MASTER_PORT='twenty' is not an integer");
    setenv("MASTER_PORT", "70000", 1);
    EXPECT_INVALID_ARGUMENT(init_process_group(), "MASTER_PORT=70000 is not a TCP port");
    setenv("MASTER_PORT", "29999", 1);
    EXPECT_INVALID_ARGUMENT(init_process_group(), "RANK", "RANK=0");
    setenv("RANK", "3", 1);
    EXPECT_INVALID_ARGUMENT(init_process_group(), "WORLD_SIZE");
    setenv("WORLD_SIZE", "2", 1);
    EXPECT_INVALID_ARGUMENT(init_process_group(), "rank 3 is out of range for world size 2");
    setenv("WORLD_SIZE", "0", 1);
    EXPECT_INVALID_ARGUMENT(init_process_group(), "world size 0");
    // Found by fuzz/env_strings_fuzzer: values past int's range wrapped
    // (RANK=4294967296 was rank 0), and tcp://[]:port had an empty host.
    setenv("WORLD_SIZE", "2", 1);
    setenv("RANK", "4294967296", 1);
    EXPECT_INVALID_ARGUMENT(init_process_group(), "RANK=4294967296 is out of range");
    setenv("RANK", "0", 1);
    setenv("WORLD_SIZE", "4294967298", 1);
    EXPECT_INVALID_ARGUMENT(init_process_group(), "WORLD_SIZE=4294967298 is out of range");
    EXPECT_INVALID_ARGUMENT(init_process_group({.init_method = "tcp://[]:29500"}),
                            "is not tcp://[ipv6]:port");
    EXPECT_INVALID_ARGUMENT(init_process_group({.backend = "nccl"}), "unknown backend 'nccl'",
                            "gloo");
    EXPECT_INVALID_ARGUMENT(init_process_group({.init_method = "tcp://nohostport"}),
                            "needs a host and a port");
    EXPECT_INVALID_ARGUMENT(init_process_group({.init_method = "tcp://h:x"}), "is not an integer");
    EXPECT_INVALID_ARGUMENT(init_process_group({.init_method = "file://relative/path"}),
                            "absolute path");
    EXPECT_INVALID_ARGUMENT(init_process_group({.init_method = "udp://x"}), "env://");
  });
}

TEST(InitProcessGroup, AutoPicksGloo) { EXPECT_EQ(resolve_auto_backend(), "gloo"); }

// Every rank calls new_group for every shape, in the same order.
TEST(NewGroup, EveryShapeOnFourRanks) {
  run_ranks(4,
            [](const RankContext& ctx) {
              auto world =
                  init_process_group({.init_method = "tcp://127.0.0.1:" + std::to_string(ctx.port),
                                      .rank = ctx.rank,
                                      .world_size = 4,
                                      .timeout = 60s});
              const std::vector<std::vector<int>> shapes = {{0, 1},    {2, 3}, {3, 1},
                                                            {0, 2, 3}, {1},    {3, 2, 1, 0}};
              std::vector<std::shared_ptr<ProcessGroup>> groups;
              for (const auto& ranks : shapes) {
                auto g = world->new_group(ranks);
                const auto it = std::find(ranks.begin(), ranks.end(), ctx.rank);
                if (it == ranks.end()) {
                  EXPECT_EQ(g, nullptr);
                } else {
                  ASSERT_NE(g, nullptr);
                  EXPECT_EQ(g->rank(), it - ranks.begin());  // the order of `ranks` sets the rank
                  EXPECT_EQ(g->size(), static_cast<int>(ranks.size()));
                }
                groups.push_back(g);
              }
              // Disjoint subgroups {0,1} and {2,3} run collectives at the same time.
              auto& pair = ctx.rank < 2 ? groups[0] : groups[1];
              for (int i = 0; i < 20; ++i) expect_allreduce_works(*pair);
              // Each member group works, interleaved with the parent.
              for (auto& g : groups) {
                if (g) expect_allreduce_works(*g);
                expect_allreduce_works(*world);
              }
              // Nested: a subgroup of {3,2,1,0} made of its ranks 0 and 2 (world 3 and 1).
              auto nested = groups[5]->new_group({0, 2});
              if (ctx.rank == 3 || ctx.rank == 1) {
                ASSERT_NE(nested, nullptr);
                expect_allreduce_works(*nested);
              } else {
                EXPECT_EQ(nested, nullptr);
              }
              // The parent and a subgroup used from two threads at once.
              if (groups[3]) {
                std::thread side([&] {
                  for (int i = 0; i < 10; ++i) expect_allreduce_works(*groups[3]);
                });
                for (int i = 0; i < 10; ++i) expect_allreduce_works(*world);
                side.join();
              } else {
                for (int i = 0; i < 10; ++i) expect_allreduce_works(*world);
              }
              world->barrier()->wait();
            },
            {.deadline = 180s});
}

}  // namespace
}  // namespace tutti::testing
