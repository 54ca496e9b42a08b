// The MPI backend under a real mpirun: every rank runs this program, and
// every test runs on every rank in the same order (no shuffling). ctest
// starts it on 1 to 4 ranks (tests/CMakeLists.txt).
//
// The shared collective suite runs on the world group and on subgroups made
// by new_group; then the errors a user meets: unsupported operations, bad
// input, a rank that skips a collective, a receive nobody sends to.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <thread>

#include "backends/mpi/backend.hpp"
#include "collectives/reference.hpp"
#include "collectives/suite.hpp"
#include "tutti/errors.hpp"
#include "tutti/init.hpp"
#include "tutti/process_group.hpp"

namespace tutti::testing {
namespace {

using namespace std::chrono_literals;

std::shared_ptr<ProcessGroup> g_world;

// The world group, made the way users make it under mpirun: no variables.
class WorldEnvironment : public ::testing::Environment {
 public:
  void SetUp() override { g_world = init_process_group({.backend = "mpi", .timeout = 120s}); }
  void TearDown() override { g_world.reset(); }
};

ProcessGroup& world() { return *g_world; }

TEST(MpiInit, RankAndSizeComeFromMpi) {
  const char* rank = std::getenv("OMPI_COMM_WORLD_RANK");
  const char* size = std::getenv("OMPI_COMM_WORLD_SIZE");
  ASSERT_NE(rank, nullptr) << "run under Open MPI's mpirun";
  ASSERT_NE(size, nullptr);
  EXPECT_EQ(world().rank(), std::atoi(rank));
  EXPECT_EQ(world().size(), std::atoi(size));
  EXPECT_EQ(world().backend_name(), "mpi");
  EXPECT_EQ(resolve_auto_backend(), "mpi") << "under mpirun, auto means MPI";
  // The bootstrap store is shared by every rank.
  ASSERT_NE(world().store(), nullptr);
  world().store()->add("mpi_init_arrivals", 1);
  world().barrier()->wait();
  EXPECT_EQ(world().store()->add("mpi_init_arrivals", 0), world().size());
  world().barrier()->wait();
}

// The suite runs in both modes (tests/CMakeLists.txt): the mode must be the
// one the environment asks for, or the inline runs would test nothing new.
TEST(MpiInit, InlineModeFollowsTheEnvironment) {
  const char* env = std::getenv("TUTTI_MPI_INLINE");
  // Used only when every rank asks for it (tests/CMakeLists.txt also runs
  // a job where one rank does not).
  std::vector<Tensor> asks = {Tensor::zeros({1}, DType::Int32)};
  asks[0].data<int32_t>()[0] = env != nullptr && std::string(env) == "1" ? 1 : 0;
  world().allreduce(asks, {.reduce_op = ReduceOp::MIN})->wait();
  const bool wanted = asks[0].data<int32_t>()[0] == 1;
  auto backend =
      std::dynamic_pointer_cast<mpi_backend::MpiBackend>(world().get_backend(DeviceType::CPU));
  ASSERT_NE(backend, nullptr);
  EXPECT_EQ(backend->inline_mode(), wanted);
  // Subgroups agree with their parent.
  std::vector<int> all(static_cast<size_t>(world().size()));
  for (int r = 0; r < world().size(); ++r) all[static_cast<size_t>(r)] = r;
  auto sub = world().new_group(all);
  ASSERT_NE(sub, nullptr);
  auto sub_backend =
      std::dynamic_pointer_cast<mpi_backend::MpiBackend>(sub->get_backend(DeviceType::CPU));
  ASSERT_NE(sub_backend, nullptr);
  EXPECT_EQ(sub_backend->inline_mode(), wanted);
}

TEST(MpiSuite, Broadcast) { check_broadcast(world()); }
TEST(MpiSuite, Allreduce) { check_allreduce(world()); }
TEST(MpiSuite, AllreduceCoalesced) { check_allreduce_coalesced(world()); }
TEST(MpiSuite, Reduce) { check_reduce(world()); }
TEST(MpiSuite, Allgather) { check_allgather(world()); }
TEST(MpiSuite, GatherScatter) { check_gather_scatter(world()); }
TEST(MpiSuite, ReduceScatter) { check_reduce_scatter(world()); }
TEST(MpiSuite, Alltoall) { check_alltoall(world()); }
TEST(MpiSuite, PointToPoint) { check_point_to_point(world()); }
TEST(MpiSuite, Barrier) { check_barrier(world()); }

TEST(MpiGroups, SubgroupsRunTheSuiteAndNonMembersGetNull) {
  const int n = world().size();
  // Every other rank, and all ranks in reverse order.
  std::vector<int> evens, reversed;
  for (int r = 0; r < n; r += 2) evens.push_back(r);
  for (int r = n - 1; r >= 0; --r) reversed.push_back(r);
  auto even_group = world().new_group(evens);
  auto reversed_group = world().new_group(reversed);
  if (world().rank() % 2 == 0) {
    ASSERT_NE(even_group, nullptr);
    EXPECT_EQ(even_group->rank(), world().rank() / 2);
    EXPECT_EQ(even_group->size(), static_cast<int>(evens.size()));
    check_allreduce(*even_group);
    check_alltoall(*even_group);
  } else {
    EXPECT_EQ(even_group, nullptr);
  }
  ASSERT_NE(reversed_group, nullptr);
  EXPECT_EQ(reversed_group->rank(), n - 1 - world().rank());
  check_broadcast(*reversed_group);
  check_point_to_point(*reversed_group);
  // A subgroup of a subgroup.
  auto nested = reversed_group->new_group({0});
  if (reversed_group->rank() == 0) {
    ASSERT_NE(nested, nullptr);
    check_allreduce(*nested);
  } else {
    EXPECT_EQ(nested, nullptr);
  }
  world().barrier()->wait();
}

TEST(MpiErrors, UnsupportedOperationNamesTheBackendThatHasIt) {
  std::vector<SparseTensor> sparse = {
      SparseTensor(Tensor::zeros({1, 1}, DType::Int64), Tensor::zeros({1}, DType::Float32), {4})};
  try {
    world().allreduce_sparse(sparse);
    FAIL() << "allreduce_sparse on MPI returned";
  } catch (const InvalidArgument& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("allreduce_sparse"), std::string::npos) << what;
    EXPECT_NE(what.find("gloo"), std::string::npos) << what;
  }
}

TEST(MpiErrors, BadInputIsRejectedBeforeAnyCommunication) {
  std::vector<Tensor> t = {Tensor::zeros({4}, DType::Float32)};
  EXPECT_THROW(world().send(t, world().size(), 0), InvalidArgument);
  EXPECT_THROW(world().recv(t, -1, 0), InvalidArgument);
  EXPECT_THROW(world().send(t, 0, -5), InvalidArgument);
  EXPECT_THROW(world().allreduce(t, {.reduce_op = ReduceOp::BAND}), InvalidArgument);
  EXPECT_THROW(world().broadcast(t, {.root_rank = world().size()}), InvalidArgument);
  // A group over MPI_COMM_WORLD must have MPI's rank and size.
  EXPECT_THROW(ProcessGroup(nullptr, 0, world().size() + 1, {.backend = "mpi"}), InvalidArgument);
  // The group still works.
  world().allreduce(t)->wait();
}

// A second group over all ranks with a short timeout, for the faults.
std::shared_ptr<ProcessGroup> short_timeout_group(std::chrono::milliseconds timeout) {
  return std::make_shared<ProcessGroup>(
      nullptr, world().rank(), world().size(),
      ProcessGroup::Options{.backend = "mpi", .timeout = timeout, .group_name = "short"});
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

TEST(MpiFaults, ReceiveThatNobodyMatchesTimesOutNamingThePeer) {
  if (world().size() < 2) GTEST_SKIP() << "needs a peer";
  auto pg = short_timeout_group(1s);
  if (pg->rank() == 0) {
    std::vector<Tensor> t = {Tensor::zeros({8}, DType::Float32)};
    const auto start = std::chrono::steady_clock::now();
    try {
      pg->recv(t, 1, 77)->wait();
      ADD_FAILURE() << "a recv nobody sends to returned";
    } catch (const TimeoutError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("recv from rank 1 (tag 77)"), std::string::npos) << what;
      // Rank 1 answers the status request: it is alive, just not sending.
      EXPECT_NE(what.find("rank 1 is idle"), std::string::npos) << what;
      EXPECT_EQ(what.find("did not answer"), std::string::npos) << what;
    }
    const double elapsed = seconds_since(start);
    EXPECT_GE(elapsed, 0.95);
    EXPECT_LE(elapsed, 2.0) << "the timeout is 1 s";
  }
  world().barrier()->wait();
}

TEST(MpiFaults, AbortedReceiveFailsItsWork) {
  if (world().size() < 2) GTEST_SKIP() << "needs a peer";
  std::vector<Tensor> t = {Tensor::zeros({8}, DType::Float32)};
  // Nobody sends on tag 78.
  auto work = world().recv(t, (world().rank() + 1) % world().size(), 78);
  work->abort();
  EXPECT_THROW(work->wait(), DistBackendError);
  world().barrier()->wait();
}

TEST(MpiFaults, ShortMessageIsAnErrorNotSilentGarbage) {
  if (world().size() < 2) GTEST_SKIP() << "needs a peer";
  if (world().rank() == 1) {
    std::vector<Tensor> t = {Tensor::zeros({4}, DType::Float32)};
    world().send(t, 0, 79)->wait();
  } else if (world().rank() == 0) {
    std::vector<Tensor> t = {Tensor::zeros({8}, DType::Float32)};
    try {
      world().recv(t, 1, 79)->wait();
      ADD_FAILURE() << "a 16-byte message filled a 32-byte tensor without error";
    } catch (const DistBackendError& e) {
      EXPECT_NE(std::string(e.what()).find("sent 16 bytes"), std::string::npos) << e.what();
    }
  }
  world().barrier()->wait();
}

// Rank 1 joins an allreduce of `count` floats late by more than the 1 s
// timeout; the others must raise TimeoutError in time, and their group must
// then refuse further work, saying why. Small messages run as nonblocking
// MPI calls polled on the waiting thread, large ones as blocking calls on
// the worker under the watchdog: both paths are checked.
void expect_late_rank_times_out(int64_t count) {
  auto pg = short_timeout_group(1s);
  std::vector<Tensor> t = {Tensor::zeros({count}, DType::Float32)};
  // A send and a receive first: they must not shift the collectives'
  // numbers, which name the same collective on every rank.
  std::vector<Tensor> token = {Tensor::zeros({1}, DType::Int32)};
  if (pg->rank() == 0) pg->send(token, 1, 5)->wait();
  if (pg->rank() == 1) pg->recv(token, 0, 5)->wait();
  if (pg->rank() == 1) {
    // Joining at last lets the others' abandoned MPI call finish.
    std::this_thread::sleep_for(2500ms);
    pg->allreduce(t)->wait();
  } else {
    const auto start = std::chrono::steady_clock::now();
    try {
      pg->allreduce(t)->wait();
      ADD_FAILURE() << "allreduce with a missing rank returned";
    } catch (const TimeoutError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("allreduce #1 on group 'short'"), std::string::npos) << what;
      EXPECT_NE(what.find("timed out after 1000 ms"), std::string::npos) << what;
      // The late rank is alive (it answers a status request) and says it
      // has not reached the collective; no rank is blamed as unresponsive.
      EXPECT_NE(what.find("rank 1 is idle and has run no collective"), std::string::npos) << what;
      EXPECT_EQ(what.find("did not answer"), std::string::npos) << what;
    }
    const double elapsed = seconds_since(start);
    EXPECT_GE(elapsed, 0.95);
    EXPECT_LE(elapsed, 2.0) << "the timeout is 1 s";
    // Later calls fail at once and say why.
    const auto again = std::chrono::steady_clock::now();
    try {
      pg->allreduce(t)->wait();
      ADD_FAILURE() << "a broken group ran an allreduce";
    } catch (const DistBackendError& e) {
      EXPECT_NE(std::string(e.what()).find("can no longer be used because allreduce #1"),
                std::string::npos)
          << e.what();
    }
    EXPECT_LE(seconds_since(again), 0.5);
  }
  world().barrier()->wait();
}

