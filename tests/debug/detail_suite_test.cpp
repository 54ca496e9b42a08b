// No false positives: the shared collective suite, as gloo_test.cpp runs it,
// on world sizes 1 to 4 with TUTTI_DEBUG=DETAIL, so every collective, send
// and recv goes through the checking wrapper and must still give the
// reference results.
#include <gtest/gtest.h>

#include "collectives/suite.hpp"
#include "debug/debug_backend.hpp"
#include "harness/groups.hpp"
#include "harness/multiproc.hpp"
#include "tutti/debug.hpp"
#include "tutti/process_group.hpp"
#include "tutti/tcp_store.hpp"

namespace tutti::testing {
namespace {

using namespace std::chrono_literals;

class DetailSuite : public ::testing::TestWithParam<std::tuple<SuiteFamily, int>> {};

TEST_P(DetailSuite, MatchesTheReferenceUnderDetail) {
  const auto [family, world] = GetParam();
  run_ranks(world,
            [check = family.check](const RankContext& ctx) {
              auto pg = make_gloo_group(ctx);
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
                         ::testing::Combine(::testing::ValuesIn(kSuiteFamilies),
                                            ::testing::Values(1, 2, 3, 4)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param).name) + "_" +
                                  std::to_string(std::get<1>(info.param)) + "ranks";
                         });

}  // namespace
}  // namespace tutti::testing
