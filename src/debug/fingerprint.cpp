#include "debug/fingerprint.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cstring>
#include <map>

#include "tutti/errors.hpp"

namespace tutti::debug {
namespace {

Fingerprint make(OpType op) {
  Fingerprint fp;
  fp.op = op;
  return fp;
}

void add(Fingerprint& fp, std::string name, std::string value) {
  fp.fields.push_back({std::move(name), std::move(value)});
}

std::string shape_of(const std::vector<int64_t>& sizes) {
  return fmt::format("[{}]", fmt::join(sizes, ", "));
}

std::string device_suffix(Device device) {
  return device.type == DeviceType::CPU ? std::string() : fmt::format("@{}", to_string(device));
}

std::string rank_list(const std::vector<int>& ranks) {
  return fmt::format("rank{} {}", ranks.size() > 1 ? "s" : "", fmt::join(ranks, ", "));
}

// ------------------------------------------------------------ serialization

class Writer {
 public:
  void u64(uint64_t v) { append(&v, sizeof v); }
  void i64s(const std::vector<int64_t>& v) {
    u64(v.size());
    append(v.data(), v.size() * sizeof(int64_t));
  }
  void str(const std::string& s) {
    u64(s.size());
    append(s.data(), s.size());
  }
  std::vector<uint8_t> take() { return std::move(bytes_); }

 private:
  void append(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    bytes_.insert(bytes_.end(), b, b + n);
  }
  std::vector<uint8_t> bytes_;
};

class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  uint64_t u64() {
    uint64_t v = 0;
    take(&v, sizeof v);
    return v;
  }
  std::vector<int64_t> i64s() {
    const uint64_t n = count(sizeof(int64_t));
    std::vector<int64_t> v(n);
    take(v.data(), n * sizeof(int64_t));
    return v;
  }
  std::string str() {
    std::string s(count(1), '\0');
    take(s.data(), s.size());
    return s;
  }

 private:
  uint64_t count(size_t item) {
    const uint64_t n = u64();
    if (n > (size_ - offset_) / item) malformed();
    return n;
  }
  void take(void* out, size_t n) {
    if (n > size_ - offset_) malformed();
    if (n > 0) std::memcpy(out, data_ + offset_, n);
    offset_ += n;
  }
  [[noreturn]] void malformed() const {
    throw DistBackendError(fmt::format(
        "DETAIL check: a peer's fingerprint of {} bytes is malformed (at byte {}); are all "
        "ranks running the same build of tutti?",
        size_, offset_));
  }
  const uint8_t* data_;
  size_t size_;
  size_t offset_ = 0;
};

bool same_call(const Fingerprint& a, const Fingerprint& b) {
  if (a.op != b.op || a.sequence != b.sequence || a.fields.size() != b.fields.size()) return false;
  for (size_t i = 0; i < a.fields.size(); ++i) {
    if (a.fields[i].name != b.fields[i].name || a.fields[i].value != b.fields[i].value) {
      return false;
    }
  }
  return true;
}

const std::string* find_field(const Fingerprint& fp, const std::string& name) {
  for (const auto& f : fp.fields) {
    if (f.name == name) return &f.value;
  }
  return nullptr;
}

// "op (allreduce vs broadcast), root_rank (absent vs 0)"
std::string differences(const Fingerprint& a, const Fingerprint& b) {
  std::vector<std::string> parts;
  if (a.op != b.op) parts.push_back(fmt::format("op ({} vs {})", to_string(a.op), to_string(b.op)));
  if (a.sequence != b.sequence) {
    parts.push_back(fmt::format("sequence number (#{} vs #{})", a.sequence, b.sequence));
  }
  std::vector<std::string> names;
  for (const auto& f : a.fields) names.push_back(f.name);
  for (const auto& f : b.fields) {
    if (find_field(a, f.name) == nullptr) names.push_back(f.name);
  }
  for (const auto& name : names) {
    const std::string* va = find_field(a, name);
    const std::string* vb = find_field(b, name);
    if (va && vb && *va == *vb) continue;
    parts.push_back(fmt::format("{} ({} vs {})", name, va ? *va : "absent", vb ? *vb : "absent"));
  }
  return fmt::format("{}", fmt::join(parts, ", "));
}

std::string cross_check(const std::vector<Fingerprint>& prints) {
  std::vector<std::string> problems;
  size_t total = 0;
  const size_t n = prints.size();
  for (size_t r = 0; r < n; ++r) {
    for (size_t j = 0; j < n; ++j) {
      const auto& sends = prints[r].send_counts;
      const auto& recvs = prints[j].recv_counts;
      if (sends.size() != n || recvs.size() != n || sends[j] == recvs[r]) continue;
      if (++total > 4) continue;
      problems.push_back(fmt::format(
          "rank {} sends {} {} to rank {} ({}[{}]) but rank {} expects {} from rank {} ({}[{}])", r,
          sends[j], prints[r].unit, j, prints[r].send_source, j, j, recvs[r], r,
          prints[j].recv_source, r));
    }
  }
  if (total == 0) return {};
  std::string text =
      fmt::format("{} #{} disagrees between senders and receivers: {}", to_string(prints[0].op),
                  prints[0].sequence, fmt::join(problems, "; "));
  if (total > problems.size()) text += fmt::format("; and {} more pairs", total - problems.size());
  return text;
}

}  // namespace

