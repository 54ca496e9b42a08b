// One rank of the network-namespace tests (tests/net/*.sh): started by
// tuttirun in its own namespace, it joins the job through env:// over the
// namespaces' real addresses, with the gloo backend.
//
//   tutti-net-rank suite
//       every family of the shared collective suite, checked against the
//       reference (collectives/suite.hpp); exits non-zero on any failure.
//   tutti-net-rank stream --bytes B --timeout-ms T --slack-ms S --cut-rank C --dir D
//       checked float32 allreduces of B bytes, one after another, until one
//       fails (the test takes rank C's link down meanwhile); after the first
//       one succeeds, writes D/ready.<rank>. Passes if the failure is a
//       TimeoutError or DistNetworkError naming the allreduce, raised within
//       the limit of that allreduce's start and of the time in D/down (epoch
//       nanoseconds, written by the test when it cut the link). The limit is
//       T + the roll call's grace + S, and on rank C also the roll call's
//       store slack and the root-cause lookup's wait for the store
//       (backends/gloo/census.hpp, debug/root_cause.hpp), which rank C
//       cannot reach any more. Every rank but C must name rank C.
//   tutti-net-rank timed --bytes B --iters K
//       a warm-up, then K checked allreduces and K checked broadcasts of B
//       bytes; rank 0 prints "timed allreduce B SECONDS" and "timed broadcast
//       B SECONDS": the slowest rank's median.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "backends/gloo/census.hpp"
#include "collectives/reference.hpp"
#include "collectives/suite.hpp"
#include "debug/root_cause.hpp"
#include "tutti/tutti.hpp"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace tt = tutti::testing;

std::shared_ptr<tutti::ProcessGroup> g_group;

class NetSuite : public ::testing::TestWithParam<tt::SuiteFamily> {};

TEST_P(NetSuite, MatchesTheReference) { GetParam().check(*g_group); }

INSTANTIATE_TEST_SUITE_P(Namespaces, NetSuite, ::testing::ValuesIn(tt::kSuiteFamilies),
                         [](const auto& info) { return std::string(info.param.name); });

struct Args {
  std::string mode;
  int64_t bytes = 1 << 20;
  int64_t timeout_ms = 3000;
  int64_t slack_ms = 2000;
  int iters = 3;
  int cut_rank = -1;
  std::string dir;
};

Args parse(int argc, char** argv) {
  Args args;
  if (argc > 1) args.mode = argv[1];
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string name = argv[i];
    const std::string value = argv[i + 1];
    if (name == "--bytes") args.bytes = std::stoll(value);
    if (name == "--timeout-ms") args.timeout_ms = std::stoll(value);
    if (name == "--slack-ms") args.slack_ms = std::stoll(value);
    if (name == "--iters") args.iters = std::stoi(value);
    if (name == "--cut-rank") args.cut_rank = std::stoi(value);
    if (name == "--dir") args.dir = value;
  }
  return args;
}

std::shared_ptr<tutti::ProcessGroup> join(std::chrono::milliseconds timeout) {
  tutti::InitOptions options;
  options.backend = "gloo";
  options.timeout = timeout;
  return tutti::init_process_group(options);
}

int64_t epoch_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

double ms_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

int run_suite(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  g_group = join(60s);
  const int failed = RUN_ALL_TESTS();
  // The store's host must outlive the others' last call.
  if (failed == 0) g_group->barrier()->wait();
  g_group.reset();
  return failed == 0 ? 0 : 1;
}

