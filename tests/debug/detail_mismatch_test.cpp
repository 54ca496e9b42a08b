// TUTTI_DEBUG=DETAIL finds the bug: for every kind of disagreement between
// ranks, every rank involved raises DesyncError within its deadline, and the
// message names the ranks and each field that differs with both values.
#include <gtest/gtest.h>

#include <functional>
#include <thread>

#include "collectives/reference.hpp"
#include "harness/groups.hpp"
#include "harness/multiproc.hpp"
#include "tutti/debug.hpp"
#include "tutti/errors.hpp"
#include "tutti/process_group.hpp"
#include "tutti/tcp_store.hpp"

namespace tutti::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

std::shared_ptr<ProcessGroup> make_detail_group(const RankContext& ctx,
                                                std::chrono::milliseconds timeout) {
  set_debug_level(DebugLevel::DETAIL);
  return make_gloo_group(ctx, timeout);
}

Tensor filled(std::vector<int64_t> sizes, DType dtype, double value) {
  Tensor t = Tensor::zeros(std::move(sizes), dtype);
  if (dtype == DType::Float32) {
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = static_cast<float>(value);
  }
  return t;
}

// Runs `act` (which issues the operations and waits for them) on `world`
// ranks of a DETAIL group with `timeout`, and expects it to raise
// DesyncError on every rank listed by `raising` within timeout + 1 s, with
// every fragment of expected(rank) in the message. Ranks not in `raising`
// run act and must not throw. `linger` keeps every rank alive afterwards,
// so that no rank's exit turns a peer's error into a lost connection.
struct Case {
  int world = 2;
  std::chrono::milliseconds timeout = 5s;
  std::function<void(ProcessGroup&, int rank)> act;
  std::function<std::vector<std::string>(int rank)> expected;
  std::function<bool(int rank)> raising = [](int) { return true; };
  // How long a rank is busy elsewhere before it calls act; its deadline
  // counts from then.
  std::function<std::chrono::milliseconds(int rank)> busy = [](int) { return 0ms; };
  std::chrono::milliseconds linger = 0ms;
};

void expect_desync(const Case& c) {
  auto outcomes = run_ranks_collect(
      c.world,
      [&c](const RankContext& ctx) {
        auto pg = make_detail_group(ctx, c.timeout);
        pg->barrier()->wait();
        std::this_thread::sleep_for(c.busy(ctx.rank));
        const auto start = Clock::now();
        if (!c.raising(ctx.rank)) {
          c.act(*pg, ctx.rank);
          std::this_thread::sleep_for(c.linger);
          return;
        }
        try {
          c.act(*pg, ctx.rank);
          ADD_FAILURE() << "rank " << ctx.rank << " did not raise";
        } catch (const DesyncError& e) {
          const std::string what = e.what();
          for (const auto& fragment : c.expected(ctx.rank)) {
            EXPECT_NE(what.find(fragment), std::string::npos)
                << "rank " << ctx.rank << ": message lacks '" << fragment << "':\n"
                << what;
          }
          std::fprintf(stderr, "rank %d raised: %s\n", ctx.rank, e.what());
        }
        EXPECT_LE(Clock::now() - start, c.timeout + 1s)
            << "rank " << ctx.rank << " raised after its deadline";
        std::this_thread::sleep_for(c.linger);
      },
      {.deadline = 60s, .kill_on_first_failure = false});
  for (const auto& o : outcomes) {
    EXPECT_EQ(o.kind, RankOutcome::Kind::Passed) << describe(o, c.world);
  }
}

TEST(DetailMismatch, DifferentOpsNameBothCallsAndTheGroupStaysUsable) {
  run_ranks(4, [](const RankContext& ctx) {
    auto pg = make_detail_group(ctx, 10s);
    std::vector<Tensor> t = {filled({4}, DType::Float32, 1)};
    try {
      if (ctx.rank == 3) {
        pg->broadcast(t, {.root_rank = 0})->wait();
      } else {
        pg->allreduce(t)->wait();
      }
      ADD_FAILURE() << "no error on rank " << ctx.rank;
    } catch (const DesyncError& e) {
      const std::string what = e.what();
      for (const char* fragment :
           {"ranks 0, 1, 2 call allreduce(tensors=float32[4], reduce_op=sum) as #1",
            "but rank 3 calls broadcast(tensors=float32[4], root_rank=0, root_tensor=0) as #1",
            "op (allreduce vs broadcast)", "reduce_op (sum vs absent)", "root_rank (absent vs 0)",
            "group 'default'"}) {
        EXPECT_NE(what.find(fragment), std::string::npos) << "lacks '" << fragment << "': " << what;
      }
      EXPECT_NE(what.find("rank " + std::to_string(ctx.rank) + "/4"), std::string::npos) << what;
      std::fprintf(stderr, "rank %d raised: %s\n", ctx.rank, e.what());
    }
    // Nothing reached the backend, so the group is still in step.
    std::vector<Tensor> ok = {filled({4}, DType::Float32, ctx.rank + 1)};
    pg->allreduce(ok)->wait();
    for (int i = 0; i < 4; ++i) EXPECT_EQ(ok[0].data<float>()[i], 10.0f);
    pg->barrier()->wait();
  });
}