uint64_t Fingerprint::hash() const {
  // FNV-1a over the op and the fields.
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    for (size_t i = 0; i < n; ++i) {
      h ^= b[i];
      h *= 1099511628211ull;
    }
  };
  const auto o = static_cast<uint8_t>(op);
  mix(&o, 1);
  for (const auto& f : fields) {
    mix(f.name.data(), f.name.size());
    mix("=", 1);
    mix(f.value.data(), f.value.size());
    mix(";", 1);
  }
  return h;
}

std::vector<uint8_t> Fingerprint::serialize() const {
  Writer w;
  w.u64(static_cast<uint64_t>(op));
  w.u64(sequence);
  w.u64(fields.size());
  for (const auto& f : fields) {
    w.str(f.name);
    w.str(f.value);
  }
  w.i64s(send_counts);
  w.i64s(recv_counts);
  w.str(unit);
  w.str(send_source);
  w.str(recv_source);
  return w.take();
}

Fingerprint Fingerprint::deserialize(const uint8_t* data, size_t size) {
  Reader r(data, size);
  Fingerprint fp;
  const uint64_t op = r.u64();
  fp.op = op < static_cast<uint64_t>(kNumOpTypes) ? static_cast<OpType>(op) : OpType::UNKNOWN;
  fp.sequence = r.u64();
  const uint64_t n = r.u64();
  for (uint64_t i = 0; i < n && i < 4096; ++i) {
    Field f;
    f.name = r.str();
    f.value = r.str();
    fp.fields.push_back(std::move(f));
  }
  fp.send_counts = r.i64s();
  fp.recv_counts = r.i64s();
  fp.unit = r.str();
  fp.send_source = r.str();
  fp.recv_source = r.str();
  return fp;
}

std::string Fingerprint::call() const {
  std::vector<std::string> args;
  for (const auto& f : fields) args.push_back(fmt::format("{}={}", f.name, f.value));
  return fmt::format("{}({})", to_string(op), fmt::join(args, ", "));
}

std::string describe_tensor(const Tensor& t) {
  return fmt::format("{}{}{}", to_string(t.dtype()), shape_of(t.sizes()),
                     device_suffix(t.device()));
}

std::string describe_list(const std::vector<Tensor>& tensors) {
  if (tensors.empty()) return "(none)";
  std::vector<std::string> runs;
  size_t i = 0;
  while (i < tensors.size()) {
    const std::string one = describe_tensor(tensors[i]);
    size_t j = i + 1;
    while (j < tensors.size() && describe_tensor(tensors[j]) == one) ++j;
    runs.push_back(j - i > 1 ? fmt::format("{} x{}", one, j - i) : one);
    i = j;
  }
  return fmt::format("{}", fmt::join(runs, ", "));
}

