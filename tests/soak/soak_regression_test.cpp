// What the soak (tests/soak/soak.cpp) found, each pinned by a test that
// failed before its fix.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "backends/gloo/waiter_pool.hpp"
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

// The soak's thread count grew with every new peak of concurrent
// point-to-point transfers: the waiter pool kept every thread it ever made.
TEST(SoakFound, WaiterPoolThreadsLeaveAfterABurst) {
  gloo_backend::WaiterPool pool(50ms);
  constexpr int kBurst = 8;
  std::mutex mutex;
  std::condition_variable cv;
  int started = 0;
  bool release = false;
  for (int i = 0; i < kBurst; ++i) {
    pool.run([&] {
      std::unique_lock<std::mutex> lock(mutex);
      ++started;
      cv.notify_all();
      cv.wait(lock, [&] { return release; });
    });
  }
  {
    std::unique_lock<std::mutex> lock(mutex);
    ASSERT_TRUE(cv.wait_for(lock, 10s, [&] { return started == kBurst; }));
    EXPECT_EQ(pool.threads(), static_cast<size_t>(kBurst));
    release = true;
    cv.notify_all();
  }
  const auto give_up = std::chrono::steady_clock::now() + 10s;
  while (pool.threads() > gloo_backend::WaiterPool::kKeptIdle &&
         std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(pool.threads(), gloo_backend::WaiterPool::kKeptIdle);
  // The pool still runs work, on a kept thread or a new one.
  std::atomic<bool> ran{false};
  pool.run([&] { ran = true; });
  while (!ran && std::chrono::steady_clock::now() < give_up) std::this_thread::sleep_for(1ms);
  EXPECT_TRUE(ran);
}

}  // namespace
}  // namespace tutti::testing