TEST(DetailMismatch, SizesDifferOnOneRank) {
  expect_desync({.world = 3,
                 .act =
                     [](ProcessGroup& pg, int rank) {
                       std::vector<Tensor> t = {filled({rank == 1 ? 5 : 4}, DType::Float32, 1)};
                       pg.allreduce(t)->wait();
                     },
                 .expected = [](int) -> std::vector<std::string> {
                   return {"ranks 0, 2 call allreduce(tensors=float32[4], reduce_op=sum) as #2",
                           "but rank 1 calls allreduce(tensors=float32[5], reduce_op=sum) as #2",
                           "tensors (float32[4] vs float32[5])"};
                 }});
}

TEST(DetailMismatch, DtypesDiffer) {
  expect_desync({.world = 4,
                 .act =
                     [](ProcessGroup& pg, int rank) {
                       std::vector<Tensor> t = {
                           Tensor::zeros({2, 3}, rank == 2 ? DType::Int32 : DType::Float32)};
                       pg.allreduce(t)->wait();
                     },
                 .expected = [](int) -> std::vector<std::string> {
                   return {"ranks 0, 1, 3 call", "but rank 2 calls",
                           "tensors (float32[2, 3] vs int32[2, 3])"};
                 }});
}

TEST(DetailMismatch, BroadcastRootsDiffer) {
  expect_desync({.world = 2,
                 .act =
                     [](ProcessGroup& pg, int rank) {
                       std::vector<Tensor> t = {Tensor::zeros({8}, DType::Int64)};
                       pg.broadcast(t, {.root_rank = rank})->wait();
                     },
                 .expected = [](int) -> std::vector<std::string> {
                   return {"rank 0 calls broadcast(tensors=int64[8], root_rank=0, root_tensor=0)",
                           "but rank 1 calls broadcast(tensors=int64[8], root_rank=1",
                           "root_rank (0 vs 1)"};
                 }});
}

TEST(DetailMismatch, ReduceOpsDiffer) {
  expect_desync({.world = 3,
                 .act =
                     [](ProcessGroup& pg, int rank) {
                       std::vector<Tensor> t = {Tensor::zeros({4}, DType::Float32)};
                       ReduceOp op =
                           rank == 0 ? ReduceOp(ReduceOp::SUM) : ReduceOp::premul_sum(0.5 * rank);
                       pg.reduce(t, {.reduce_op = op, .root_rank = 1})->wait();
                     },
                 .expected = [](int) -> std::vector<std::string> {
                   // The factors differ too (0.5 vs 1.0), which is allowed.
                   return {"rank 0 calls reduce(", "but ranks 1, 2 call reduce(",
                           "reduce_op (sum vs premul_sum (with a factor))"};
                 }});
}

TEST(DetailMismatch, AlltoallSplitSizesDisagreeBetweenSenderAndReceiver) {
  expect_desync(
      {.world = 2,
       .act =
           [](ProcessGroup& pg, int rank) {
             // Rank 0 sends 2 rows to rank 1, which expects 1.
             Tensor input = Tensor::zeros({rank == 0 ? 3 : 2, 3}, DType::Float32);
             Tensor output = Tensor::zeros({2, 3}, DType::Float32);
             std::vector<int64_t> in_splits =
                 rank == 0 ? std::vector<int64_t>{1, 2} : std::vector<int64_t>{1, 1};
             pg.alltoall_base(output, input, {1, 1}, in_splits)->wait();
           },
       .expected = [](int) -> std::vector<std::string> {
         return {"alltoall_base #2 disagrees between senders and receivers",
                 "rank 0 sends 2 rows of float32[*, 3] to rank 1 (input_split_sizes[1]) but rank "
                 "1 expects 1 from rank 0 (output_split_sizes[0])"};
       }});
}

