#include "debug/trace_dump.hpp"

#include <fmt/format.h>

#include <array>
#include <limits>
#include <nlohmann/json.hpp>

#include "tutti/errors.hpp"

namespace tutti::trace {
namespace {

using nlohmann::json;

constexpr std::array<const char*, 4> kStateNames = {"enqueued", "started", "completed", "failed"};

[[noreturn]] void bad(const std::string& where, const std::string& what) {
  throw InvalidArgument(fmt::format("tutti trace dump: {} {}", where, what));
}

const json& field(const json& object, const char* key, const std::string& where) {
  auto it = object.find(key);
  if (it == object.end()) bad(where, fmt::format("has no field '{}'", key));
  return *it;
}

template <class Int>
Int get_int(const json& object, const char* key, const std::string& where) {
  const json& value = field(object, key, where);
  const std::string name = fmt::format("{}.{}", where, key);
  if (value.is_number_unsigned()) {
    const auto v = value.get<uint64_t>();
    if (v > static_cast<uint64_t>(std::numeric_limits<Int>::max())) bad(name, "is out of range");
    return static_cast<Int>(v);
  }
  if (value.is_number_integer()) {
    const auto v = value.get<int64_t>();
    if constexpr (std::is_unsigned_v<Int>) {
      if (v < 0) bad(name, "is negative");
      return static_cast<Int>(v);
    } else {
      if (v < static_cast<int64_t>(std::numeric_limits<Int>::min()) ||
          v > static_cast<int64_t>(std::numeric_limits<Int>::max())) {
        bad(name, "is out of range");
      }
      return static_cast<Int>(v);
    }
  }
  bad(name, "is not an integer");
}

std::string get_string(const json& object, const char* key, const std::string& where) {
  const json& value = field(object, key, where);
  if (!value.is_string()) bad(fmt::format("{}.{}", where, key), "is not a string");
  return value.get<std::string>();
}

bool get_bool(const json& object, const char* key, const std::string& where) {
  const json& value = field(object, key, where);
  if (!value.is_boolean()) bad(fmt::format("{}.{}", where, key), "is not true or false");
  return value.get<bool>();
}

const json& get_array(const json& object, const char* key, const std::string& where) {
  const json& value = field(object, key, where);
  if (!value.is_array()) bad(fmt::format("{}.{}", where, key), "is not an array");
  return value;
}

EntryState parse_state(const std::string& name, const std::string& where) {
  for (size_t i = 0; i < kStateNames.size(); ++i) {
    if (name == kStateNames[i]) return static_cast<EntryState>(i);
  }
  bad(where, fmt::format("has unknown state '{}'", name));
}

json entry_to_json(const Entry& e) {
  json j;
  j["id"] = e.id;
  j["group"] = e.group;
  j["seq"] = e.seq;
  j["p2p"] = e.p2p;
  j["op"] = to_string(e.op);
  j["has_tensors"] = e.has_tensors;
  j["dtype"] = to_string(e.dtype);
  j["num_tensors"] = e.num_tensors;
  j["numel"] = e.numel;
  j["sizes"] = e.sizes;
  j["root"] = e.root;
  j["peer"] = e.peer;
  j["tag"] = e.tag;
  j["state"] = to_string(e.state);
  j["enqueued_us"] = e.enqueued_us;
  j["started_us"] = e.started_us;
  j["completed_us"] = e.completed_us;
  j["error"] = e.error;
  return j;
}

Entry entry_from_json(const json& j, const std::string& where) {
  if (!j.is_object()) bad(where, "is not an object");
  Entry e;
  e.id = get_int<uint64_t>(j, "id", where);
  e.group = get_string(j, "group", where);
  e.seq = get_int<uint64_t>(j, "seq", where);
  e.p2p = get_bool(j, "p2p", where);
  try {
    e.op = parse_op_type(get_string(j, "op", where));
    e.dtype = parse_dtype(get_string(j, "dtype", where));
  } catch (const InvalidArgument& error) {
    bad(where, error.what());
  }
  e.has_tensors = get_bool(j, "has_tensors", where);
  e.num_tensors = get_int<int32_t>(j, "num_tensors", where);
  e.numel = get_int<int64_t>(j, "numel", where);
  const json& sizes = get_array(j, "sizes", where);
  if (sizes.size() > static_cast<size_t>(kMaxRecordedDims)) {
    bad(where + ".sizes", fmt::format("has more than {} entries", kMaxRecordedDims));
  }
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (!sizes[i].is_number_integer())
      bad(fmt::format("{}.sizes[{}]", where, i), "is not an integer");
    e.sizes.push_back(sizes[i].get<int64_t>());
  }
  e.root = get_int<int32_t>(j, "root", where);
  e.peer = get_int<int32_t>(j, "peer", where);
  e.tag = get_int<int32_t>(j, "tag", where);
  e.state = parse_state(get_string(j, "state", where), where);
  e.enqueued_us = get_int<int64_t>(j, "enqueued_us", where);
  e.started_us = get_int<int64_t>(j, "started_us", where);
  e.completed_us = get_int<int64_t>(j, "completed_us", where);
  e.error = get_string(j, "error", where);
  return e;
}

}  // namespace

