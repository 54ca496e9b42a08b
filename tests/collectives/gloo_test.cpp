// The gloo backend in real processes: the shared collective suite over world
// sizes 1 to 4, and the faults a user meets (a stalled rank, a killed rank,
// an aborted recv, a group destroyed with work in flight).
#include <arpa/inet.h>
#include <gloo/transport/tcp/address.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <limits>
#include <thread>

#include "backends/gloo/census.hpp"
#include "backends/gloo/scratch_pool.hpp"
#include "collectives/reference.hpp"
#include "collectives/suite.hpp"
#include "harness/groups.hpp"
#include "harness/multiproc.hpp"
#include "tutti/errors.hpp"
#include "tutti/file_store.hpp"
#include "tutti/process_group.hpp"
#include "tutti/tcp_store.hpp"

namespace tutti::testing {
namespace {

using namespace std::chrono_literals;

// The rank that hosts the store must outlive the others' last store call.
void finish(ProcessGroup& pg) { pg.barrier()->wait(); }

class GlooSuite : public ::testing::TestWithParam<std::tuple<SuiteFamily, int>> {};

TEST_P(GlooSuite, MatchesTheReference) {
  const auto [family, world] = GetParam();
  run_ranks(world,
            [check = family.check](const RankContext& ctx) {
              auto pg = make_gloo_group(ctx);
              check(*pg);
              finish(*pg);
            },
            {.deadline = 240s});
}

INSTANTIATE_TEST_SUITE_P(Gloo, GlooSuite,
                         ::testing::Combine(::testing::ValuesIn(kSuiteFamilies),
                                            ::testing::Values(1, 2, 3, 4)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param).name) + "_" +
                                  std::to_string(std::get<1>(info.param)) + "ranks";
                         });

// Every algorithm the option can force, on a power of two and on world sizes
// where recursive doubling folds ranks in, over counts that leave ring parts
// empty (1 on 3 ranks), uneven (1001), and split into many segments with a
// short last part ((1 << 20) + 3, 4 MiB of floats); every rank must hold the
// same bits, which compare_reduced's exact check implies for SUM of these
// integer-valued inputs.
class GlooAlgorithms : public ::testing::TestWithParam<std::tuple<const char*, int>> {};

TEST_P(GlooAlgorithms, AgreeWithTheReference) {
  const auto [algorithm, world] = GetParam();
  run_ranks(
      world,
      [](const RankContext& ctx) {
        auto pg = make_gloo_group(ctx);
        for (int64_t count : {int64_t{1}, int64_t{2}, int64_t{1001}, (int64_t{1} << 20) + 3}) {
          for (ReduceOp op : {ReduceOp(ReduceOp::SUM), ReduceOp(ReduceOp::MAX)}) {
            std::vector<Tensor> t = {make_input(DType::Float32, op, ctx.rank, count)};
            pg->allreduce(t, {.reduce_op = op})->wait();
            EXPECT_EQ(compare_reduced(t[0], op, ctx.world_size), "") << "count " << count;
          }
        }
        finish(*pg);
      },
      {.env = {{"TUTTI_GLOO_ALLREDUCE", algorithm}}});
}

INSTANTIATE_TEST_SUITE_P(Gloo, GlooAlgorithms,
                         ::testing::Combine(::testing::Values("ring", "doubling", "gloo-ring",
                                                              "gloo-bcube"),
                                            ::testing::Values(2, 3, 4)),
                         [](const auto& info) {
                           std::string name = std::get<0>(info.param);
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name + "_" + std::to_string(std::get<1>(info.param)) + "ranks";
                         });

// The small-message channel (eager.hpp): allreduces issued back to back
// without waiting, so that the two worker threads and the waiting thread run
// neighbours at once, of sizes on both sides of EagerChannel::kMaxBytes
// (16384 floats is exactly 64 KiB) and through allreduce_coalesced; world
// sizes where doubling folds ranks in (3, 5) and where it does not.
class GlooEager : public ::testing::TestWithParam<int> {};

// `count` floats that no input holds (NaN), so a part left unwritten shows.
Tensor poisoned(int64_t count) {
  Tensor t = Tensor::empty({count}, DType::Float32);
  std::fill_n(t.data<float>(), count, std::numeric_limits<float>::quiet_NaN());
  return t;
}

