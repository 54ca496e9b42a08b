// Faults of the TCPStore server process: killed (SIGKILL) while clients wait
// on it, or while a group is being created through it; stopped (SIGSTOP)
// while clients wait. Rank 0 of each run only serves the store; ranks 1 to
// 3 are its clients. Every client must raise the documented error naming
// the server (docs/stores.md, "Faults"), within the documented bound plus
// kSchedulingSlack.
#include <gtest/gtest.h>
#include <signal.h>

#include <cstdio>
#include <string>
#include <thread>

#include "faults/fault_harness.hpp"
#include "harness/multiproc.hpp"
#include "tutti/errors.hpp"
#include "tutti/process_group.hpp"
#include "tutti/tcp_store.hpp"

namespace tutti::testing {
namespace {

using namespace std::chrono_literals;

constexpr int kProcesses = 4;  // the server and three clients
constexpr auto kSchedulingSlack = 2000ms;

std::shared_ptr<TCPStore> join(const RankContext& ctx, std::chrono::milliseconds timeout) {
  return std::make_shared<TCPStore>("127.0.0.1", TCPStoreOptions{.port = ctx.port,
                                                                 .is_server = ctx.rank == 0,
                                                                 .num_workers = kProcesses,
                                                                 .timeout = timeout});
}

std::string server_name(const RankContext& ctx) { return "127.0.0.1:" + std::to_string(ctx.port); }

// The server signals itself once every client has said it is about to
// block (and a moment more, so that they are blocked).
void serve_then_signal(TCPStore& store, int signal, FaultRecord& record) {
  store.wait({"blocking/1", "blocking/2", "blocking/3"}, 30s);
  signal_self_after(300ms, signal, record);
  std::this_thread::sleep_for(60s);  // killed or stopped before this ends
}

void record_detection(FaultRecord& record, int rank) { record.detected_ns[rank] = monotonic_ns(); }

// Checks the outcomes: the server died of SIGKILL (sent by itself, or by
// the last client for a stopped one), every client passed; prints the
// slowest detection.
void expect_outcomes(const std::vector<RankOutcome>& outcomes, const FaultRecord& record,
                     const char* row, std::chrono::milliseconds bound) {
  ASSERT_EQ(outcomes.size(), static_cast<size_t>(kProcesses));
  EXPECT_EQ(outcomes[0].kind, RankOutcome::Kind::Crashed) << describe(outcomes[0], kProcesses);
  EXPECT_EQ(outcomes[0].signal, SIGKILL) << describe(outcomes[0], kProcesses);
  double worst = 0;
  for (int r = 1; r < kProcesses; ++r) {
    EXPECT_EQ(outcomes[static_cast<size_t>(r)].kind, RankOutcome::Kind::Passed)
        << describe(outcomes[static_cast<size_t>(r)], kProcesses);
    worst = std::max(worst, record.detection_ms(r));
  }
  std::printf(
      "[ fault    ] %s: slowest client raised %.0f ms after the fault (bound %lld ms + "
      "%lld ms slack)\n",
      row, worst, static_cast<long long>(bound.count()),
      static_cast<long long>(kSchedulingSlack.count()));
}

void expect_within(const FaultRecord& record, int rank, std::chrono::milliseconds bound) {
  const double ms = record.detection_ms(rank);
  EXPECT_GE(ms, 0.0);
  EXPECT_LE(ms, static_cast<double>((bound + kSchedulingSlack).count()))
      << "documented bound " << bound.count() << " ms";
}

// Clients blocked in wait() for a key nobody sets; the server is killed.
TEST(StoreServerFault, KilledDuringWaitIsANetworkErrorNamingTheServer) {
  SharedFaultRecord record;
  constexpr auto kBound = 0ms;  // the kernel closes the connections at once
  auto outcomes = run_ranks_collect(
      kProcesses,
      [&](const RankContext& ctx) {
        auto store = join(ctx, 60s);
        if (ctx.rank == 0) return serve_then_signal(*store, SIGKILL, *record);
        store->set("blocking/" + std::to_string(ctx.rank), std::string("1"));
        try {
          store->wait({"never"}, 30s);
          ADD_FAILURE() << "wait returned without its key";
        } catch (const DistNetworkError& e) {
          record_detection(*record, ctx.rank);
          EXPECT_NE(std::string(e.what()).find(server_name(ctx)), std::string::npos) << e.what();
        }
        expect_within(*record, ctx.rank, kBound);
        // New calls do not retry a server that has gone until their
        // timeout: an idle pooled connection finds it reset, and the next
        // connection is refused.
        const auto start = std::chrono::steady_clock::now();
        bool refused = false;
        for (int call = 0; call < 3 && !refused; ++call) {
          try {
            store->get("anything");
            ADD_FAILURE() << "get succeeded without a server";
          } catch (const DistNetworkError& e) {
            EXPECT_NE(std::string(e.what()).find(server_name(ctx)), std::string::npos) << e.what();
            refused = std::string(e.what()).find("refused the connection") != std::string::npos;
          }
        }
        EXPECT_TRUE(refused) << "no call said that the server refused the connection";
        EXPECT_LT(std::chrono::steady_clock::now() - start, kSchedulingSlack);
      },
      {.deadline = 90s, .kill_on_first_failure = false, .echo_output = false});
  expect_outcomes(outcomes, *record, "store server SIGKILL during wait", kBound);
}

// Clients creating a gloo group of four whose fourth member never comes:
// they are blocked in the rendezvous when the server is killed.
TEST(StoreServerFault, KilledDuringRendezvousIsANetworkErrorNamingTheServer) {
  SharedFaultRecord record;
  constexpr auto kBound = 0ms;
  auto outcomes = run_ranks_collect(
      kProcesses,
      [&](const RankContext& ctx) {
        auto store = join(ctx, 60s);
        if (ctx.rank == 0) return serve_then_signal(*store, SIGKILL, *record);
        store->set("blocking/" + std::to_string(ctx.rank), std::string("1"));
        try {
          ProcessGroup pg(store, ctx.rank - 1, 4,
                          ProcessGroup::Options{.backend = "gloo", .timeout = 30s});
          ADD_FAILURE() << "a group of four formed with three members";
        } catch (const DistNetworkError& e) {
          record_detection(*record, ctx.rank);
          EXPECT_NE(std::string(e.what()).find(server_name(ctx)), std::string::npos) << e.what();
        }
        expect_within(*record, ctx.rank, kBound);
      },
      {.deadline = 90s, .kill_on_first_failure = false, .echo_output = false});
  expect_outcomes(outcomes, *record, "store server SIGKILL during rendezvous", kBound);
}

// A stopped server accepts bytes (the kernel does) but never answers:
// clients raise TimeoutError naming it, after their timeout plus the
// reply grace (a quarter of the timeout, at least 250 ms).
TEST(StoreServerFault, StoppedDuringWaitIsATimeoutNamingTheServer) {
  SharedFaultRecord record;
  constexpr auto kWait = 2000ms;
  constexpr auto kBound = kWait + kWait / 4;
  auto outcomes = run_ranks_collect(
      kProcesses,
      [&](const RankContext& ctx) {
        auto store = join(ctx, 60s);
        if (ctx.rank == 0) return serve_then_signal(*store, SIGSTOP, *record);
        store->set("blocking/" + std::to_string(ctx.rank), std::string("1"));
        // Wait for the stop, so that the whole wait runs against it.
        while (record->fault_ns.load() == 0) std::this_thread::sleep_for(5ms);
        try {
          store->wait({"never"}, kWait);
          ADD_FAILURE() << "wait returned without its key";
        } catch (const TimeoutError& e) {
          record_detection(*record, ctx.rank);
          EXPECT_NE(std::string(e.what()).find(server_name(ctx)), std::string::npos) << e.what();
        }
        expect_within(*record, ctx.rank, kBound);
        if (++record->survivors_done == kProcesses - 1) {
          ::kill(record->faulty_pid.load(), SIGKILL);
        }
      },
      {.deadline = 90s, .kill_on_first_failure = false, .echo_output = false});
  expect_outcomes(outcomes, *record, "store server SIGSTOP during wait", kBound);
}

}  // namespace
}  // namespace tutti::testing
