#include "tutti/work.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace tutti {
namespace {

using namespace std::chrono_literals;

// A Work completed by the test, standing in for a backend's engine.
class ManualWork : public Work {
 public:
  explicit ManualWork(std::vector<Tensor> outputs = {})
      : Work(OpType::ALLREDUCE, "allreduce #7 on group 'default' rank 0/2", std::move(outputs)) {}
  bool succeed() { return finish(); }
  bool fail(const std::string& message) {
    return finish(std::make_exception_ptr(DistNetworkError(message)));
  }
  void from(int rank) { set_source_rank(rank); }
  std::atomic<int> cancels{0};

 protected:
  void cancel() override { ++cancels; }
};

TEST(Work, SucceedsOnceAndKeepsOutputs) {
  Tensor out = Tensor::zeros({2}, DType::Float32);
  ManualWork work({out});
  EXPECT_FALSE(work.is_completed());
  EXPECT_FALSE(work.is_success());
  work.from(3);
  EXPECT_TRUE(work.succeed());
  EXPECT_FALSE(work.fail("late"));  // a second completion changes nothing
  EXPECT_TRUE(work.is_completed());
  EXPECT_TRUE(work.is_success());
  EXPECT_EQ(work.exception(), nullptr);
  EXPECT_TRUE(work.wait());
  EXPECT_EQ(work.source_rank(), 3);
  ASSERT_EQ(work.result().size(), 1u);
  EXPECT_TRUE(work.result()[0].shares_storage(out));
}

TEST(Work, WaitRethrowsTheOperationsError) {
  ManualWork work;
  work.fail("rank 1 closed the connection");
  EXPECT_FALSE(work.is_success());
  EXPECT_NE(work.exception(), nullptr);
  try {
    work.wait();
    FAIL() << "wait() should rethrow";
  } catch (const DistNetworkError& e) {
    EXPECT_STREQ(e.what(), "rank 1 closed the connection");
  }
  EXPECT_THROW(work.get_future()->wait(), DistNetworkError);
}

TEST(Work, WaitBlocksUntilAnotherThreadCompletes) {
  ManualWork work;
  std::thread engine([&] {
    std::this_thread::sleep_for(20ms);
    work.succeed();
  });
  EXPECT_TRUE(work.wait());
  EXPECT_TRUE(work.is_success());
  engine.join();
}

TEST(Work, TimedWaitThrowsTimeoutNamingTheOperationAndAborts) {
  ManualWork work;
  auto start = std::chrono::steady_clock::now();
  try {
    work.wait(50ms);
    FAIL() << "expected TimeoutError";
  } catch (const TimeoutError& e) {
    EXPECT_NE(std::string(e.what()).find("allreduce #7 on group 'default' rank 0/2"),
              std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("50 ms"), std::string::npos) << e.what();
  }
  EXPECT_GE(std::chrono::steady_clock::now() - start, 50ms);
  EXPECT_EQ(work.cancels.load(), 1);
  EXPECT_TRUE(work.is_completed());
  EXPECT_FALSE(work.succeed());  // the engine finishing later changes nothing
  EXPECT_THROW(work.wait(), TimeoutError);
}

// A Work made with a shared `where` formats its description on first use;
// threads asking at once all get the one string, and errors name it.
class LazyWork : public Work {
 public:
  LazyWork(uint64_t sequence, std::shared_ptr<const std::string> where)
      : Work(OpType::ALLGATHER, sequence, std::move(where)) {}
};

TEST(Work, LazyDescriptionIsFormattedOnceFromTheSharedWhere) {
  auto where = std::make_shared<const std::string>("group 'g' rank 1/3 (mpi)");
  LazyWork work(42, where);
  LazyWork other(43, where);
  std::vector<const std::string*> seen(4, nullptr);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < seen.size(); ++i) {
    threads.emplace_back([&, i] { seen[i] = &work.description(); });
  }
  for (auto& t : threads) t.join();
  for (const std::string* s : seen) EXPECT_EQ(s, seen[0]);
  EXPECT_EQ(*seen[0], "allgather #42 on group 'g' rank 1/3 (mpi)");
  EXPECT_EQ(other.description(), "allgather #43 on group 'g' rank 1/3 (mpi)");
  try {
    work.wait(10ms);
    FAIL() << "expected TimeoutError";
  } catch (const TimeoutError& e) {
    EXPECT_NE(std::string(e.what()).find("allgather #42 on group 'g' rank 1/3 (mpi)"),
              std::string::npos)
        << e.what();
  }
}

TEST(Work, TimedWaitReturnsWhenCompletedInTime) {
  ManualWork work;
  std::thread engine([&] { work.succeed(); });
  EXPECT_TRUE(work.wait(10s));
  engine.join();
  EXPECT_EQ(work.cancels.load(), 0);
}

// A Work whose engine runs the operation on the waiting thread.
class SelfRunningWork : public Work {
 public:
  SelfRunningWork() : Work(OpType::ALLREDUCE, "allreduce #1 on test") {}
  int helped = 0;

 protected:
  // Runs only for waits without a limit of their own, as an engine that
  // cannot bound the operation would.
  void help_on_wait(std::chrono::milliseconds limit) override {
    if (limit > kNoTimeout) return;
    ++helped;
    finish();
  }
};