TEST(DetailMismatch, AlltoallListsDisagree) {
  expect_desync({.world = 2,
                 .act =
                     [](ProcessGroup& pg, int rank) {
                       // Rank 1 sends 4 elements to rank 0, which expects 2.
                       std::vector<Tensor> in = {Tensor::zeros({rank == 1 ? 4 : 2}, DType::Int32),
                                                 Tensor::zeros({2}, DType::Int32)};
                       std::vector<Tensor> out = {Tensor::zeros({2}, DType::Int32),
                                                  Tensor::zeros({2}, DType::Int32)};
                       pg.alltoall(out, in)->wait();
                     },
                 .expected = [](int) -> std::vector<std::string> {
                   return {"alltoall #2 disagrees between senders and receivers",
                           "rank 1 sends 4 elements to rank 0 (inputs[0]) but rank 0 expects 2 "
                           "from rank 1 (outputs[1])"};
                 }});
}

// A rank that never reaches a collective is named by the others; it raises
// itself when it next calls one, at its own timeout.
TEST(DetailMismatch, ARankThatSkipsACollectiveIsNamed) {
  for (int skipper : {2, 0}) {
    SCOPED_TRACE("rank " + std::to_string(skipper) + " skips");
    expect_desync(
        {.world = 3,
         .timeout = 2s,
         .act =
             [skipper](ProcessGroup& pg, int rank) {
               std::vector<Tensor> t = {Tensor::zeros({4}, DType::Float32)};
               if (rank == skipper) {
                 pg.barrier()->wait();  // skipped the allreduce
               } else {
                 pg.allreduce(t)->wait();
               }
             },
         .expected = [skipper](int rank) -> std::vector<std::string> {
           // When it arrives, the others' calls wait for it in the store.
           if (rank == skipper && skipper == 0) {
             return {
                 "barrier #2 on group 'default' rank 0/3",
                 "rank 0 calls barrier() as #2 but ranks 1, 2 call allreduce(tensors=float32[4], "
                 "reduce_op=sum) as #2",
                 "op (barrier vs allreduce)"};
           }
           if (rank == skipper) {
             return {
                 "barrier #2 on group 'default' rank 2/3",
                 "ranks 0, 1 call allreduce(tensors=float32[4], reduce_op=sum) as #2 but rank 2 "
                 "calls barrier() as #2"};
           }
           if (skipper == 0) {
             return {"rank 0 did not reach collective #2 within 2000 ms while ranks 1, 2 did",
                     "ranks 1, 2 called allreduce(tensors=float32[4], reduce_op=sum)"};
           }
           return {"rank 2 did not reach collective #2 within 2000 ms while ranks 0, 1 did",
                   "ranks 0, 1 called allreduce(tensors=float32[4], reduce_op=sum)"};
         },
         .busy = [skipper](int rank) { return rank == skipper ? 2500ms : 0ms; },
         .linger = 3500ms});
  }
}

TEST(DetailMismatch, ASendWithoutAMatchingRecvNamesThePeerAndTheTensor) {
  expect_desync(
      {.world = 2,
       .timeout = 2s,
       .act =
           [](ProcessGroup& pg, int rank) {
             std::vector<Tensor> t = {Tensor::zeros({4}, DType::Float32)};
             if (rank == 0) {
               pg.send(t, 1, 7)->wait();
             } else {
               pg.recv(t, 0, 8)->wait();  // the wrong tag
             }
           },
       .expected = [](int rank) -> std::vector<std::string> {
         if (rank == 0) {
           return {"send of float32[4] to rank 1 with tag 7", "rank 1 posted no recv from rank 0"};
         }
         return {"recv of float32[4] from rank 0 with tag 8",
                 "no send from rank 0 with tag 8 arrived within 2000 ms"};
       },
       .linger = 500ms});
}

TEST(DetailMismatch, SendAndRecvSizesDiffer) {
  expect_desync({.world = 2,
                 .act =
                     [](ProcessGroup& pg, int rank) {
                       std::vector<Tensor> t = {Tensor::zeros({rank == 0 ? 4 : 6}, DType::Float32)};
                       if (rank == 0) {
                         pg.send(t, 1, 3)->wait();
                       } else {
                         pg.recv(t, 0, 3)->wait();
                       }
                     },
                 .expected = [](int) -> std::vector<std::string> {
                   return {
                       "the send of float32[4] from rank 0 to rank 1 with tag 3 met a recv of "
                       "float32[6] on rank 1",
                       "size (4 vs 6 elements)"};
                 },
                 .linger = 500ms});
}