// Allreduces and allgathers queued together, on both sides of the channel's
// limit (16384 floats are 64 KiB): each takes its turn in queue order, so
// every result is that operation's own.
TEST_P(GlooEager, OperationsInFlightTogetherMatchTheReference) {
  run_ranks(GetParam(), [](const RankContext& ctx) {
    auto pg = make_gloo_group(ctx);
    const int p = ctx.world_size;
    const int64_t counts[] = {1, 7, 16384, 16385, 3, 1000, 2};
    const ReduceOp ops[] = {ReduceOp(ReduceOp::SUM), ReduceOp(ReduceOp::MAX)};
    enum class Kind { kAllreduce, kCoalesced, kAllgather, kAllgatherList };
    struct Op {
      Kind kind;
      ReduceOp op;
      int64_t count;
      std::vector<Tensor> tensors;            // allreduce: in place; allgather: the input
      Tensor output;                          // allgather_into_tensor
      std::vector<std::vector<Tensor>> list;  // allgather
    };
    std::vector<Op> issued;
    std::vector<std::shared_ptr<Work>> works;
    for (int i = 0; i < 60; ++i) {
      Op o{Kind::kAllreduce, ops[i % 2], counts[i % std::size(counts)], {}, {}, {}};
      if (i % 3 == 1) o.kind = Kind::kAllgather;
      if (i % 10 == 7) o.kind = Kind::kAllgatherList;
      if (i % 5 == 4) o.kind = Kind::kCoalesced;
      o.tensors.push_back(make_input(DType::Float32, o.op, ctx.rank, o.count));
      switch (o.kind) {
        case Kind::kAllreduce:
          works.push_back(pg->allreduce(o.tensors, {.reduce_op = o.op}));
          break;
        case Kind::kCoalesced: {
          o.tensors.push_back(make_input(DType::Float32, o.op, ctx.rank, 5));
          AllreduceCoalescedOptions coalesced;
          coalesced.reduce_op = o.op;
          works.push_back(pg->allreduce_coalesced(o.tensors, coalesced));
          break;
        }
        case Kind::kAllgather:
          o.output = poisoned(o.count * p);
          works.push_back(pg->allgather_into_tensor(o.output, o.tensors[0]));
          break;
        case Kind::kAllgatherList:
          o.list.resize(1);
          for (int r = 0; r < p; ++r) {
            o.list[0].push_back(poisoned(o.count));
          }
          works.push_back(pg->allgather(o.list, o.tensors));
          break;
      }
      issued.push_back(std::move(o));
    }
    for (size_t i = 0; i < works.size(); ++i) {
      works[i]->wait();
      const Op& o = issued[i];
      if (o.kind == Kind::kAllreduce || o.kind == Kind::kCoalesced) {
        for (const Tensor& t : o.tensors) {
          EXPECT_EQ(compare_reduced(t, o.op, p), "") << "operation " << i;
        }
        continue;
      }
      for (int r = 0; r < p; ++r) {
        const Tensor got = o.kind == Kind::kAllgather ? o.output.narrow(0, r * o.count, o.count)
                                                      : o.list[0][static_cast<size_t>(r)];
        EXPECT_EQ(compare_input(got, o.op, r), "")
            << "operation " << i << ", rank " << r << "'s part";
      }
    }
    finish(*pg);
  });
}

INSTANTIATE_TEST_SUITE_P(Gloo, GlooEager, ::testing::Values(2, 3, 4, 5),
                         [](const auto& info) { return std::to_string(info.param) + "ranks"; });

// Ranks that disagree on an allreduce's size get an error naming the
// mismatch, not a mix of each other's data, and the channel then refuses
// further small allreduces, since the two sides' message counts may differ.
TEST(GlooEagerMismatch, DifferentSizesRaiseAndTheChannelStaysClosed) {
  run_ranks(2, [](const RankContext& ctx) {
    auto pg = make_gloo_group(ctx, 20s);
    std::vector<Tensor> t = {Tensor::zeros({ctx.rank == 0 ? 8 : 4}, DType::Float32)};
    try {
      pg->allreduce(t)->wait();
      ADD_FAILURE() << "mismatched sizes must raise";
    } catch (const DistBackendError& e) {
      EXPECT_NE(std::string(e.what()).find("did not run the same collectives"), std::string::npos)
          << e.what();
    }
    std::vector<Tensor> next = {Tensor::zeros({4}, DType::Float32)};
    try {
      pg->allreduce(next)->wait();
      ADD_FAILURE() << "the channel must refuse after an operation failed in it";
    } catch (const DistBackendError& e) {
      EXPECT_NE(std::string(e.what()).find("out of step"), std::string::npos) << e.what();
    }
    // Other collectives still run.
    std::vector<Tensor> b = {Tensor::zeros({3}, DType::Float32)};
    b[0].data<float>()[2] = static_cast<float>(ctx.rank + 1);
    pg->broadcast(b, {.root_rank = 1})->wait();
    EXPECT_EQ(b[0].data<float>()[2], 2.0f);
    finish(*pg);
  });
}

