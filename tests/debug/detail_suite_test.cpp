// No false positives: the shared collective suite, as gloo_test.cpp runs it,
// on world sizes 1 to 4 with TUTTI_DEBUG=DETAIL, so every collective, send
// and recv goes through the checking wrapper and must still give the
// reference results.
#include <gtest/gtest.h>

#include "collectives/suite.hpp"
#include "debug/debug_backend.hpp"
#include "harness/multiproc.hpp"
#include "tutti/debug.hpp"
#include "tutti/process_group.hpp"
#include "tutti/tcp_store.hpp"

namespace tutti::testing {
namespace {

using namespace std::chrono_literals;

struct Family {
  const char* name;
  void (*check)(ProcessGroup&);
};

void PrintTo(const Family& family, std::ostream* os) { *os << family.name; }

const Family kFamilies[] = {
    {"Broadcast", check_broadcast},
    {"Allreduce", check_allreduce},
    {"AllreduceCoalesced", check_allreduce_coalesced},
    {"Reduce", check_reduce},
    {"Allgather", check_allgather},
    {"GatherScatter", check_gather_scatter},
    {"ReduceScatter", check_reduce_scatter},
    {"Alltoall", check_alltoall},
    {"PointToPoint", check_point_to_point},
    {"Barrier", check_barrier},
    {"AllreduceSparse", check_allreduce_sparse},
};

class DetailSuite : public ::testing::TestWithParam<std::tuple<Family, int>> {};

TEST_P(DetailSuite, MatchesTheReferenceUnderDetail) {
  const auto [family, world] = GetParam();
  run_ranks(world,
            [check = family.check](const RankContext& ctx) {
              auto store = std::make_shared<TCPStore>("127.0.0.1",
                                                      TCPStoreOptions{.port = ctx.port,
                                                                      .is_server = ctx.rank == 0,
                                                                      .num_workers = ctx.world_size,
                                                                      .timeout = 60s});
              auto pg = std::make_shared<ProcessGroup>(
                  store, ctx.rank, ctx.world_size,
                  ProcessGroup::Options{.backend = "gloo", .timeout = 60s});
              // The checks really run: the group's backend is the wrapper.
              ASSERT_EQ(debug_level(), DebugLevel::DETAIL);
              ASSERT_NE(dynamic_cast<debug::DebugBackend*>(pg->get_backend(DeviceType::CPU).get()),
                        nullptr);
              check(*pg);
              pg->barrier()->wait();
            },
            {.deadline = 240s, .env = {{"TUTTI_DEBUG", "DETAIL"}}});
}

INSTANTIATE_TEST_SUITE_P(Detail, DetailSuite,
                         ::testing::Combine(::testing::ValuesIn(kFamilies),
                                            ::testing::Values(1, 2, 3, 4)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param).name) + "_" +
                                  std::to_string(std::get<1>(info.param)) + "ranks";
                         });

}  // namespace
}  // namespace tutti::testing
