// The flight recorder and the root cause in real processes over gloo: a rank
// killed mid-run (the survivors dump, tutti-trace names the dead rank and
// where it stopped), SIGUSR1, tutti::dump_trace(), and the root cause that
// the other ranks' errors name.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "debug/trace_dump.hpp"
#include "debug/trace_test_util.hpp"
#include "harness/expect.hpp"
#include "harness/groups.hpp"
#include "harness/multiproc.hpp"
#include "tutti/errors.hpp"
#include "tutti/process_group.hpp"
#include "tutti/tcp_store.hpp"
#include "tutti/trace.hpp"

namespace tutti::testing {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

std::string dump_path(const std::string& dir, int rank) {
  return (fs::path(dir) / ("tutti-trace.rank" + std::to_string(rank) + ".json")).string();
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Rank 2 of 3 dies (SIGKILL) at the start of iteration kKilledAt of a loop of
// one allreduce per iteration, after completing the allreduces before it.
TEST(FlightRecorderGloo, KilledRankIsNamedMissingWithWhereItStopped) {
  constexpr int kWorld = 3;
  constexpr int kKilledAt = 9;  // 1-based iteration
  TempDir dir;
  auto outcomes = run_ranks_collect(
      kWorld,
      [&](const RankContext& ctx) {
        auto pg = make_gloo_group(ctx, 20s);
        for (int i = 1; i <= 50; ++i) {
          if (ctx.rank == 2 && i == kKilledAt) {
            // Give the others time to finish the allreduce it completed.
            std::this_thread::sleep_for(300ms);
            ::kill(::getpid(), SIGKILL);
          }
          std::vector<Tensor> t = {Tensor::zeros({4}, DType::Float32)};
          for (int k = 0; k < 4; ++k) t[0].data<float>()[k] = static_cast<float>(ctx.rank + i + k);
          try {
            pg->allreduce(t)->wait();
          } catch (const DistNetworkError& e) {
            EXPECT_EQ(i, kKilledAt) << e.what();
            EXPECT_TRUE(fs::exists(dump_path(dir.path(), ctx.rank)))
                << "the dump must be written before the error is raised";
            return;
          } catch (const TimeoutError& e) {
            EXPECT_EQ(i, kKilledAt) << e.what();
            return;
          }
          for (int k = 0; k < 4; ++k) {
            // sum over ranks of (rank + i + k)
            EXPECT_EQ(t[0].data<float>()[k], static_cast<float>(0 + 1 + 2 + kWorld * (i + k)));
          }
        }
        ADD_FAILURE() << "the loop went on without rank 2";
      },
      {.deadline = 90s,
       .env = {{"TUTTI_TRACE_DIR", dir.path()}},
       .kill_on_first_failure = false,
       .echo_output = false});
  ASSERT_EQ(outcomes.size(), 3u);
  EXPECT_EQ(outcomes[2].kind, RankOutcome::Kind::Crashed) << describe(outcomes[2], kWorld);
  EXPECT_EQ(outcomes[0].kind, RankOutcome::Kind::Passed) << describe(outcomes[0], kWorld);
  EXPECT_EQ(outcomes[1].kind, RankOutcome::Kind::Passed) << describe(outcomes[1], kWorld);
  EXPECT_TRUE(fs::exists(dump_path(dir.path(), 0)));
  EXPECT_TRUE(fs::exists(dump_path(dir.path(), 1)));
  EXPECT_FALSE(fs::exists(dump_path(dir.path(), 2)));

  // Collectives are numbered from 1: rank 2 completed allreduces 1 ..
  // kKilledAt - 1 and never issued number kKilledAt.
  const int last_joined = kKilledAt - 1;
  const auto text = run_tutti_trace(dir.path());
  EXPECT_EQ(text.exit_code, 1) << text.output;
  EXPECT_TRUE(contains(text.output, "MISSING: rank 2 left no dump")) << text.output;
  EXPECT_TRUE(contains(text.output, "MISSING rank 2: it took part in collectives up to at least #" +
                                        std::to_string(last_joined) + " (allreduce #" +
                                        std::to_string(last_joined)))
      << text.output;
  EXPECT_TRUE(contains(text.output, "stopped at #" + std::to_string(kKilledAt) + " (allreduce"))
      << text.output;
  EXPECT_TRUE(contains(text.output, "rank 2 stopped after #" + std::to_string(last_joined)))
      << text.output;
  EXPECT_TRUE(contains(text.output, "FAILED: allreduce #" + std::to_string(kKilledAt)))
      << text.output;

  const auto json = run_tutti_trace("--json " + dir.path());
  EXPECT_EQ(json.exit_code, 1) << json.output;
  EXPECT_TRUE(contains(json.output, "\"missing_ranks\": [\n    2\n  ]")) << json.output;
  EXPECT_TRUE(contains(json.output, "\"joined_at_least\": " + std::to_string(last_joined)))
      << json.output;
  EXPECT_TRUE(contains(json.output, "\"stopped_at\": " + std::to_string(kKilledAt))) << json.output;
}

TEST(FlightRecorderGloo, Sigusr1WritesADumpFromTheBackgroundThread) {
  TempDir dir;
  run_ranks(2,
            [&](const RankContext& ctx) {
              auto pg = make_gloo_group(ctx, 30s);
              std::vector<Tensor> t = {Tensor::zeros({3, 2}, DType::Int32)};
              for (int i = 0; i < 3; ++i) pg->allreduce(t)->wait();
              pg->broadcast(t, {.root_rank = 1})->wait();
              const std::string path = dump_path(dir.path(), ctx.rank);
              ASSERT_FALSE(fs::exists(path));
              ::kill(::getpid(), SIGUSR1);
              const auto deadline = std::chrono::steady_clock::now() + 10s;
              while (!fs::exists(path) && std::chrono::steady_clock::now() < deadline) {
                std::this_thread::sleep_for(10ms);
              }
              ASSERT_TRUE(fs::exists(path)) << "no dump 10 s after SIGUSR1";
              const auto dump = trace::parse_trace_dump(read_file(path));
              EXPECT_EQ(dump.reason, "SIGUSR1");
              EXPECT_EQ(dump.rank, ctx.rank);
              EXPECT_EQ(dump.world_size, 2);
              EXPECT_EQ(dump.pid, ::getpid());
              ASSERT_EQ(dump.entries.size(), 4u);
              for (size_t i = 0; i < 4; ++i) {
                const auto& e = dump.entries[i];
                EXPECT_EQ(e.seq, i + 1);
                EXPECT_EQ(e.op, i < 3 ? OpType::ALLREDUCE : OpType::BROADCAST);
                EXPECT_EQ(e.state, trace::EntryState::COMPLETED);
                EXPECT_EQ(e.dtype, DType::Int32);
                EXPECT_EQ(e.sizes, (std::vector<int64_t>{3, 2}));
                EXPECT_EQ(e.numel, 6);
                EXPECT_GT(e.started_us, 0) << "gloo marks when it starts an operation";
                EXPECT_GE(e.completed_us, e.started_us);
              }
              EXPECT_EQ(dump.entries[3].root, 1);
              pg->barrier()->wait();
            },
            {.deadline = 60s, .env = {{"TUTTI_TRACE_DIR", dir.path()}}});
}

// Launchers stop the surviving ranks with SIGTERM: with TUTTI_TRACE_DIR set
// the rank dumps first, then dies of SIGTERM as it would have.
TEST(FlightRecorderGloo, SigtermDumpsThenTerminates) {
  TempDir dir;
  auto outcomes = run_ranks_collect(2,
                                    [&](const RankContext& ctx) {
                                      auto pg = make_gloo_group(ctx, 30s);
                                      std::vector<Tensor> t = {Tensor::zeros({2}, DType::Float32)};
                                      pg->allreduce(t)->wait();
                                      pg->allreduce(t)->wait();
                                      if (ctx.rank == 1) {
                                        ::kill(::getpid(), SIGTERM);
                                        std::this_thread::sleep_for(20s);
                                        ADD_FAILURE() << "still alive 20 s after SIGTERM";
                                      }
                                    },
                                    {.deadline = 60s,
                                     .env = {{"TUTTI_TRACE_DIR", dir.path()}},
                                     .kill_on_first_failure = false,
                                     .echo_output = false});
  ASSERT_EQ(outcomes.size(), 2u);
  EXPECT_EQ(outcomes[0].kind, RankOutcome::Kind::Passed) << describe(outcomes[0], 2);
  EXPECT_EQ(outcomes[1].kind, RankOutcome::Kind::Crashed) << describe(outcomes[1], 2);
  EXPECT_EQ(outcomes[1].signal, SIGTERM);
  const std::string path = dump_path(dir.path(), 1);
  ASSERT_TRUE(fs::exists(path));
  const auto dump = trace::parse_trace_dump(read_file(path));
  EXPECT_EQ(dump.reason, "SIGTERM");
  ASSERT_EQ(dump.entries.size(), 2u);
  EXPECT_EQ(dump.entries[1].seq, 2u);
  EXPECT_EQ(dump.entries[1].state, trace::EntryState::COMPLETED);
  EXPECT_FALSE(fs::exists(dump_path(dir.path(), 0)));  // nothing failed there
}

TEST(FlightRecorderGloo, DumpTraceOnDemandRecordsPointToPoint) {
  TempDir dir;
  run_ranks(2,
            [&](const RankContext& ctx) {
              // No TUTTI_TRACE_DIR: the call needs a directory.
              EXPECT_INVALID_ARGUMENT(dump_trace(), "TUTTI_TRACE_DIR is not set");
              auto pg = make_gloo_group(ctx, 30s);
              std::vector<Tensor> t = {Tensor::zeros({5}, DType::Float64)};
              if (ctx.rank == 0) {
                pg->send(t, 1, 11)->wait();
                pg->send(t, 1, 12)->wait();
              } else {
                pg->recv(t, 0, 11)->wait();
                pg->recv(t, 0, 12)->wait();
              }
              pg->barrier()->wait();
              const std::string sub = (fs::path(dir.path()) / "on-demand").string();
              const std::string path = dump_trace(sub);
              EXPECT_EQ(path, dump_path(sub, ctx.rank));
              const auto dump = trace::parse_trace_dump(read_file(path));
              EXPECT_EQ(dump.reason, "dump_trace()");
              ASSERT_EQ(dump.groups.size(), 1u);
              EXPECT_EQ(dump.groups[0].name, "default");
              EXPECT_EQ(dump.groups[0].collectives, 1u);
              EXPECT_EQ(dump.groups[0].p2p, 2u);
              ASSERT_EQ(dump.entries.size(), 3u);
              for (int i = 0; i < 2; ++i) {
                const auto& e = dump.entries[static_cast<size_t>(i)];
                EXPECT_TRUE(e.p2p);
                EXPECT_EQ(e.seq, static_cast<uint64_t>(i + 1));
                EXPECT_EQ(e.op, ctx.rank == 0 ? OpType::SEND : OpType::RECV);
                EXPECT_EQ(e.peer, 1 - ctx.rank);
                EXPECT_EQ(e.tag, 11 + i);
                EXPECT_EQ(e.state, trace::EntryState::COMPLETED);
              }
              EXPECT_EQ(dump.entries[2].op, OpType::BARRIER);
              EXPECT_FALSE(dump.entries[2].p2p);
              EXPECT_EQ(dump.entries[2].seq, 1u);
              // trace_json() is the same dump, as text.
              EXPECT_EQ(trace::parse_trace_dump(trace_json()).entries.size(), 3u);
              pg->barrier()->wait();
            },
            {.deadline = 60s});
}

// Rank 2 fails first (a receive nobody sends, waited on for 500 ms) and then
// stays away from the allreduce the others run; their errors, raised when
// the allreduce times out, name rank 2 and its error, and keep their type.
TEST(RootCauseGloo, OtherRanksNameTheRankThatFailedFirst) {
  run_ranks(
      3,
      [](const RankContext& ctx) {
        auto pg = make_gloo_group(ctx, 3s);
        pg->barrier()->wait();
        auto store = pg->store();
        if (ctx.rank == 2) {
          std::vector<Tensor> t = {Tensor::zeros({1}, DType::Float32)};
          try {
            pg->recv(t, 0, 7)->wait(500ms);
            ADD_FAILURE() << "recv without a sender returned";
          } catch (const TimeoutError& e) {
            EXPECT_FALSE(contains(e.what(), "failed first"))
                << "the first failure is its own cause";
          }
          // Stay alive (connections open) until the others have checked.
          store->wait({"checked/0", "checked/1"}, 30s);
          store->set("released", "1");
          return;
        }
        std::vector<Tensor> t = {Tensor::zeros({8}, DType::Float32)};
        try {
          pg->allreduce(t)->wait();
          ADD_FAILURE() << "allreduce without rank 2 returned";
        } catch (const TimeoutError& e) {
          const std::string what = e.what();
          EXPECT_TRUE(contains(
              what, "allreduce #2 on group 'default' rank " + std::to_string(ctx.rank) + "/3"))
              << what;
          EXPECT_TRUE(contains(what,
                               "; rank 2 failed first: recv #1 (p2p) on group 'default': "
                               "TimeoutError: recv (peer rank 0, tag 7) on group 'default' rank "
                               "2/3 (gloo) timed out after 500 ms"))
              << what;
        } catch (const std::exception& e) {
          ADD_FAILURE() << "expected TimeoutError, got " << e.what();
        }
        store->set("checked/" + std::to_string(ctx.rank), "1");
        // Rank 1 leaves only after rank 0 has checked: a rank that exits
        // closes its connections, and rank 0, still waiting on rank 1 if it
        // started the allreduce more than the roll call's grace later, would
        // rightly get a DistNetworkError for a lost peer instead of its
        // timeout. Rank 0 hosts the store: it leaves after the others' last
        // call.
        store->wait({ctx.rank == 0 ? "released" : "checked/0"}, 30s);
      },
      {.deadline = 60s});
}

}  // namespace
}  // namespace tutti::testing