// The schedules' scratch: what an operation hands back is what the next one
// gets (the most recent block that fits, its pages warm), within the pool's
// bounds. That reused scratch holds the last operation's bytes is covered by
// GlooAlgorithms, whose sizes shrink and grow from one call to the next.
TEST(GlooScratchPool, HandsOutTheMostRecentBlockThatFitsWithinItsBounds) {
  using gloo_backend::ScratchPool;
  ScratchPool pool;
  Tensor small = pool.take(1000);
  Tensor large = pool.take(size_t{1} << 20);
  ASSERT_GE(small.nbytes(), 1000u);
  ASSERT_GE(large.nbytes(), size_t{1} << 20);
  void* const small_at = small.data_ptr();
  void* const large_at = large.data_ptr();
  pool.give_back(std::move(small));
  pool.give_back(std::move(large));
  EXPECT_EQ(pool.pooled_bytes(), 1000u + (size_t{1} << 20));

  Tensor first = pool.take(2000);  // only the large block fits
  EXPECT_EQ(first.data_ptr(), large_at);
  Tensor second = pool.take(800);
  EXPECT_EQ(second.data_ptr(), small_at);
  EXPECT_EQ(pool.pooled_bytes(), 0u);
  Tensor fresh = pool.take(100);  // nothing pooled: a new block
  EXPECT_NE(fresh.data_ptr(), small_at);
  EXPECT_NE(fresh.data_ptr(), large_at);
  fresh = Tensor();  // a block taken and dropped is freed, not pooled
  EXPECT_EQ(pool.pooled_bytes(), 0u);

  // At most kMaxBlocks blocks, the most recent ones.
  std::vector<void*> given;
  for (size_t i = 0; i <= ScratchPool::kMaxBlocks; ++i) {
    Tensor block = pool.take(4096 * (i + 1));
    given.push_back(block.data_ptr());
    pool.give_back(std::move(block));
  }
  size_t expected = 0;
  for (size_t i = 1; i <= ScratchPool::kMaxBlocks; ++i) expected += 4096 * (i + 1);
  EXPECT_EQ(pool.pooled_bytes(), expected);
  EXPECT_EQ(pool.take(4096 * (ScratchPool::kMaxBlocks + 1)).data_ptr(), given.back());

  // A block past kMaxBytes is freed, not kept.
  const size_t before = pool.pooled_bytes();
  pool.give_back(Tensor::empty({static_cast<int64_t>(ScratchPool::kMaxBytes + 1)}, DType::UInt8));
  EXPECT_EQ(pool.pooled_bytes(), before);
}

// gloo writes with writev(), so a write to a peer that has gone raises
// SIGPIPE, which by default kills the process instead of letting gloo report
// the error (seen as a rank killed by SIGPIPE in KilledPeerIsANetworkError...).
TEST(GlooSetup, SigpipeNoLongerKillsTheProcess) {
  run_ranks(1, [](const RankContext& ctx) {
    ::signal(SIGPIPE, SIG_DFL);
    auto pg = make_gloo_group(ctx);
    struct sigaction now {};
    ASSERT_EQ(::sigaction(SIGPIPE, nullptr, &now), 0);
    EXPECT_EQ(now.sa_handler, SIG_IGN);
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    ::close(fds[1]);
    char byte = 0;
    EXPECT_EQ(::write(fds[0], &byte, 1), -1);  // the process survives it
    EXPECT_EQ(errno, EPIPE);
    ::close(fds[0]);
  });
}

TEST(GlooSetup, AHandlerOfTheProgramIsKept) {
  run_ranks(1, [](const RankContext& ctx) {
    static void (*handler)(int) = [](int) {};
    ::signal(SIGPIPE, handler);
    auto pg = make_gloo_group(ctx);
    struct sigaction now {};
    ASSERT_EQ(::sigaction(SIGPIPE, nullptr, &now), 0);
    EXPECT_EQ(now.sa_handler, handler);
  });
}

