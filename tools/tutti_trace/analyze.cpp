#include "tutti_trace/analyze.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

namespace tutti::trace_tool {
namespace {

using trace::Dump;
using trace::Entry;
using trace::EntryState;

bool in_flight(const Entry& e) {
  return e.state == EntryState::ENQUEUED || e.state == EntryState::STARTED;
}

// The data that every rank must agree on for the same collective.
std::string signature(const Entry& e) {
  std::string s = to_string(e.op);
  if (e.root >= 0) s += fmt::format(" root {}", e.root);
  if (e.has_tensors) {
    s += fmt::format(" {}", to_string(e.dtype));
    // All-to-all sizes differ between ranks by design (uneven splits).
    if (e.op != OpType::ALLTOALL && e.op != OpType::ALLTOALL_BASE) {
      s += fmt::format(" [{}] x{} numel {}", fmt::join(e.sizes, ", "), e.num_tensors, e.numel);
    }
  }
  return s;
}

std::string detail(const Entry& e) {
  std::vector<std::string> parts;
  if (e.has_tensors) {
    parts.push_back(fmt::format("{} [{}], {} tensor{}, numel {}", to_string(e.dtype),
                                fmt::join(e.sizes, ", "), e.num_tensors,
                                e.num_tensors == 1 ? "" : "s", e.numel));
  }
  if (e.root >= 0) parts.push_back(fmt::format("root {}", e.root));
  if (e.peer >= 0) {
    parts.push_back(fmt::format("{} rank {}", e.op == OpType::SEND ? "to" : "from", e.peer));
  }
  if (e.tag >= 0) parts.push_back(fmt::format("tag {}", e.tag));
  if (!e.error.empty()) parts.push_back(e.error);
  return fmt::format("{}", fmt::join(parts, "; "));
}

OpRef ref(int rank, const Entry& e, const Dump& dump) {
  OpRef r;
  r.rank = rank;
  r.seq = e.seq;
  r.p2p = e.p2p;
  r.op = to_string(e.op);
  r.state = to_string(e.state);
  r.detail = detail(e);
  if (e.enqueued_us > 0 && dump.dumped_us >= e.enqueued_us) {
    r.age_s = static_cast<double>(dump.dumped_us - e.enqueued_us) / 1e6;
  }
  return r;
}

// Whether `completer` completing `e` proves that group rank `missing` took
// part in it.
bool proves_participation(const Entry& e, int completer, int missing) {
  switch (e.op) {
    case OpType::ALLREDUCE:
    case OpType::ALLREDUCE_SPARSE:
    case OpType::ALLREDUCE_COALESCED:
    case OpType::ALLGATHER:
    case OpType::ALLGATHER_INTO_TENSOR:
    case OpType::ALLGATHER_COALESCED:
    case OpType::ALLGATHER_INTO_TENSOR_COALESCED:
    case OpType::REDUCE_SCATTER:
    case OpType::REDUCE_SCATTER_TENSOR:
    case OpType::REDUCE_SCATTER_TENSOR_COALESCED:
    case OpType::ALLTOALL:
    case OpType::ALLTOALL_BASE:
    case OpType::BARRIER:
    case OpType::MONITORED_BARRIER:
      return true;
    case OpType::BROADCAST:
    case OpType::SCATTER:
      return e.root == missing;  // the data came from it
    case OpType::REDUCE:
    case OpType::GATHER:
      return e.root == completer;  // the root had everyone's data
    default:
      return false;
  }
}

struct Member {
  int rank = -1;
  const Dump* dump = nullptr;
  uint64_t issued = 0;
  std::map<uint64_t, const Entry*> collectives;  // by seq, latest entry wins
  std::vector<const Entry*> p2p;
};

GroupReport analyze_group(const std::string& name, int size, std::vector<Member>& members,
                          const Options& options) {
  GroupReport g;
  g.name = name;
  g.size = size;
  std::sort(members.begin(), members.end(),
            [](const Member& a, const Member& b) { return a.rank < b.rank; });
  bool first = true;
  for (auto& m : members) {
    g.present.push_back(m.rank);
    RankInGroup r;
    r.rank = m.rank;
    r.issued = m.issued;
    std::vector<const Entry*> pending;
    for (const auto& [seq, e] : m.collectives) {
      if (e->state == EntryState::COMPLETED) r.last_completed = std::max(r.last_completed, seq);
      if (e->state == EntryState::FAILED && !r.first_failed)
        r.first_failed = ref(m.rank, *e, *m.dump);
      if (in_flight(*e)) pending.push_back(e);
    }
    for (const Entry* e : m.p2p) {
      if (e->state == EntryState::FAILED && !r.first_failed)
        r.first_failed = ref(m.rank, *e, *m.dump);
      if (in_flight(*e)) pending.push_back(e);
    }
    std::sort(pending.begin(), pending.end(),
              [](const Entry* a, const Entry* b) { return a->id < b->id; });
    for (const Entry* e : pending) {
      OpRef op = ref(m.rank, *e, *m.dump);
      if (op.age_s >= options.stuck_after_s) r.stuck.push_back(op);
      r.in_flight.push_back(std::move(op));
    }
    g.completed_by_all = first ? r.last_completed : std::min(g.completed_by_all, r.last_completed);
    g.completed_by_any = std::max(g.completed_by_any, r.last_completed);
    first = false;
    g.ranks.push_back(std::move(r));
  }
  for (const auto& r : g.ranks) {
    if (r.last_completed < g.completed_by_any) g.behind.push_back(r.rank);
  }
  // Mismatches: the same collective number with different signatures.
  std::set<uint64_t> seqs;
  for (const auto& m : members) {
    for (const auto& [seq, e] : m.collectives) seqs.insert(seq);
  }
  for (uint64_t seq : seqs) {
    std::set<std::string> signatures;
    std::vector<OpRef> ops;
    for (const auto& m : members) {
      auto it = m.collectives.find(seq);
      if (it == m.collectives.end()) continue;
      signatures.insert(signature(*it->second));
      ops.push_back(ref(m.rank, *it->second, *m.dump));
    }
    if (signatures.size() > 1) g.mismatches.push_back({seq, std::move(ops)});
  }
  // Missing members: where they were, from what the present ones completed.
  std::set<int> present(g.present.begin(), g.present.end());
  for (int missing = 0; missing < size; ++missing) {
    if (present.count(missing)) continue;
    MissingInGroup mi;
    mi.rank = missing;
    for (const auto& m : members) {
      for (const auto& [seq, e] : m.collectives) {
        if (e->state == EntryState::COMPLETED && seq > mi.joined_at_least &&
            proves_participation(*e, m.rank, missing)) {
          mi.joined_at_least = seq;
          mi.proof = fmt::format("{} #{} completed on rank {}", to_string(e->op), seq, m.rank);
        }
      }
    }
    // The first collective after that which not every present rank
    // completed: where the others stopped without it.
    for (uint64_t seq : seqs) {
      if (seq <= mi.joined_at_least) continue;
      bool completed_everywhere = true;
      std::vector<std::string> states;
      std::string op;
      for (const auto& m : members) {
        auto it = m.collectives.find(seq);
        if (it == m.collectives.end()) {
          completed_everywhere = false;
          states.push_back(fmt::format("not issued on rank {}", m.rank));
          continue;
        }
        op = to_string(it->second->op);
        completed_everywhere &= it->second->state == EntryState::COMPLETED;
        states.push_back(fmt::format("{} on rank {}", to_string(it->second->state), m.rank));
      }
      if (completed_everywhere) continue;
      mi.stopped_at = seq;
      mi.stopped_op = fmt::format("{}: {}", op, fmt::join(states, ", "));
      break;
    }
    g.missing.push_back(std::move(mi));
  }
  return g;
}

}  // namespace

Report analyze(std::vector<trace::Dump> dumps, const Options& options) {
  Report report;
  // One dump per rank: the latest.
  std::sort(dumps.begin(), dumps.end(), [](const Dump& a, const Dump& b) {
    return a.rank != b.rank ? a.rank < b.rank : a.dumped_us > b.dumped_us;
  });
  std::vector<Dump> unique;
  for (auto& d : dumps) {
    if (!unique.empty() && unique.back().rank == d.rank) {
      report.notes.push_back(
          fmt::format("rank {} left more than one dump; reading the latest (pid {})", d.rank,
                      unique.back().pid));
      continue;
    }
    unique.push_back(std::move(d));
  }
  std::set<int> sizes;
  for (const auto& d : unique) {
    if (d.world_size > 0) sizes.insert(d.world_size);
    report.world_size = std::max(report.world_size, d.world_size);
    report.dumps.push_back(
        {d.rank, d.pid, d.hostname, d.reason, d.dumped_us, d.entries.size(), d.dropped});
    if (d.dropped > 0) {
      report.notes.push_back(
          fmt::format("rank {} recorded more operations than its buffer holds ({} dropped); raise "
                      "TUTTI_TRACE_BUFFER to see further back",
                      d.rank, d.dropped));
    }
  }
  if (sizes.size() > 1) {
    report.notes.push_back(fmt::format(
        "the dumps disagree on the world size ({}); using the largest", fmt::join(sizes, ", ")));
  }
  std::set<int> present;
  for (const auto& d : unique) present.insert(d.rank);
  for (int r = 0; r < report.world_size; ++r) {
    if (!present.count(r)) report.missing_ranks.push_back(r);
  }
  // Groups, in the order the first dump lists them.
  std::vector<std::string> names;
  std::map<std::string, int> group_size;
  std::map<std::string, std::vector<Member>> members;
  for (const auto& d : unique) {
    for (const auto& gi : d.groups) {
      if (!group_size.count(gi.name)) names.push_back(gi.name);
      group_size[gi.name] = std::max(group_size[gi.name], gi.size);
      Member m;
      m.rank = gi.rank;
      m.dump = &d;
      m.issued = gi.collectives;
      members[gi.name].push_back(std::move(m));
    }
  }
  for (auto& [name, list] : members) {
    for (auto& m : list) {
      for (const auto& e : m.dump->entries) {
        if (e.group != name) continue;
        if (e.p2p) {
          m.p2p.push_back(&e);
        } else {
          m.collectives[e.seq] = &e;
        }
      }
    }
  }
  for (const auto& d : unique) {
    for (const auto& e : d.entries) {
      if (e.state != EntryState::FAILED) continue;
      if (report.first_failure && e.completed_us >= report.first_failure_us) continue;
      report.first_failure = ref(d.rank, e, d);
      report.first_failure_group = e.group;
      report.first_failure_us = e.completed_us;
    }
  }
  for (const auto& name : names) {
    report.groups.push_back(analyze_group(name, group_size[name], members[name], options));
  }
  report.problems = static_cast<int>(report.missing_ranks.size());
  for (const auto& g : report.groups) {
    report.problems += static_cast<int>(g.mismatches.size());
    for (const auto& r : g.ranks) {
      report.problems += (r.first_failed ? 1 : 0) + static_cast<int>(r.stuck.size());
    }
  }
  return report;
}

}  // namespace tutti::trace_tool