TEST(MpiFaults, LateRankTimesOutSmallCollective) {
  if (world().size() < 2) GTEST_SKIP() << "needs a peer";
  expect_late_rank_times_out(4);
}

TEST(MpiFaults, LateRankTimesOutLargeCollective) {
  if (world().size() < 2) GTEST_SKIP() << "needs a peer";
  expect_late_rank_times_out(int64_t{1} << 16);  // 256 KiB: the blocking path
}

// An operation nobody waits for still runs (the worker takes it after its
// waiter's grace period), both small and large.
TEST(MpiProgress, OperationsCompleteWithoutWait) {
  for (int64_t count : {int64_t{2}, int64_t{1} << 16}) {
    std::vector<Tensor> t = {make_input(DType::Float32, ReduceOp::SUM, world().rank(), count)};
    auto work = world().allreduce(t);
    const auto start = std::chrono::steady_clock::now();
    while (!work->is_completed() && seconds_since(start) < 30) {
      std::this_thread::sleep_for(1ms);
    }
    ASSERT_TRUE(work->is_completed()) << count << " floats: not run within 30 s without wait()";
    EXPECT_EQ(compare_reduced(t[0], ReduceOp::SUM, world().size()), "") << count;
  }
  world().barrier()->wait();
}

TEST(MpiBarrier, MonitoredBarrierPassesAndNamesALateRank) {
  world().monitored_barrier({.timeout = 30s}, true);
  if (world().size() < 3) return;
  auto pg = short_timeout_group(60s);
  if (pg->rank() == 2) std::this_thread::sleep_for(2s);
  if (pg->rank() == 0) {
    try {
      pg->monitored_barrier({.timeout = 1s}, true);
      ADD_FAILURE() << "monitored_barrier passed without rank 2";
    } catch (const DistBackendError& e) {
      EXPECT_NE(std::string(e.what()).find("rank 2 failed to pass monitored_barrier"),
                std::string::npos)
          << e.what();
    }
  } else {
    // The others are not released: rank 0 gave up.
    EXPECT_THROW(pg->monitored_barrier({.timeout = 1500ms}, true), TimeoutError);
  }
  world().barrier()->wait();
}

}  // namespace
}  // namespace tutti::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::AddGlobalTestEnvironment(new tutti::testing::WorldEnvironment);
  return RUN_ALL_TESTS();
}
