// The tutti-trace binary on synthetic dumps written in the library's format:
// mismatched collectives, a rank stuck in an operation, a missing rank and
// what the others prove about it, a clean run, and unreadable input.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "debug/flight_recorder.hpp"
#include "debug/trace_dump.hpp"
#include "debug/trace_test_util.hpp"

namespace tutti::testing {
namespace {

using trace::Dump;
using trace::Entry;
using trace::EntryState;

constexpr int64_t kDumpedUs = 1'800'000'000'000'000;  // a fixed instant

Entry op(uint64_t seq, OpType type, EntryState state, std::vector<int64_t> sizes = {4},
         double age_s = 1.0) {
  Entry e;
  e.id = seq;
  e.group = "default";
  e.seq = seq;
  e.op = type;
  e.p2p = is_point_to_point(type);
  e.has_tensors = type != OpType::BARRIER;
  e.dtype = DType::Float32;
  e.num_tensors = 1;
  e.sizes = sizes;
  e.numel = 1;
  for (int64_t s : sizes) e.numel *= s;
  e.state = state;
  e.enqueued_us = kDumpedUs - static_cast<int64_t>(age_s * 1e6);
  if (state != EntryState::ENQUEUED) e.started_us = e.enqueued_us + 10;
  if (state == EntryState::COMPLETED || state == EntryState::FAILED) {
    e.completed_us = e.started_us + 10;
  }
  if (state == EntryState::FAILED) e.error = "DistNetworkError: connection reset by rank 2";
  return e;
}

Dump dump_of(int rank, int world, std::vector<Entry> entries) {
  Dump d;
  d.rank = rank;
  d.world_size = world;
  d.pid = 1000 + rank;
  d.hostname = "node0";
  d.reason = "test";
  d.dumped_us = kDumpedUs;
  d.capacity = 2000;
  uint64_t collectives = 0, p2p = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    entries[i].id = i + 1;
    (entries[i].p2p ? p2p : collectives) =
        std::max(entries[i].p2p ? p2p : collectives, entries[i].seq);
  }
  d.groups.push_back({"default", rank, world, collectives, p2p});
  d.entries = std::move(entries);
  return d;
}

std::vector<Entry> completed_allreduces(uint64_t n) {
  std::vector<Entry> list;
  for (uint64_t seq = 1; seq <= n; ++seq) {
    list.push_back(op(seq, OpType::ALLREDUCE, EntryState::COMPLETED));
  }
  return list;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(TuttiTrace, ReportsMismatchedCollectives) {
  TempDir dir;
  auto r0 = completed_allreduces(1);
  auto r1 = completed_allreduces(1);
  r0.push_back(op(2, OpType::ALLREDUCE, EntryState::COMPLETED, {4}));
  r1.push_back(op(2, OpType::ALLREDUCE, EntryState::COMPLETED, {8}));  // other size
  r0.push_back(op(3, OpType::BROADCAST, EntryState::COMPLETED));
  r1.push_back(op(3, OpType::ALLREDUCE, EntryState::COMPLETED));  // other op
  trace::write_dump(dump_of(0, 2, r0), dir.path());
  trace::write_dump(dump_of(1, 2, r1), dir.path());
  const auto text = run_tutti_trace(dir.path());
  EXPECT_EQ(text.exit_code, 1) << text.output;
  EXPECT_TRUE(contains(text.output,
                       "MISMATCH at collective #2:\n"
                       "    rank 0: allreduce #2 (completed; float32 [4], 1 tensor, numel 4)\n"
                       "    rank 1: allreduce #2 (completed; float32 [8], 1 tensor, numel 8)\n"))
      << text.output;
  EXPECT_TRUE(contains(text.output, "MISMATCH at collective #3:\n    rank 0: broadcast #3"))
      << text.output;
  EXPECT_FALSE(contains(text.output, "MISMATCH at collective #1")) << text.output;
  EXPECT_FALSE(contains(text.output, "MISSING")) << text.output;

  const auto json = run_tutti_trace("--json " + dir.path());
  EXPECT_EQ(json.exit_code, 1);
  const auto report = nlohmann::json::parse(json.output);
  EXPECT_EQ(report["problems"], 2);
  ASSERT_EQ(report["groups"][0]["mismatches"].size(), 2u);
  EXPECT_EQ(report["groups"][0]["mismatches"][0]["seq"], 2);
  EXPECT_EQ(report["groups"][0]["mismatches"][1]["seq"], 3);
}

// Rank 1 is stuck in a receive from rank 2 that never came; ranks 0 and 2
// wait for it in allreduce #6.
TEST(TuttiTrace, ReportsARankStuckInAnOperation) {
  TempDir dir;
  auto r0 = completed_allreduces(5);
  auto r1 = completed_allreduces(5);
  auto r2 = completed_allreduces(5);
  r0.push_back(op(6, OpType::ALLREDUCE, EntryState::STARTED, {4}, 29.0));
  r2.push_back(op(6, OpType::ALLREDUCE, EntryState::STARTED, {4}, 29.0));
  Entry recv = op(1, OpType::RECV, EntryState::STARTED, {4}, 30.0);
  recv.peer = 2;
  recv.tag = 3;
  r1.push_back(recv);
  trace::write_dump(dump_of(0, 3, r0), dir.path());
  trace::write_dump(dump_of(1, 3, r1), dir.path());
  trace::write_dump(dump_of(2, 3, r2), dir.path());
  const auto text = run_tutti_trace(dir.path());
  EXPECT_EQ(text.exit_code, 1) << text.output;
  EXPECT_TRUE(contains(text.output,
                       "  rank 1: issued #5, last completed #5\n"
                       "    STUCK: recv #1 (p2p) (started; float32 [4], 1 tensor, numel 4; from "
                       "rank 2; tag 3), in flight 30.0 s before the dump\n"))
      << text.output;
  EXPECT_TRUE(contains(text.output,
                       "  rank 0: issued #6, last completed #5\n    STUCK: allreduce #6 (started"))
      << text.output;
  EXPECT_TRUE(contains(text.output, "up to #5; by some: up to #5")) << text.output;
  EXPECT_TRUE(contains(text.output, "3 problem(s) found")) << text.output;

  // Below the threshold the same operations are only in flight.
  const auto patient = run_tutti_trace("--stuck-after 60 " + dir.path());
  EXPECT_EQ(patient.exit_code, 0) << patient.output;
  EXPECT_TRUE(contains(patient.output, "    in flight: recv #1 (p2p)")) << patient.output;
  EXPECT_TRUE(contains(patient.output, "no problems found")) << patient.output;
}

// Rank 2 of 4 left no dump. Allreduce #3 completed on the others, so rank 2
// took part in it; broadcast #4 from root 0 completed on rank 0 only, which
// proves nothing about rank 2 (a root finishes without its receivers).
TEST(TuttiTrace, NamesAMissingRankAndWhatTheOthersProveAboutIt) {
  TempDir dir;
  for (int rank : {0, 1, 3}) {
    auto entries = completed_allreduces(3);
    Entry b = op(4, OpType::BROADCAST, rank == 0 ? EntryState::COMPLETED : EntryState::FAILED);
    b.root = 0;
    if (rank == 3) b.completed_us -= 1'000'000;  // failed a second before rank 1
    entries.push_back(b);
    trace::write_dump(dump_of(rank, 4, entries), dir.path());
  }
  const auto text = run_tutti_trace(dir.path());
  EXPECT_EQ(text.exit_code, 1) << text.output;
  EXPECT_TRUE(contains(text.output, "world size 4: 3 of 4 rank(s) left a dump")) << text.output;
  EXPECT_TRUE(contains(text.output, "MISSING: rank 2 left no dump")) << text.output;
  EXPECT_TRUE(contains(text.output,
                       "first failure: rank 3 at 07:59:58.000 UTC, broadcast #4 "
                       "(failed;"))
      << text.output;
  EXPECT_TRUE(contains(text.output,
                       "MISSING rank 2: it took part in collectives up to at least #3 (allreduce "
                       "#3 completed on rank 0, which needs every rank)"))
      << text.output;
  EXPECT_TRUE(contains(text.output,
                       "stopped at #4 (broadcast: completed on rank 0, failed on "
                       "rank 1, failed on rank 3)"))
      << text.output;
  EXPECT_TRUE(contains(text.output,
                       "FAILED: broadcast #4 (failed; float32 [4], 1 tensor, numel "
                       "4; root 0; DistNetworkError: connection reset by rank 2)"))
      << text.output;
}

TEST(TuttiTrace, ACleanRunHasNoProblems) {
  TempDir dir;
  trace::write_dump(dump_of(0, 2, completed_allreduces(4)), dir.path());
  trace::write_dump(dump_of(1, 2, completed_allreduces(4)), dir.path());
  const auto text = run_tutti_trace(dir.path());
  EXPECT_EQ(text.exit_code, 0) << text.output;
  EXPECT_TRUE(contains(text.output, "collectives completed by every rank with a dump: up to #4"))
      << text.output;
  EXPECT_TRUE(contains(text.output, "no problems found")) << text.output;
}

TEST(TuttiTrace, UnreadableInputExitsWithTwo) {
  TempDir dir;
  const auto empty = run_tutti_trace(dir.path());
  EXPECT_EQ(empty.exit_code, 2) << empty.output;
  EXPECT_TRUE(contains(empty.output, "no flight-recorder dump")) << empty.output;
  std::ofstream(dir.path() + "/tutti-trace.rank0.json") << "{\"format\": \"tutti-trace\",";
  const auto bad = run_tutti_trace(dir.path());
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_TRUE(contains(bad.output,
                       "tutti-trace.rank0.json: tutti trace dump: text is not valid "
                       "JSON"))
      << bad.output;
  const auto usage = run_tutti_trace("");
  EXPECT_EQ(usage.exit_code, 2) << usage.output;
}

}  // namespace
}  // namespace tutti::testing
