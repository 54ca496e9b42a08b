// TUTTI_DEBUG and set_debug_level: parsing, precedence, and what INFO logs.
// Each case runs in a fresh process, since the variable is read once.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "debug/debug_backend.hpp"
#include "harness/expect.hpp"
#include "harness/multiproc.hpp"
#include "tutti/debug.hpp"
#include "tutti/hash_store.hpp"
#include "tutti/process_group.hpp"
#include "tutti/tcp_store.hpp"

namespace tutti::testing {
namespace {

using namespace std::chrono_literals;

void in_process(const std::map<std::string, std::string>& env, std::function<void()> body) {
  run_ranks(1, [&body](const RankContext&) { body(); }, {.env = env});
}

TEST(DebugLevel, DefaultsToOff) {
  in_process({}, [] { EXPECT_EQ(debug_level(), DebugLevel::OFF); });
}

TEST(DebugLevel, ReadsTheVariableInAnyCase) {
  in_process({{"TUTTI_DEBUG", "detail"}}, [] { EXPECT_EQ(debug_level(), DebugLevel::DETAIL); });
  in_process({{"TUTTI_DEBUG", "Info"}}, [] { EXPECT_EQ(debug_level(), DebugLevel::INFO); });
  in_process({{"TUTTI_DEBUG", "OFF"}}, [] { EXPECT_EQ(debug_level(), DebugLevel::OFF); });
}

TEST(DebugLevel, ABadValueNamesTheAcceptedOnes) {
  in_process({{"TUTTI_DEBUG", "verbose"}}, [] {
    EXPECT_INVALID_ARGUMENT(debug_level(), "TUTTI_DEBUG='verbose'", "OFF, INFO or DETAIL");
    // Creating a group says so too, before any communication.
    EXPECT_INVALID_ARGUMENT(
        ProcessGroup(std::make_shared<HashStore>(), 0, 1, ProcessGroup::Options{.backend = "gloo"}),
        "TUTTI_DEBUG='verbose'");
    // The setter overrides it.
    set_debug_level(DebugLevel::INFO);
    EXPECT_EQ(debug_level(), DebugLevel::INFO);
  });
}

TEST(DebugLevel, TheSetterOverridesTheVariableForGroupsCreatedAfterwards) {
  in_process({{"TUTTI_DEBUG", "DETAIL"}}, [] {
    auto store = std::make_shared<HashStore>();
    ProcessGroup checked(store, 0, 1, {.backend = "gloo", .group_name = "a"});
    set_debug_level(DebugLevel::OFF);
    EXPECT_EQ(debug_level(), DebugLevel::OFF);
    ProcessGroup plain(store, 0, 1, {.backend = "gloo", .group_name = "b"});
    EXPECT_NE(dynamic_cast<debug::DebugBackend*>(checked.get_backend(DeviceType::CPU).get()),
              nullptr);
    EXPECT_EQ(dynamic_cast<debug::DebugBackend*>(plain.get_backend(DeviceType::CPU).get()),
              nullptr);
    EXPECT_EQ(checked.backend_name(), "gloo");
    // Results are unchanged by the wrapper.
    std::vector<Tensor> t = {Tensor::zeros({3}, DType::Int32)};
    for (int i = 0; i < 3; ++i) t[0].data<int32_t>()[i] = i + 1;
    checked.allreduce(t)->wait();
    for (int i = 0; i < 3; ++i) EXPECT_EQ(t[0].data<int32_t>()[i], i + 1);
  });
}

// Captures what the body writes to stderr.
std::string capture_stderr(const std::function<void()>& body) {
  char path[] = "/tmp/tutti-debug-stderr-XXXXXX";
  const int fd = ::mkstemp(path);
  std::fflush(stderr);
  const int saved = ::dup(2);
  ::dup2(fd, 2);
  body();
  std::fflush(stderr);
  ::dup2(saved, 2);
  ::close(saved);
  ::close(fd);
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  ::unlink(path);
  return text.str();
}

TEST(DebugLevel, InfoLogsGroupCreationAndFailuresWithTheirCall) {
  run_ranks(
      2,
      [](const RankContext& ctx) {
        const std::string log = capture_stderr([&] {
          auto store =
              std::make_shared<TCPStore>("127.0.0.1", TCPStoreOptions{.port = ctx.port,
                                                                      .is_server = ctx.rank == 0,
                                                                      .num_workers = ctx.world_size,
                                                                      .timeout = 60s});
          ProcessGroup pg(store, ctx.rank, 2, {.backend = "gloo", .timeout = 30s});
          if (ctx.rank == 1) {
            std::vector<Tensor> t = {Tensor::zeros({4}, DType::Float32)};
            // Rank 0 never sends.
            EXPECT_THROW(pg.recv(t, 0, 3)->wait(500ms), TimeoutError);
          }
          pg.barrier()->wait();
        });
        const std::string created = "created process group 'default': rank " +
                                    std::to_string(ctx.rank) + " of 2, backend 'gloo'";
        EXPECT_NE(log.find(created), std::string::npos) << log;
        EXPECT_NE(log.find("TUTTI_DEBUG=INFO"), std::string::npos) << log;
        if (ctx.rank == 1) {
          EXPECT_NE(log.find("recv of float32[4] from rank 0 with tag 3 on group 'default' rank "
                             "1/2 failed:"),
                    std::string::npos)
              << log;
        }
      },
      {.env = {{"TUTTI_DEBUG", "INFO"}}});
}

}  // namespace
}  // namespace tutti::testing