TEST(DetailMismatch, SendAndRecvAnysourceDtypesDiffer) {
  expect_desync({.world = 3,
                 .act =
                     [](ProcessGroup& pg, int rank) {
                       if (rank == 2) {
                         std::vector<Tensor> t = {Tensor::zeros({5}, DType::Int64)};
                         pg.send(t, 0, 9)->wait();
                       } else if (rank == 0) {
                         std::vector<Tensor> t = {Tensor::zeros({5}, DType::Float64)};
                         pg.recv_anysource(t, 9)->wait();
                       }
                     },
                 .expected = [](int) -> std::vector<std::string> {
                   return {
                       "the send of int64[5] from rank 2 to rank 0 with tag 9 met a "
                       "recv_anysource of float64[5] on rank 0",
                       "dtype (int64 vs float64)"};
                 },
                 .raising = [](int rank) { return rank != 1; },
                 .linger = 500ms});
}

// Matching pairs go through, in order, with the data of the matching send,
// while a mismatched pair on another tag fails on its own.
TEST(DetailPointToPoint, MatchedPairsDeliverInOrderBesideAMismatch) {
  run_ranks(2, [](const RankContext& ctx) {
    auto pg = make_detail_group(ctx, 10s);
    constexpr int kMessages = 20;
    // Even messages on tag 4 to recv(0), odd ones on tag 6 to recv_anysource.
    auto tag_of = [](int i) { return i % 2 ? 6 : 4; };
    if (ctx.rank == 0) {
      std::vector<std::shared_ptr<Work>> works;
      std::vector<std::vector<Tensor>> keep;
      for (int i = 0; i < kMessages; ++i) {
        keep.push_back({filled({16}, DType::Float32, i)});
        works.push_back(pg->send(keep.back(), 1, tag_of(i)));
      }
      std::vector<Tensor> bad = {Tensor::zeros({3}, DType::Float32)};
      EXPECT_THROW(pg->send(bad, 1, 5)->wait(), DesyncError);
      for (auto& w : works) w->wait();
    } else {
      std::vector<std::vector<Tensor>> in;
      std::vector<std::shared_ptr<Work>> works;
      for (int i = 0; i < kMessages; ++i) {
        in.push_back({Tensor::zeros({16}, DType::Float32)});
        works.push_back(i % 2 ? pg->recv_anysource(in.back(), tag_of(i))
                              : pg->recv(in.back(), 0, tag_of(i)));
      }
      std::vector<Tensor> bad = {Tensor::zeros({2}, DType::Float32)};
      EXPECT_THROW(pg->recv(bad, 0, 5)->wait(), DesyncError);
      for (int i = 0; i < kMessages; ++i) {
        works[static_cast<size_t>(i)]->wait();
        EXPECT_EQ(works[static_cast<size_t>(i)]->source_rank(), 0);
        for (int k = 0; k < 16; ++k) {
          ASSERT_EQ(in[static_cast<size_t>(i)][0].data<float>()[k], static_cast<float>(i))
              << "message " << i;
        }
      }
    }
    pg->barrier()->wait();
  });
}

TEST(DetailSubgroups, AMismatchInASubgroupIsFoundThere) {
  run_ranks(4, [](const RankContext& ctx) {
    auto pg = make_detail_group(ctx, 10s);
    auto sub = pg->new_group({1, 2, 3});
    if (sub) {
      std::vector<Tensor> t = {Tensor::zeros({ctx.rank == 3 ? 2 : 3}, DType::Float32)};
      try {
        sub->allreduce(t)->wait();
        ADD_FAILURE() << "no error on rank " << ctx.rank;
      } catch (const DesyncError& e) {
        const std::string what = e.what();
        EXPECT_NE(what.find("group 'default/1'"), std::string::npos) << what;
        // Ranks of the subgroup: world ranks 1, 2 are its ranks 0, 1.
        EXPECT_NE(what.find("ranks 0, 1 call allreduce(tensors=float32[3]"), std::string::npos)
            << what;
        EXPECT_NE(what.find("but rank 2 calls allreduce(tensors=float32[2]"), std::string::npos)
            << what;
      }
    }
    pg->barrier()->wait();
  });
}

}  // namespace
}  // namespace tutti::testing
