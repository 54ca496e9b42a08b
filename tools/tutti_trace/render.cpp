// tutti-trace's output: text for people, JSON for programs.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <ctime>
#include <nlohmann/json.hpp>

#include "tutti_trace/analyze.hpp"

namespace tutti::trace_tool {
namespace {

std::string clock_time(int64_t us) {
  const std::time_t seconds = static_cast<std::time_t>(us / 1000000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  return fmt::format("{:02}:{:02}:{:02}.{:03} UTC", tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (us / 1000) % 1000);
}

std::string op_text(const OpRef& op) {
  return fmt::format("{} #{}{} ({}{}{})", op.op, op.seq, op.p2p ? " (p2p)" : "", op.state,
                     op.detail.empty() ? "" : "; ", op.detail);
}

nlohmann::json op_json(const OpRef& op) {
  return {{"rank", op.rank},   {"seq", op.seq},       {"p2p", op.p2p},    {"op", op.op},
          {"state", op.state}, {"detail", op.detail}, {"age_s", op.age_s}};
}

}  // namespace

std::string render_text(const Report& report) {
  std::string out;
  auto line = [&out](const std::string& text) { out += text + "\n"; };
  line(fmt::format("world size {}: {} of {} rank(s) left a dump", report.world_size,
                   report.dumps.size(), report.world_size));
  for (const auto& d : report.dumps) {
    line(fmt::format("  rank {}: pid {} on {}, dumped at {} ({}), {} entries{}", d.rank, d.pid,
                     d.hostname, clock_time(d.dumped_us), d.reason, d.entries,
                     d.dropped ? fmt::format(", {} older dropped", d.dropped) : ""));
  }
  for (int r : report.missing_ranks) {
    line(
        fmt::format("MISSING: rank {} left no dump (it crashed, was killed, or hung before it "
                    "could write one)",
                    r));
  }
  for (const auto& note : report.notes) line("note: " + note);
  if (report.first_failure) {
    line(fmt::format("first failure: rank {} at {}, {} on group '{}'", report.first_failure->rank,
                     clock_time(report.first_failure_us), op_text(*report.first_failure),
                     report.first_failure_group));
  }
  for (const auto& g : report.groups) {
    line("");
    line(fmt::format("group '{}' (size {}; dumps from rank{} {})", g.name, g.size,
                     g.present.size() == 1 ? "" : "s", fmt::join(g.present, ", ")));
    line(
        fmt::format("  collectives completed by every rank with a dump: up to #{}; by some: "
                    "up to #{}",
                    g.completed_by_all, g.completed_by_any));
    for (const auto& r : g.ranks) {
      line(fmt::format(
          "  rank {}: issued #{}, last completed #{}{}", r.rank, r.issued, r.last_completed,
          std::find(g.behind.begin(), g.behind.end(), r.rank) != g.behind.end() ? " (BEHIND)"
                                                                                : ""));
      if (r.first_failed) line("    FAILED: " + op_text(*r.first_failed));
      for (const auto& op : r.stuck) {
        line(fmt::format("    STUCK: {}, in flight {:.1f} s before the dump", op_text(op),
                         op.age_s));
      }
      for (const auto& op : r.in_flight) {
        if (std::find_if(r.stuck.begin(), r.stuck.end(), [&](const OpRef& s) {
              return s.seq == op.seq && s.p2p == op.p2p;
            }) != r.stuck.end()) {
          continue;
        }
        line(fmt::format("    in flight: {}, {:.1f} s before the dump", op_text(op), op.age_s));
      }
    }
    for (const auto& m : g.missing) {
      std::string where =
          m.joined_at_least > 0
              ? fmt::format(
                    "it took part in collectives up to at least #{} ({}, which needs "
                    "every rank)",
                    m.joined_at_least, m.proof)
              : std::string("no completed collective proves where it was");
      line(fmt::format("  MISSING rank {}: {}", m.rank, where));
      if (m.stopped_at > 0) {
        line(fmt::format("    the ranks with a dump stopped at #{} ({}){}", m.stopped_at,
                         m.stopped_op,
                         m.stopped_at == m.joined_at_least + 1
                             ? fmt::format(": rank {} stopped after #{}", m.rank, m.joined_at_least)
                             : std::string()));
      }
    }
    for (const auto& mm : g.mismatches) {
      line(fmt::format("  MISMATCH at collective #{}:", mm.seq));
      for (const auto& op : mm.ops) line(fmt::format("    rank {}: {}", op.rank, op_text(op)));
    }
  }
  line("");
  line(report.problems == 0
           ? std::string("no problems found")
           : fmt::format("{} problem(s) found (missing ranks, failed ranks, stuck operations, "
                         "mismatches)",
                         report.problems));
  return out;
}

std::string render_json(const Report& report) {
  using nlohmann::json;
  json j;
  j["world_size"] = report.world_size;
  j["missing_ranks"] = report.missing_ranks;
  j["notes"] = report.notes;
  j["problems"] = report.problems;
  j["first_failure"] = report.first_failure ? op_json(*report.first_failure) : json(nullptr);
  if (report.first_failure) {
    j["first_failure"]["group"] = report.first_failure_group;
    j["first_failure"]["failed_us"] = report.first_failure_us;
  }
  json dumps = json::array();
  for (const auto& d : report.dumps) {
    dumps.push_back({{"rank", d.rank},
                     {"pid", d.pid},
                     {"hostname", d.hostname},
                     {"reason", d.reason},
                     {"dumped_us", d.dumped_us},
                     {"entries", d.entries},
                     {"dropped", d.dropped}});
  }
  j["dumps"] = std::move(dumps);
  json groups = json::array();
  for (const auto& g : report.groups) {
    json jg;
    jg["name"] = g.name;
    jg["size"] = g.size;
    jg["present"] = g.present;
    jg["completed_by_all"] = g.completed_by_all;
    jg["completed_by_any"] = g.completed_by_any;
    jg["behind"] = g.behind;
    json ranks = json::array();
    for (const auto& r : g.ranks) {
      json jr = {{"rank", r.rank}, {"issued", r.issued}, {"last_completed", r.last_completed}};
      jr["first_failed"] = r.first_failed ? op_json(*r.first_failed) : json(nullptr);
      jr["in_flight"] = json::array();
      for (const auto& op : r.in_flight) jr["in_flight"].push_back(op_json(op));
      jr["stuck"] = json::array();
      for (const auto& op : r.stuck) jr["stuck"].push_back(op_json(op));
      ranks.push_back(std::move(jr));
    }
    jg["ranks"] = std::move(ranks);
    json missing = json::array();
    for (const auto& m : g.missing) {
      missing.push_back({{"rank", m.rank},
                         {"joined_at_least", m.joined_at_least},
                         {"proof", m.proof},
                         {"stopped_at", m.stopped_at},
                         {"stopped_op", m.stopped_op}});
    }
    jg["missing"] = std::move(missing);
    json mismatches = json::array();
    for (const auto& mm : g.mismatches) {
      json ops = json::array();
      for (const auto& op : mm.ops) ops.push_back(op_json(op));
      mismatches.push_back({{"seq", mm.seq}, {"ops", std::move(ops)}});
    }
    jg["mismatches"] = std::move(mismatches);
    groups.push_back(std::move(jg));
  }
  j["groups"] = std::move(groups);
  return j.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

}  // namespace tutti::trace_tool
