// tutti-trace's analysis: from every rank's flight-recorder dump to where
// the ranks diverge. Pure functions over parsed dumps (no I/O), so that
// tests can feed them synthetic dumps.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "debug/trace_dump.hpp"

namespace tutti::trace_tool {

// One operation as the report names it.
struct OpRef {
  int rank = -1;  // group rank
  uint64_t seq = 0;
  bool p2p = false;
  std::string op;
  std::string state;
  std::string detail;  // dtype, sizes, peer, error...
  double age_s = 0;    // enqueued this long before the rank's dump
};

struct Mismatch {
  uint64_t seq = 0;
  std::vector<OpRef> ops;  // one per rank, differing
};

struct MissingInGroup {
  int rank = -1;  // group rank
  // Highest collective it took part in, proven by a present rank's
  // completion of an operation that needs every rank; 0: no proof.
  uint64_t joined_at_least = 0;
  std::string proof;  // "allreduce #12 completed on rank 0"
  // Lowest collective the present ranks issued but none completed; 0: none.
  uint64_t stopped_at = 0;
  std::string stopped_op;
};

struct RankInGroup {
  int rank = -1;  // group rank
  uint64_t issued = 0;
  uint64_t last_completed = 0;
  std::optional<OpRef> first_failed;
  std::vector<OpRef> in_flight;  // enqueued or started, oldest first
  std::vector<OpRef> stuck;      // in_flight older than the threshold
};

struct GroupReport {
  std::string name;
  int size = 0;
  std::vector<int> present;  // group ranks with a dump
  uint64_t completed_by_all = 0;
  uint64_t completed_by_any = 0;
  std::vector<int> behind;  // present ranks below completed_by_any
  std::vector<RankInGroup> ranks;
  std::vector<MissingInGroup> missing;
  std::vector<Mismatch> mismatches;
};

struct DumpInfo {
  int rank = -1;
  int64_t pid = 0;
  std::string hostname;
  std::string reason;
  int64_t dumped_us = 0;
  size_t entries = 0;
  uint64_t dropped = 0;
};

struct Report {
  int world_size = 0;
  std::vector<DumpInfo> dumps;
  std::vector<int> missing_ranks;  // world ranks without a dump
  std::vector<std::string> notes;  // inconsistencies between the dumps
  std::vector<GroupReport> groups;
  // The earliest failure on any rank (by wall clock; the ranks of one host
  // share it), with its group: usually the root cause.
  std::optional<OpRef> first_failure;
  std::string first_failure_group;
  int64_t first_failure_us = 0;
  int problems = 0;  // missing ranks + failed ranks + stuck ops + mismatches
};

struct Options {
  double stuck_after_s = 5.0;  // an in-flight op this old at its dump is stuck
};

Report analyze(std::vector<trace::Dump> dumps, const Options& options = {});

std::string render_text(const Report& report);
std::string render_json(const Report& report);

}  // namespace tutti::trace_tool