// A rank that never joins: the others' error names it, within the timeout.
TEST(GlooSetup, ARankThatNeverJoinsIsNamed) {
  auto outcomes = run_ranks_collect(
      3,
      [](const RankContext& ctx) {
        auto store =
            std::make_shared<TCPStore>("127.0.0.1", TCPStoreOptions{.port = ctx.port,
                                                                    .is_server = ctx.rank == 0,
                                                                    .num_workers = ctx.world_size,
                                                                    .timeout = 30s});
        if (ctx.rank == 2) {
          std::this_thread::sleep_for(4s);  // joins the store, never the group
          return;
        }
        const auto start = std::chrono::steady_clock::now();
        try {
          ProcessGroup pg(store, ctx.rank, ctx.world_size,
                          ProcessGroup::Options{.backend = "gloo", .timeout = 1s});
          ADD_FAILURE() << "the group formed without rank 2";
        } catch (const TimeoutError& e) {
          EXPECT_NE(std::string(e.what()).find("rank 2 never published its address"),
                    std::string::npos)
              << e.what();
        }
        EXPECT_LT(std::chrono::steady_clock::now() - start, 2s + 1s);
        // Rank 0 serves the store that rank 1's error reads to name rank 2:
        // it stays until rank 1 has its error (it was flaky under load when
        // rank 0 left first and the lookup found no store).
        if (ctx.rank == 1) store->set("rank1_named_it", std::string("1"));
        if (ctx.rank == 0) store->wait({"rank1_named_it"});
      },
      {.deadline = 60s, .kill_on_first_failure = false});
  for (const auto& o : outcomes) EXPECT_EQ(o.kind, RankOutcome::Kind::Passed) << describe(o, 3);
}

// A peer whose published address cannot be reached: the error names its
// rank and that address. Rank 1 is played by the test, publishing (as gloo
// would) the address of a port nobody listens on.
TEST(GlooSetup, AnUnreachablePeerIsNamedWithItsAddress) {
  run_ranks(1, [](const RankContext& ctx) {
    auto store = std::make_shared<TCPStore>(
        "127.0.0.1", TCPStoreOptions{.port = ctx.port, .is_server = true, .timeout = 30s});
    sockaddr_in closed{};
    closed.sin_family = AF_INET;
    closed.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    {
      int fd = ::socket(AF_INET, SOCK_STREAM, 0);
      socklen_t len = sizeof closed;
      ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&closed), len), 0);
      ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&closed), &len), 0);
      ::close(fd);  // bound, never listening: connections are refused
    }
    sockaddr_storage ss{};
    std::memcpy(&ss, &closed, sizeof closed);
    const auto bytes = ::gloo::transport::tcp::Address(ss, 1).bytes();
    const std::string address = ::gloo::transport::tcp::Address(ss, 1).str();
    // Device 0's key for rank 1: its addresses for every other rank (one).
    store->set("0/1", std::vector<uint8_t>(bytes.begin(), bytes.end()));
    BackendConfig config;
    config.store = store;
    config.rank = 0;
    config.size = 2;
    config.timeout = 1s;
    const auto start = std::chrono::steady_clock::now();
    try {
      find_backend("gloo")->factory(config);
      ADD_FAILURE() << "connected to a port nobody listens on";
    } catch (const DistNetworkError& e) {
      const std::string message = e.what();
      // gloo prints [host]:port$pair; the message leaves out the pair.
      const std::string host_port = address.substr(0, address.rfind('$'));
      EXPECT_NE(message.find("was to rank 1 at " + host_port + ":"), std::string::npos) << message;
    }
    // gloo either fails the connection at once or waits five times the
    // timeout for it (its Pair::waitUntilConnected).
    EXPECT_LT(std::chrono::steady_clock::now() - start, 5 * 1s + 1s);
  });
}

// Operations nobody waits on still run after a long run of waited ones,
// when the backend holds each operation back longer for a waiting thread
// (backend.cpp, kSteadyGrace) and has disarmed its timer during the run
// (kDisarmMargin): dropped until a peer has finished, polled with
// is_completed(), or chained through get_future(). The run lasts over 40 ms,
// more than twice kSteadyGrace, so the timer is disarmed at least once.
void wait_on_a_streak(ProcessGroup& pg) {
  std::vector<Tensor> t = {Tensor::zeros({4}, DType::Float32)};
  for (int i = 0; i < 40; ++i) {
    pg.allreduce(t)->wait();
    std::this_thread::sleep_for(1ms);
  }
}