std::string describe_lists(const std::vector<std::vector<Tensor>>& lists) {
  std::vector<std::string> parts;
  for (const auto& list : lists) parts.push_back(fmt::format("[{}]", describe_list(list)));
  return parts.empty() ? "(none)" : fmt::format("{}", fmt::join(parts, ", "));
}

std::string describe_reduce_op(const ReduceOp& op) {
  // The factor may differ between ranks; only its presence is part of the op.
  return op.kind == ReduceOp::PREMUL_SUM ? "premul_sum (with a factor)" : to_string(op.kind);
}

Fingerprint fingerprint_broadcast(const std::vector<Tensor>& tensors, const BroadcastOptions& o) {
  Fingerprint fp = make(OpType::BROADCAST);
  add(fp, "tensors", describe_list(tensors));
  add(fp, "root_rank", std::to_string(o.root_rank));
  add(fp, "root_tensor", std::to_string(o.root_tensor));
  return fp;
}

Fingerprint fingerprint_allreduce(OpType op, const std::vector<Tensor>& tensors,
                                  const ReduceOp& reduce_op) {
  Fingerprint fp = make(op);
  add(fp, "tensors", describe_list(tensors));
  add(fp, "reduce_op", describe_reduce_op(reduce_op));
  return fp;
}

Fingerprint fingerprint_allreduce_sparse(const std::vector<SparseTensor>& tensors,
                                         const ReduceOp& reduce_op) {
  Fingerprint fp = make(OpType::ALLREDUCE_SPARSE);
  std::vector<std::string> parts;
  for (const auto& t : tensors) {
    // nnz differs between ranks by design; sizes, dtype and the split into
    // sparse and dense dimensions must not.
    parts.push_back(fmt::format("sparse {}{} sparse_dim={}{}", to_string(t.dtype()),
                                shape_of(t.sizes()), t.sparse_dim(),
                                device_suffix(t.values().device())));
  }
  add(fp, "tensors", parts.empty() ? "(none)" : fmt::format("{}", fmt::join(parts, ", ")));
  add(fp, "reduce_op", describe_reduce_op(reduce_op));
  return fp;
}

Fingerprint fingerprint_reduce(const std::vector<Tensor>& tensors, const ReduceOptions& o) {
  Fingerprint fp = make(OpType::REDUCE);
  add(fp, "tensors", describe_list(tensors));
  add(fp, "reduce_op", describe_reduce_op(o.reduce_op));
  add(fp, "root_rank", std::to_string(o.root_rank));
  add(fp, "root_tensor", std::to_string(o.root_tensor));
  return fp;
}

Fingerprint fingerprint_lists(OpType op, const char* lists_name,
                              const std::vector<std::vector<Tensor>>& lists, const char* flat_name,
                              const std::vector<Tensor>& flat) {
  Fingerprint fp = make(op);
  add(fp, lists_name, describe_lists(lists));
  add(fp, flat_name, describe_list(flat));
  return fp;
}

Fingerprint fingerprint_flat(OpType op, const std::vector<Tensor>& outputs,
                             const std::vector<Tensor>& inputs) {
  Fingerprint fp = make(op);
  add(fp, outputs.size() == 1 ? "output" : "outputs", describe_list(outputs));
  add(fp, inputs.size() == 1 ? "input" : "inputs", describe_list(inputs));
  return fp;
}

Fingerprint fingerprint_gather(const std::vector<Tensor>& inputs, const GatherOptions& o) {
  // Only the root passes output lists; the root checks them against its
  // inputs, which must equal everyone's.
  Fingerprint fp = make(OpType::GATHER);
  add(fp, "inputs", describe_list(inputs));
  add(fp, "root_rank", std::to_string(o.root_rank));
  return fp;
}