TEST(Work, WaitWithoutTimeoutLetsTheEngineRunTheOperationOnItsThread) {
  SelfRunningWork work;
  EXPECT_TRUE(work.wait());  // nobody else completes it
  EXPECT_EQ(work.helped, 1);
  EXPECT_TRUE(work.is_success());
  work.wait();  // already done: not run again
  EXPECT_EQ(work.helped, 1);
}

TEST(Work, WaitWithATimeoutLetsTheEngineDecide) {
  // The caller's own limit must be honoured: an engine that cannot bound the
  // operation keeps the work.
  SelfRunningWork work;
  EXPECT_THROW(work.wait(std::chrono::milliseconds(20)), TimeoutError);
  EXPECT_EQ(work.helped, 0);
}

TEST(Work, AbortCancelsAPendingOperation) {
  ManualWork work;
  std::thread waiter([&] { EXPECT_THROW(work.wait(), DistBackendError); });
  std::this_thread::sleep_for(10ms);
  work.abort();
  waiter.join();
  EXPECT_EQ(work.cancels.load(), 1);
  try {
    work.wait();
  } catch (const DistBackendError& e) {
    EXPECT_NE(std::string(e.what()).find("aborted"), std::string::npos);
  }
}

TEST(Work, AbortAfterCompletionHasNoEffect) {
  ManualWork work;
  work.succeed();
  work.abort();
  EXPECT_TRUE(work.is_success());
  EXPECT_EQ(work.cancels.load(), 0);
}

TEST(Future, ThenRunsOnCompletionOrAtOnce) {
  ManualWork work({Tensor::zeros({1}, DType::Int32)});
  auto future = work.get_future();
  EXPECT_EQ(future, work.get_future());
  std::atomic<int> runs{0};
  auto chained = future->then([&](Future& f) {
    EXPECT_TRUE(f.completed());
    ++runs;
  });
  EXPECT_EQ(runs.load(), 0);
  work.succeed();
  EXPECT_EQ(runs.load(), 1);
  EXPECT_TRUE(chained->completed());
  EXPECT_EQ(chained->value().size(), 1u);
  // Already complete: runs at once, on this thread.
  auto id = std::this_thread::get_id();
  future->then([&](Future&) {
    EXPECT_EQ(std::this_thread::get_id(), id);
    ++runs;
  });
  EXPECT_EQ(runs.load(), 2);
}

TEST(Future, FutureOfACompletedWorkIsCompleted) {
  ManualWork work({Tensor::zeros({3}, DType::Int8)});
  work.succeed();
  auto future = work.get_future();
  EXPECT_TRUE(future->completed());
  EXPECT_EQ(future->value()[0].numel(), 3);
}

TEST(Future, CallbackErrorsAndParentErrorsReachTheChainedFuture) {
  Future parent;
  auto throwing = parent.then([](Future&) { throw InvalidArgument("callback failed"); });
  auto passing = parent.then([](Future&) {});
  parent.set_error(std::make_exception_ptr(TimeoutError("parent failed")));
  EXPECT_THROW(throwing->wait(), InvalidArgument);
  EXPECT_THROW(passing->wait(), TimeoutError);
  EXPECT_TRUE(passing->has_error());
  EXPECT_FALSE(parent.mark_completed({}));
  EXPECT_TRUE(parent.wait_for(0ms));
}

TEST(Future, WaitForTimesOutWithoutThrowing) {
  Future f;
  EXPECT_FALSE(f.wait_for(10ms));
  f.mark_completed({});
  EXPECT_TRUE(f.wait_for(0ms));
}

// Many threads race to complete, wait on and chain one Work: exactly one
// completion wins, every waiter wakes, every callback runs exactly once.
TEST(Work, ThreadSafeUnderContention) {
  for (int round = 0; round < 50; ++round) {
    ManualWork work;
    constexpr int kThreads = 8;
    std::atomic<int> wins{0}, callbacks{0}, woken{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i) {
      threads.emplace_back([&, i] {
        while (!go.load()) std::this_thread::yield();
        switch (i % 4) {
          case 0:
            if (i % 8 == 0 ? work.succeed() : work.fail("lost")) ++wins;
            break;
          case 1:
            work.get_future()->then([&](Future&) { ++callbacks; });
            break;
          case 2:
            try {
              work.wait();
            } catch (const Error&) {
            }
            ++woken;
            break;
          case 3:
            work.abort();
            break;
        }
      });
    }
    go = true;
    for (auto& t : threads) t.join();
    // The aborts may have won instead of case 0; together exactly one wins.
    EXPECT_TRUE(work.is_completed());
    EXPECT_LE(wins.load(), 1);
    EXPECT_EQ(callbacks.load(), kThreads / 4);
    EXPECT_EQ(woken.load(), kThreads / 4);
    EXPECT_FALSE(work.succeed());
  }
}

TEST(OpType, Names) {
  EXPECT_STREQ(to_string(OpType::ALLREDUCE), "allreduce");
  EXPECT_STREQ(to_string(OpType::RECV_ANYSOURCE), "recv_anysource");
  EXPECT_STREQ(to_string(OpType::REDUCE_SCATTER_TENSOR_COALESCED),
               "reduce_scatter_tensor_coalesced");
  EXPECT_TRUE(is_point_to_point(OpType::SEND));
  EXPECT_FALSE(is_point_to_point(OpType::BARRIER));
}

}  // namespace
}  // namespace tutti