TEST(GlooProgress, AnOperationNobodyWaitsOnRunsAfterAStreakOfWaitedOnes) {
  run_ranks(2, [](const RankContext& ctx) {
    auto pg = make_gloo_group(ctx, 60s);
    FileStore side(ctx.store_path + ".side", 2);
    wait_on_a_streak(*pg);
    std::vector<Tensor> t = {make_input(DType::Float32, ReduceOp::SUM, ctx.rank, 1001)};
    auto work = pg->allreduce(t);
    if (ctx.rank == 0) {
      // Rank 1's allreduce can end only once a worker here has run ours.
      side.get("rank 1 done");
    } else {
      work->wait();
      side.set("rank 1 done", std::vector<uint8_t>{1});
    }
    work->wait();
    EXPECT_EQ(compare_reduced(t[0], ReduceOp::SUM, 2), "");
    finish(*pg);
  });
}

TEST(GlooProgress, PolledAndChainedOperationsComplete) {
  run_ranks(2, [](const RankContext& ctx) {
    auto pg = make_gloo_group(ctx, 60s);
    wait_on_a_streak(*pg);
    std::vector<Tensor> polled = {make_input(DType::Float32, ReduceOp::SUM, ctx.rank, 1001)};
    auto work = pg->allreduce(polled);
    const auto start = std::chrono::steady_clock::now();
    while (!work->is_completed() && std::chrono::steady_clock::now() - start < 30s) {
      std::this_thread::sleep_for(1ms);
    }
    ASSERT_TRUE(work->is_completed()) << "a polled allreduce did not run within 30 s";
    EXPECT_EQ(compare_reduced(polled[0], ReduceOp::SUM, 2), "");

    wait_on_a_streak(*pg);
    std::vector<Tensor> chained = {make_input(DType::Float32, ReduceOp::SUM, ctx.rank, 1001)};
    std::atomic<bool> called{false};
    pg->allreduce(chained)->get_future()->then([&](Future&) { called = true; });
    const auto chained_start = std::chrono::steady_clock::now();
    while (!called && std::chrono::steady_clock::now() - chained_start < 30s) {
      std::this_thread::sleep_for(1ms);
    }
    ASSERT_TRUE(called) << "a chained allreduce did not run within 30 s";
    EXPECT_EQ(compare_reduced(chained[0], ReduceOp::SUM, 2), "");
    finish(*pg);
  });
}

TEST(GlooFaults, StalledPeerTimesOutNamingTheOperation) {
  auto outcomes = run_ranks_collect(
      2,
      [](const RankContext& ctx) {
        auto pg = make_gloo_group(ctx, 2s);
        if (ctx.rank == 1) {
          std::this_thread::sleep_for(4s);  // never joins the allreduce
          return;
        }
        std::vector<Tensor> t = {Tensor::zeros({16}, DType::Float32)};
        const auto start = std::chrono::steady_clock::now();
        try {
          pg->allreduce(t)->wait();
          ADD_FAILURE() << "allreduce with a stalled peer returned";
        } catch (const TimeoutError& e) {
          const std::string what = e.what();
          EXPECT_NE(what.find("allreduce #1"), std::string::npos) << what;
          EXPECT_NE(what.find("rank 0/2"), std::string::npos) << what;
          EXPECT_NE(what.find("roll call: rank 1 did not answer"), std::string::npos) << what;
        }
        const auto elapsed = std::chrono::steady_clock::now() - start;
        EXPECT_GE(elapsed, 1900ms);
        // The roll call that names rank 1 waits up to its grace (1 s here).
        const auto bound = 2s + gloo_backend::Census::grace(2s);
        EXPECT_LE(elapsed, bound + 1s) << "the timeout is 2 s and the roll call's grace "
                                       << gloo_backend::Census::grace(2s).count()
                                       << " ms; the error must come within 1 s of both";
      },
      {.deadline = 60s, .kill_on_first_failure = false});
  for (const auto& o : outcomes) {
    EXPECT_EQ(o.kind, RankOutcome::Kind::Passed) << describe(o, 2);
  }
}