Fingerprint fingerprint_scatter(const std::vector<Tensor>& outputs, const ScatterOptions& o) {
  Fingerprint fp = make(OpType::SCATTER);
  add(fp, "outputs", describe_list(outputs));
  add(fp, "root_rank", std::to_string(o.root_rank));
  return fp;
}

Fingerprint fingerprint_alltoall_base(const Tensor& output, const Tensor& input,
                                      const std::vector<int64_t>& output_split_sizes,
                                      const std::vector<int64_t>& input_split_sizes,
                                      int world_size) {
  Fingerprint fp = make(OpType::ALLTOALL_BASE);
  // Dimension 0 and the splits differ between ranks by design; the rows
  // must agree, and what r sends to j must be what j expects from r.
  std::vector<int64_t> row(input.sizes().begin() + (input.dim() > 0 ? 1 : 0), input.sizes().end());
  const std::string row_text =
      fmt::format("{}[*{}{}]{}", to_string(input.dtype()), row.empty() ? "" : ", ",
                  fmt::join(row, ", "), device_suffix(input.device()));
  add(fp, "rows", row_text);
  auto counts = [world_size](const Tensor& t, const std::vector<int64_t>& splits) {
    if (!splits.empty()) return splits;
    const int64_t rows = t.dim() > 0 ? t.size(0) : 0;
    return std::vector<int64_t>(static_cast<size_t>(world_size), rows / world_size);
  };
  fp.send_counts = counts(input, input_split_sizes);
  fp.recv_counts = counts(output, output_split_sizes);
  fp.unit = fmt::format("rows of {}", row_text);
  fp.send_source =
      input_split_sizes.empty() ? "input_split_sizes (equal parts)" : "input_split_sizes";
  fp.recv_source =
      output_split_sizes.empty() ? "output_split_sizes (equal parts)" : "output_split_sizes";
  return fp;
}

Fingerprint fingerprint_alltoall(const std::vector<Tensor>& outputs,
                                 const std::vector<Tensor>& inputs) {
  Fingerprint fp = make(OpType::ALLTOALL);
  add(fp, "dtype", inputs.empty() ? "(none)" : to_string(inputs[0].dtype()));
  add(fp, "tensors per list", std::to_string(inputs.size()));
  fp.unit = "elements";
  for (const auto& t : inputs) fp.send_counts.push_back(t.numel());
  for (const auto& t : outputs) fp.recv_counts.push_back(t.numel());
  fp.send_source = "inputs";
  fp.recv_source = "outputs";
  return fp;
}

Fingerprint fingerprint_barrier(OpType op) { return make(op); }

std::string compare(const std::vector<Fingerprint>& prints) {
  if (prints.empty()) return {};
  // Ranks that called the same thing, in order of their lowest rank.
  std::vector<std::vector<int>> classes;
  for (size_t r = 0; r < prints.size(); ++r) {
    bool placed = false;
    for (auto& c : classes) {
      if (same_call(prints[static_cast<size_t>(c[0])], prints[r])) {
        c.push_back(static_cast<int>(r));
        placed = true;
        break;
      }
    }
    if (!placed) classes.push_back({static_cast<int>(r)});
  }
  if (classes.size() == 1) return cross_check(prints);
  const auto& ref = prints[static_cast<size_t>(classes[0][0])];
  std::vector<std::string> clauses;
  for (size_t i = 1; i < classes.size(); ++i) {
    const auto& other = prints[static_cast<size_t>(classes[i][0])];
    clauses.push_back(fmt::format("{} call{} {} as #{}; they differ in {}", rank_list(classes[i]),
                                  classes[i].size() > 1 ? "" : "s", other.call(), other.sequence,
                                  differences(ref, other)));
  }
  return fmt::format("{} call{} {} as #{} but {}", rank_list(classes[0]),
                     classes[0].size() > 1 ? "" : "s", ref.call(), ref.sequence,
                     fmt::join(clauses, "; but "));
}

}  // namespace tutti::debug