const char* to_string(EntryState state) {
  const auto index = static_cast<size_t>(state);
  return index < kStateNames.size() ? kStateNames[index] : "unknown";
}

OpType parse_op_type(std::string_view name) {
  for (int i = 0; i < kNumOpTypes; ++i) {
    const auto op = static_cast<OpType>(i);
    if (name == to_string(op)) return op;
  }
  throw InvalidArgument(fmt::format("unknown operation '{}'", name));
}

DType parse_dtype(std::string_view name) {
  for (int i = 0; i < kNumDTypes; ++i) {
    const auto dtype = static_cast<DType>(i);
    if (name == to_string(dtype)) return dtype;
  }
  throw InvalidArgument(fmt::format("unknown dtype '{}'", name));
}

std::string to_json(const Dump& dump) {
  json j;
  j["format"] = "tutti-trace";
  j["version"] = dump.version;
  j["rank"] = dump.rank;
  j["world_size"] = dump.world_size;
  j["pid"] = dump.pid;
  j["hostname"] = dump.hostname;
  j["reason"] = dump.reason;
  j["dumped_us"] = dump.dumped_us;
  j["capacity"] = dump.capacity;
  j["dropped"] = dump.dropped;
  json groups = json::array();
  for (const auto& g : dump.groups) {
    groups.push_back({{"name", g.name},
                      {"rank", g.rank},
                      {"size", g.size},
                      {"collectives", g.collectives},
                      {"p2p", g.p2p}});
  }
  j["groups"] = std::move(groups);
  json entries = json::array();
  for (const auto& e : dump.entries) entries.push_back(entry_to_json(e));
  j["entries"] = std::move(entries);
  // Replace invalid UTF-8 (an error message may carry any bytes).
  return j.dump(1, ' ', false, json::error_handler_t::replace) + "\n";
}

Dump parse_trace_dump(std::string_view text) {
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) bad("text", "is not valid JSON");
  const std::string where = "dump";
  if (!j.is_object()) bad(where, "is not a JSON object");
  if (get_string(j, "format", where) != "tutti-trace") bad(where, "is not a tutti-trace dump");
  Dump dump;
  dump.version = get_int<int>(j, "version", where);
  if (dump.version != kFormatVersion) {
    bad(where, fmt::format("has format version {}; this tool reads version {}", dump.version,
                           kFormatVersion));
  }
  dump.rank = get_int<int>(j, "rank", where);
  dump.world_size = get_int<int>(j, "world_size", where);
  if (dump.world_size < 0) bad(where + ".world_size", "is negative");
  dump.pid = get_int<int64_t>(j, "pid", where);
  dump.hostname = get_string(j, "hostname", where);
  dump.reason = get_string(j, "reason", where);
  dump.dumped_us = get_int<int64_t>(j, "dumped_us", where);
  dump.capacity = get_int<uint64_t>(j, "capacity", where);
  dump.dropped = get_int<uint64_t>(j, "dropped", where);
  const json& groups = get_array(j, "groups", where);
  for (size_t i = 0; i < groups.size(); ++i) {
    const std::string at = fmt::format("dump.groups[{}]", i);
    if (!groups[i].is_object()) bad(at, "is not an object");
    GroupInfo g;
    g.name = get_string(groups[i], "name", at);
    g.rank = get_int<int>(groups[i], "rank", at);
    g.size = get_int<int>(groups[i], "size", at);
    if (g.size < 1 || g.rank < 0 || g.rank >= g.size) {
      bad(at, fmt::format("has rank {} outside a group of size {}", g.rank, g.size));
    }
    g.collectives = get_int<uint64_t>(groups[i], "collectives", at);
    g.p2p = get_int<uint64_t>(groups[i], "p2p", at);
    dump.groups.push_back(std::move(g));
  }
  const json& entries = get_array(j, "entries", where);
  dump.entries.reserve(entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    dump.entries.push_back(entry_from_json(entries[i], fmt::format("dump.entries[{}]", i)));
  }
  return dump;
}

}  // namespace tutti::trace