// On 3 ranks a small allreduce folds rank 0 into rank 1, so rank 0 waits on
// rank 1 only, and rank 1 on the stalled rank 2. Rank 1 starts first and
// times out first; gloo then closes all of rank 1's connections, and rank 0
// sees its connection to rank 1 close before its own deadline. That is the
// stall's doing, not a crash: rank 0 must raise TimeoutError too.
TEST(GlooFaults, StalledPeerTimesOutRanksThatWaitOnItsNeighbour) {
  auto outcomes = run_ranks_collect(
      3,
      [](const RankContext& ctx) {
        auto pg = make_gloo_group(ctx, 2s);
        pg->barrier()->wait();
        if (ctx.rank == 2) {
          std::this_thread::sleep_for(6s);  // never joins the allreduce
          return;
        }
        if (ctx.rank == 0) std::this_thread::sleep_for(500ms);
        std::vector<Tensor> t = {Tensor::zeros({16}, DType::Float32)};
        const auto start = std::chrono::steady_clock::now();
        try {
          pg->allreduce(t)->wait();
          ADD_FAILURE() << "allreduce with a stalled peer returned";
        } catch (const TimeoutError& e) {
          const std::string what = e.what();
          EXPECT_NE(what.find("allreduce #2 on group 'default' rank " + std::to_string(ctx.rank)),
                    std::string::npos)
              << what;
          EXPECT_NE(what.find("rank 2 did not answer"), std::string::npos) << what;
          if (ctx.rank == 0) {
            EXPECT_NE(what.find("rank 1 failed in allreduce #2 (timed out)"), std::string::npos)
                << what;
          }
        } catch (const std::exception& e) {
          ADD_FAILURE() << "expected TimeoutError, got " << e.what();
        }
        const auto elapsed = std::chrono::steady_clock::now() - start;
        EXPECT_LE(elapsed, 2s + gloo_backend::Census::grace(2s) + 1s);
      },
      {.deadline = 60s, .kill_on_first_failure = false});
  for (const auto& o : outcomes) {
    EXPECT_EQ(o.kind, RankOutcome::Kind::Passed) << describe(o, 3);
  }
}

// wait(limit) runs the operation on the waiting thread only when gloo's own
// deadline for it is no later; here it is later, so the wait must still
// return at its limit while the operation goes on, on a worker: rank 1's
// allreduce can only end if rank 0's did run.
TEST(GlooFaults, ATimedWaitShorterThanTheOperationKeepsItsLimit) {
  run_ranks(2, [](const RankContext& ctx) {
    auto pg = make_gloo_group(ctx, 30s);
    FileStore side(ctx.store_path + ".side", 2);
    std::vector<Tensor> t = {make_input(DType::Float32, ReduceOp::SUM, ctx.rank, 16)};
    if (ctx.rank == 1) {
      std::this_thread::sleep_for(3s);  // joins late
      pg->allreduce(t)->wait();
      EXPECT_EQ(compare_reduced(t[0], ReduceOp::SUM, 2), "");
      side.set("rank 1 done", std::vector<uint8_t>{1});
      return;
    }
    const auto start = std::chrono::steady_clock::now();
    auto work = pg->allreduce(t);
    EXPECT_THROW(work->wait(300ms), TimeoutError);
    const auto elapsed = std::chrono::steady_clock::now() - start;
    EXPECT_LT(elapsed, 1300ms);
    side.get("rank 1 done");
  });
}

// A rank killed while a message moves between it and its peer: gloo does
// not fail the transfer it is in the middle of (LinkWatch), so without the
// watch the survivor waited for the whole 60 s timeout. On 2 ranks the
// allgather sends each 64 MiB part as one message; the kill comes 10 ms in.
TEST(GlooFaults, APeerKilledInTheMiddleOfAMessageIsANetworkErrorWithinSeconds) {
  auto outcomes = run_ranks_collect(
      2,
      [](const RankContext& ctx) {
        auto pg = make_gloo_group(ctx, 60s);
        pg->barrier()->wait();
        auto input = Tensor::zeros({int64_t{16} << 20}, DType::Float32);
        auto output = Tensor::zeros({int64_t{32} << 20}, DType::Float32);
        auto work = pg->allgather_into_tensor(output, input);
        if (ctx.rank == 1) {
          std::thread([] {
            std::this_thread::sleep_for(10ms);
            ::kill(::getpid(), SIGKILL);
          }).detach();
        }
        const auto start = std::chrono::steady_clock::now();
        try {
          work->wait();
          if (ctx.rank == 0) {
            // The message may have made it before the kill: then the next
            // operation meets the dead peer.
            pg->allgather_into_tensor(output, input)->wait();
            ADD_FAILURE() << "allgather went on without rank 1";
          }
        } catch (const DistNetworkError& e) {
          EXPECT_NE(std::string(e.what()).find("allgather"), std::string::npos) << e.what();
        } catch (const TimeoutError& e) {
          ADD_FAILURE() << "a dead peer must not wait for the 60 s timeout: " << e.what();
        }
        EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
        if (ctx.rank == 1) std::this_thread::sleep_for(60s);  // killed before
      },
      {.deadline = 90s, .kill_on_first_failure = false, .echo_output = false});
  ASSERT_EQ(outcomes.size(), 2u);
  EXPECT_EQ(outcomes[1].kind, RankOutcome::Kind::Crashed) << describe(outcomes[1], 2);
  EXPECT_EQ(outcomes[0].kind, RankOutcome::Kind::Passed) << describe(outcomes[0], 2);
}