// The link goes down while allreduces run; see the file comment.
int run_stream(const Args& args) {
  const auto timeout = std::chrono::milliseconds(args.timeout_ms);
  auto pg = join(timeout);
  const int rank = pg->rank();
  const int64_t count = args.bytes / 4;
  const auto give_up = Clock::now() + 120s;
  bool ready = false;
  for (int64_t i = 0; Clock::now() < give_up; ++i) {
    const int64_t offset = i % tt::kInputPeriod;
    std::vector<tutti::Tensor> t = {
        tt::make_input(tutti::DType::Float32, tutti::ReduceOp::SUM, rank, count, offset)};
    const auto start = Clock::now();
    try {
      pg->allreduce(t)->wait();
    } catch (const tutti::Error& e) {
      const auto failed_at = Clock::now();
      const int64_t failed_epoch = epoch_ns();
      const std::string what = e.what();
      const bool right_type = dynamic_cast<const tutti::TimeoutError*>(&e) != nullptr ||
                              dynamic_cast<const tutti::DistNetworkError*>(&e) != nullptr;
      const double in_op_ms = ms_between(start, failed_at);
      int64_t down_epoch = 0;
      std::ifstream(args.dir + "/down") >> down_epoch;
      const double since_down_ms =
          down_epoch > 0 ? static_cast<double>(failed_epoch - down_epoch) / 1e6 : -1;
      // The documented bound (docs/gloo.md): the timeout, then the roll
      // call's grace; on rank C, which cannot reach the store any more, the
      // roll call's store slack and the root-cause lookup's wait on top.
      const auto grace = tutti::gloo_backend::Census::grace(timeout);
      const auto store_wait = rank == args.cut_rank ? tutti::gloo_backend::Census::kStoreSlack +
                                                          tutti::trace::RootCause::kStoreTimeout
                                                    : std::chrono::milliseconds(0);
      const double limit_ms =
          static_cast<double>(args.timeout_ms + args.slack_ms + grace.count() + store_wait.count());
      fmt::print(
          "rank {}: allreduce #{} failed after {:.0f} ms ({:.0f} ms after the link went "
          "down; limit {:.0f} ms): {}\n",
          rank, i + 1, in_op_ms, since_down_ms, limit_ms, what);
      int problems = 0;
      auto fail = [&](const std::string& why) {
        fmt::print("rank {}: FAIL: {}\n", rank, why);
        ++problems;
      };
      if (!right_type) fail("expected TimeoutError or DistNetworkError");
      if (what.find("allreduce") == std::string::npos) fail("the message does not name allreduce");
      // Every rank that still reaches the store names the one cut off.
      const std::string named = fmt::format("rank {} did not answer", args.cut_rank);
      if (rank != args.cut_rank && what.find(named) == std::string::npos) {
        fail("the message does not say \"" + named + "\"");
      }
      if (in_op_ms > limit_ms) fail(fmt::format("raised {:.0f} ms into the op", in_op_ms));
      if (down_epoch == 0) fail("failed before the link went down");
      if (since_down_ms > limit_ms) {
        fail(fmt::format("raised {:.0f} ms after the link went down", since_down_ms));
      }
      // Rank 0 serves the store the others' roll calls read: it stays until
      // every rank that can reach it has its error.
      try {
        const auto& store = pg->store();
        if (rank != 0 && rank != args.cut_rank) {
          store->set(fmt::format("net/done/{}", rank), std::string("1"));
        } else if (rank == 0) {
          std::vector<std::string> keys;
          for (int r = 1; r < pg->size(); ++r) {
            if (r != args.cut_rank) keys.push_back(fmt::format("net/done/{}", r));
          }
          store->wait(keys, 4 * timeout);
        }
      } catch (const tutti::Error& e) {
        fail(fmt::format("the store's hand-off after the error failed: {}", e.what()));
      }
      std::fflush(stdout);
      // The group is broken; leave without the store's host waiting for
      // ranks that cannot reach it.
      std::_Exit(problems == 0 ? 0 : 1);
    }
    const std::string diff = tt::compare_reduced(t[0], tutti::ReduceOp::SUM, pg->size(), offset);
    if (!diff.empty()) {
      fmt::print("rank {}: FAIL: allreduce #{} is wrong: {}\n", rank, i + 1, diff);
      return 1;
    }
    if (!ready) {
      std::ofstream(fmt::format("{}/ready.{}", args.dir, rank)) << "1\n";
      ready = true;
    }
  }
  fmt::print("rank {}: FAIL: no allreduce failed within 120 s\n", rank);
  return 1;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int run_timed(const Args& args) {
  auto pg = join(120s);
  const int rank = pg->rank();
  const int64_t count = args.bytes / 4;
  const auto dtype = tutti::DType::Float32;
  int wrong = 0;
  auto allreduce = [&] {
    std::vector<tutti::Tensor> t = {tt::make_input(dtype, tutti::ReduceOp::SUM, rank, count)};
    const auto start = Clock::now();
    pg->allreduce(t)->wait();
    const double s = std::chrono::duration<double>(Clock::now() - start).count();
    const std::string diff = tt::compare_reduced(t[0], tutti::ReduceOp::SUM, pg->size());
    if (!diff.empty()) {
      fmt::print("rank {}: FAIL: allreduce is wrong: {}\n", rank, diff);
      ++wrong;
    }
    return s;
  };
  auto broadcast = [&] {
    const int root = pg->size() - 1;
    std::vector<tutti::Tensor> t = {tt::make_input(dtype, tutti::ReduceOp::SUM, rank, count)};
    const auto start = Clock::now();
    pg->broadcast(t, {.root_rank = root})->wait();
    const double s = std::chrono::duration<double>(Clock::now() - start).count();
    const std::string diff = tt::compare_input(t[0], tutti::ReduceOp::SUM, root);
    if (!diff.empty()) {
      fmt::print("rank {}: FAIL: broadcast is wrong: {}\n", rank, diff);
      ++wrong;
    }
    return s;
  };
  allreduce();
  broadcast();
  std::vector<double> reduce_s, broadcast_s;
  for (int i = 0; i < args.iters; ++i) {
    pg->barrier()->wait();
    reduce_s.push_back(allreduce());
    pg->barrier()->wait();
    broadcast_s.push_back(broadcast());
  }
  // An operation takes as long as its slowest rank (a broadcast's root is
  // done when its sends are queued).
  tutti::Tensor medians = tutti::Tensor::empty({2}, tutti::DType::Float64);
  medians.data<double>()[0] = median(reduce_s);
  medians.data<double>()[1] = median(broadcast_s);
  std::vector<tutti::Tensor> slowest = {medians};
  pg->allreduce(slowest, {.reduce_op = tutti::ReduceOp::MAX})->wait();
  if (rank == 0) {
    fmt::print("timed allreduce {} {:.6f}\n", args.bytes, medians.data<double>()[0]);
    fmt::print("timed broadcast {} {:.6f}\n", args.bytes, medians.data<double>()[1]);
  }
  return wrong == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const Args args = parse(argc, argv);
  try {
    if (args.mode == "suite") return run_suite(argc, argv);
    if (args.mode == "stream") return run_stream(args);
    if (args.mode == "timed") return run_timed(args);
  } catch (const std::exception& e) {
    fmt::print(stderr, "tutti-net-rank {}: {}\n", args.mode, e.what());
    return 1;
  }
  fmt::print(stderr, "usage: tutti-net-rank suite|stream|timed [options] (see the source)\n");
  return 2;
}