// The same for a send: rank 1 sends 256 MiB messages back to back to rank 0
// and dies 50 ms in, almost surely in the middle of one.
TEST(GlooFaults, ASenderKilledInTheMiddleOfAMessageIsANetworkErrorWithinSeconds) {
  auto outcomes = run_ranks_collect(
      2,
      [](const RankContext& ctx) {
        auto pg = make_gloo_group(ctx, 60s);
        pg->barrier()->wait();
        std::vector<Tensor> t = {Tensor::zeros({int64_t{64} << 20}, DType::Float32)};
        const auto start = std::chrono::steady_clock::now();
        if (ctx.rank == 1) {
          std::thread([] {
            std::this_thread::sleep_for(50ms);
            ::kill(::getpid(), SIGKILL);
          }).detach();
          for (;;) pg->send(t, 0, 5)->wait();
        }
        try {
          for (;;) pg->recv(t, 1, 5)->wait();
        } catch (const DistNetworkError& e) {
          EXPECT_NE(std::string(e.what()).find("recv"), std::string::npos) << e.what();
        } catch (const TimeoutError& e) {
          ADD_FAILURE() << "a dead peer must not wait for the 60 s timeout: " << e.what();
        }
        EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
      },
      {.deadline = 90s, .kill_on_first_failure = false, .echo_output = false});
  ASSERT_EQ(outcomes.size(), 2u);
  EXPECT_EQ(outcomes[1].kind, RankOutcome::Kind::Crashed) << describe(outcomes[1], 2);
  EXPECT_EQ(outcomes[0].kind, RankOutcome::Kind::Passed) << describe(outcomes[0], 2);
}

TEST(GlooFaults, KilledPeerIsANetworkErrorWithinSeconds) {
  auto outcomes = run_ranks_collect(
      3,
      [](const RankContext& ctx) {
        auto pg = make_gloo_group(ctx, 60s);
        pg->barrier()->wait();
        std::vector<Tensor> t = {Tensor::zeros({int64_t{8} << 20}, DType::Float32)};
        if (ctx.rank == 2) {
          std::thread([] {
            std::this_thread::sleep_for(20ms);
            ::kill(::getpid(), SIGKILL);
          }).detach();
        }
        const auto start = std::chrono::steady_clock::now();
        try {
          for (int i = 0; i < 1000; ++i) pg->allreduce(t)->wait();
          ADD_FAILURE() << "allreduce went on without rank 2";
        } catch (const DistNetworkError& e) {
          EXPECT_NE(std::string(e.what()).find("allreduce #"), std::string::npos) << e.what();
        } catch (const TimeoutError& e) {
          ADD_FAILURE() << "a dead peer must not wait for the 60 s timeout: " << e.what();
        }
        EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
      },
      {.deadline = 90s, .kill_on_first_failure = false, .echo_output = false});
  ASSERT_EQ(outcomes.size(), 3u);
  EXPECT_EQ(outcomes[2].kind, RankOutcome::Kind::Crashed) << describe(outcomes[2], 3);
  EXPECT_EQ(outcomes[2].signal, SIGKILL);
  EXPECT_EQ(outcomes[0].kind, RankOutcome::Kind::Passed) << describe(outcomes[0], 3);
  EXPECT_EQ(outcomes[1].kind, RankOutcome::Kind::Passed) << describe(outcomes[1], 3);
}

TEST(GlooFaults, AbortUnblocksAPendingRecv) {
  run_ranks(2, [](const RankContext& ctx) {
    auto pg = make_gloo_group(ctx, 60s);
    if (ctx.rank == 0) {
      std::vector<Tensor> t = {Tensor::zeros({4}, DType::Float32)};
      auto work = pg->recv(t, 1, 3);  // rank 1 never sends
      std::this_thread::sleep_for(100ms);
      EXPECT_FALSE(work->is_completed());
      const auto start = std::chrono::steady_clock::now();
      work->abort();
      EXPECT_THROW(work->wait(), DistBackendError);
      EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
      // The group still works afterwards.
      std::vector<Tensor> s = {Tensor::zeros({4}, DType::Float32)};
      pg->allreduce(s)->wait();
    } else {
      std::vector<Tensor> s = {Tensor::zeros({4}, DType::Float32)};
      pg->allreduce(s)->wait();
    }
    finish(*pg);
  });
}

TEST(GlooFaults, TimedWaitOnAPendingRecvThrowsTimeout) {
  run_ranks(2, [](const RankContext& ctx) {
    auto pg = make_gloo_group(ctx, 60s);
    if (ctx.rank == 1) {
      std::vector<Tensor> t = {Tensor::zeros({4}, DType::Float32)};
      auto work = pg->recv(t, 0, 5);
      EXPECT_THROW(work->wait(200ms), TimeoutError);
    }
    finish(*pg);
  });
}

TEST(GlooFaults, DestroyingAGroupWithWorkInFlightDoesNotHang) {
  run_ranks(2, [](const RankContext& ctx) {
    auto pg = make_gloo_group(ctx, 60s);
    finish(*pg);
    std::vector<Tensor> t = {Tensor::zeros({1 << 20}, DType::Float32)};
    std::shared_ptr<Work> pending;
    if (ctx.rank == 0) {
      std::vector<Tensor> r = {Tensor::zeros({4}, DType::Float32)};
      pending = pg->recv(r, 1, 11);  // never matched
    }
    const auto start = std::chrono::steady_clock::now();
    pg.reset();
    EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
    if (pending) {
      EXPECT_THROW(pending->wait(), Error);
    }
  });
}

// A send or recv posted after its peer has left fails its Work with a tutti
// error; gloo's own exception must not reach the caller.
TEST(GlooFaults, PostingToAPeerThatLeftFailsTheWork) {
  run_ranks(2, [](const RankContext& ctx) {
    auto pg = make_gloo_group(ctx, 60s);
    finish(*pg);
    auto store = pg->store();
    if (ctx.rank == 1) {
      pg.reset();
      store->set("left", std::string("1"));
      store->wait({"done"}, 30s);
      return;
    }
    store->wait({"left"}, 30s);
    std::this_thread::sleep_for(300ms);  // gloo sees the connection close
    for (int i = 0; i < 2; ++i) {
      std::vector<Tensor> t = {Tensor::zeros({4}, DType::Float32)};
      auto work = i == 0 ? pg->recv(t, 1, 5) : pg->send(t, 1, 5);
      EXPECT_THROW(work->wait(), DistNetworkError);
    }
    store->set("done", std::string("1"));
  });
}

TEST(GlooFaults, MonitoredBarrierNamesTheMissingRanks) {
  auto outcomes = run_ranks_collect(
      4,
      [](const RankContext& ctx) {
        auto pg = make_gloo_group(ctx, 60s);
        pg->barrier()->wait();
        if (ctx.rank == 1 || ctx.rank == 3) {
          std::this_thread::sleep_for(3s);  // miss the barrier
          return;
        }
        if (ctx.rank == 0) {
          try {
            pg->monitored_barrier({.timeout = 1s}, /*wait_all_ranks=*/true);
            ADD_FAILURE() << "monitored_barrier passed with ranks 1 and 3 missing";
          } catch (const DistBackendError& e) {
            EXPECT_NE(std::string(e.what()).find("ranks 1, 3 failed to pass"), std::string::npos)
                << e.what();
          }
        } else {
          EXPECT_THROW(pg->monitored_barrier({.timeout = 1s}, true), Error);
        }
      },
      {.deadline = 60s, .kill_on_first_failure = false});
  for (const auto& o : outcomes) EXPECT_EQ(o.kind, RankOutcome::Kind::Passed) << describe(o, 4);
}

}  // namespace
}  // namespace tutti::testing
