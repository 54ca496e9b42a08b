#include "tutti_bench/ops.hpp"

#include <optional>

#include "tutti_bench/pattern.hpp"

namespace tutti::bench {
namespace {

using Tensors = std::vector<Tensor>;

// --------------------------------------------------------------- counts

// nccl-tests' getCollByteCount for each shape of operation; n divides the
// count where the operation splits a buffer into one part per rank.
Counts same_count(int64_t count, int64_t) { return {count, count, count}; }
// allgather, gather: each rank's count/n elements, count/n * n gathered.
Counts gathered(int64_t count, int64_t n) { return {count / n, count / n * n, count / n}; }
// reduce_scatter, scatter: count/n * n elements in, count/n out.
Counts scattered(int64_t count, int64_t n) { return {count / n * n, count / n, count / n}; }
Counts all_to_all(int64_t count, int64_t n) { return {count / n * n, count / n * n, count / n}; }
Counts no_data(int64_t, int64_t) { return {}; }

// ------------------------------------------------------ bus bandwidth

// nccl-tests' doc/PERFORMANCE.md: the factor that turns algorithm bandwidth
// into the bandwidth a link needs, comparable with the hardware's peak.
double allreduce_factor(int n) { return 2.0 * (n - 1) / n; }
double ring_factor(int n) { return static_cast<double>(n - 1) / n; }
double unit_factor(int) { return 1.0; }
double no_factor(int) { return 0.0; }

// ---------------------------------------------------------------- cases

Tensor buffer(int64_t count, DType dtype) { return Tensor::empty({count}, dtype); }

// The n consecutive parts of `count` elements of t, as views.
Tensors parts(const Tensor& t, int n, int64_t count) {
  Tensors views;
  for (int r = 0; r < n; ++r) views.push_back(t.narrow(0, r * count, count));
  return views;
}

class CaseBase : public OpCase {
 protected:
  CaseBase(const CaseParams& p, bool reduces)
      : pg_(*p.pg),
        redop_(p.redop),
        root_(p.root),
        counts_(p.counts),
        rank_(p.pg->rank()),
        size_(p.pg->size()),
        dtype_(p.dtype),
        pattern_(p.dtype, reduces ? std::optional(p.redop) : std::nullopt, p.pg->size()) {}

  // Every wait has a deadline: the group's timeout.
  void wait(const std::shared_ptr<Work>& work) const { work->wait(pg_.timeout()); }

  ProcessGroup& pg_;
  const ReduceOp::Kind redop_;
  const int root_;
  const Counts counts_;
  const int rank_;
  const int size_;
  const DType dtype_;
  const Pattern pattern_;
};

// In place: every rank ends with the reduction of all inputs.
class AllreduceCase final : public CaseBase {
 public:
  explicit AllreduceCase(const CaseParams& p)
      : CaseBase(p, true), data_(buffer(counts_.param, dtype_)) {}
  void fill() override { pattern_.fill(data_, rank_, 0); }
  void run() override {
    Tensors tensors{data_};
    AllreduceOptions opts;
    opts.reduce_op = redop_;
    wait(pg_.allreduce(tensors, opts));
  }
  int64_t count_wrong() const override { return pattern_.count_wrong_reduced(data_, 0); }
  Tensors results() override { return {data_}; }
  std::string call() const override { return "allreduce"; }

 private:
  Tensor data_;
};

// Every rank starts with its own data and ends with the root's.
class BroadcastCase final : public CaseBase {
 public:
  explicit BroadcastCase(const CaseParams& p)
      : CaseBase(p, false), data_(buffer(counts_.param, dtype_)) {}
  void fill() override { pattern_.fill(data_, rank_, 0); }
  void run() override {
    Tensors tensors{data_};
    BroadcastOptions opts;
    opts.root_rank = root_;
    wait(pg_.broadcast(tensors, opts));
  }
  int64_t count_wrong() const override { return pattern_.count_wrong_input(data_, root_, 0); }
  Tensors results() override { return {data_}; }
  std::string call() const override { return "broadcast"; }

 private:
  Tensor data_;
};

// In place; only the root's result is defined, so only the root checks.
class ReduceCase final : public CaseBase {
 public:
  explicit ReduceCase(const CaseParams& p)
      : CaseBase(p, true), data_(buffer(counts_.param, dtype_)) {}
  void fill() override { pattern_.fill(data_, rank_, 0); }
  void run() override {
    Tensors tensors{data_};
    ReduceOptions opts;
    opts.reduce_op = redop_;
    opts.root_rank = root_;
    wait(pg_.reduce(tensors, opts));
  }
  int64_t count_wrong() const override {
    return rank_ == root_ ? pattern_.count_wrong_reduced(data_, 0) : 0;
  }
  Tensors results() override { return rank_ == root_ ? Tensors{data_} : Tensors{}; }
  std::string call() const override { return "reduce"; }

 private:
  Tensor data_;
};

// Part r of every rank's output is rank r's input. Uses the flat-buffer form
// (as NCCL's) where the backend has it, else the list form over views of the
// same buffer.
class AllgatherCase final : public CaseBase {
 public:
  explicit AllgatherCase(const CaseParams& p)
      : CaseBase(p, false),
        input_(buffer(counts_.send, dtype_)),
        output_(buffer(counts_.recv, dtype_)),
        flat_(supports(pg_, OpType::ALLGATHER_INTO_TENSOR)) {}
  void fill() override {
    pattern_.fill(input_, rank_, 0);
    Pattern::poison(output_);
  }
  void run() override {
    if (flat_) {
      wait(pg_.allgather_into_tensor(output_, input_));
      return;
    }
    std::vector<Tensors> outputs{parts(output_, size_, counts_.send)};
    Tensors inputs{input_};
    wait(pg_.allgather(outputs, inputs));
  }
  int64_t count_wrong() const override {
    int64_t wrong = 0;
    const Tensors gathered = parts(output_, size_, counts_.send);
    for (int r = 0; r < size_; ++r) wrong += pattern_.count_wrong_input(gathered[r], r, 0);
    return wrong;
  }
  Tensors results() override { return {output_}; }
  std::string call() const override { return flat_ ? "allgather_into_tensor" : "allgather"; }

  static bool supports(const ProcessGroup& pg, OpType op) {
    auto backend = pg.get_backend(DeviceType::CPU);
    return backend != nullptr && backend->supports(op);
  }

 private:
  Tensor input_;
  Tensor output_;
  bool flat_;
};

// Rank r ends with part r of the reduction of every rank's whole input.
class ReduceScatterCase final : public CaseBase {
 public:
  explicit ReduceScatterCase(const CaseParams& p)
      : CaseBase(p, true),
        input_(buffer(counts_.send, dtype_)),
        output_(buffer(counts_.recv, dtype_)),
        flat_(AllgatherCase::supports(pg_, OpType::REDUCE_SCATTER_TENSOR)) {}
  void fill() override {
    pattern_.fill(input_, rank_, 0);
    Pattern::poison(output_);
  }
  void run() override {
    ReduceScatterOptions opts;
    opts.reduce_op = redop_;
    if (flat_) {
      wait(pg_.reduce_scatter_tensor(output_, input_, opts));
      return;
    }
    Tensors outputs{output_};
    std::vector<Tensors> inputs{parts(input_, size_, counts_.recv)};
    wait(pg_.reduce_scatter(outputs, inputs, opts));
  }
  int64_t count_wrong() const override {
    return pattern_.count_wrong_reduced(output_, rank_ * counts_.recv);
  }
  Tensors results() override { return {output_}; }
  std::string call() const override { return flat_ ? "reduce_scatter_tensor" : "reduce_scatter"; }

 private:
  Tensor input_;
  Tensor output_;
  bool flat_;
};

// Part d of rank s's input goes to rank d, where it becomes part s.
class AlltoallCase final : public CaseBase {
 public:
  explicit AlltoallCase(const CaseParams& p)
      : CaseBase(p, false),
        input_(buffer(counts_.send, dtype_)),
        output_(buffer(counts_.recv, dtype_)) {}
  void fill() override {
    pattern_.fill(input_, rank_, 0);
    Pattern::poison(output_);
  }
  void run() override { wait(pg_.alltoall_base(output_, input_, {}, {})); }
  int64_t count_wrong() const override {
    int64_t wrong = 0;
    const Tensors received = parts(output_, size_, counts_.param);
    for (int s = 0; s < size_; ++s) {
      wrong += pattern_.count_wrong_input(received[s], s, rank_ * counts_.param);
    }
    return wrong;
  }
  Tensors results() override { return {output_}; }
  std::string call() const override { return "alltoall_base"; }

 private:
  Tensor input_;
  Tensor output_;
};

// The root's output holds every rank's input in rank order.
class GatherCase final : public CaseBase {
 public:
  explicit GatherCase(const CaseParams& p)
      : CaseBase(p, false),
        input_(buffer(counts_.send, dtype_)),
        output_(rank_ == root_ ? buffer(counts_.recv, dtype_) : Tensor()) {}
  void fill() override {
    pattern_.fill(input_, rank_, 0);
    if (rank_ == root_) Pattern::poison(output_);
  }
  void run() override {
    std::vector<Tensors> outputs;
    if (rank_ == root_) outputs.push_back(parts(output_, size_, counts_.send));
    Tensors inputs{input_};
    GatherOptions opts;
    opts.root_rank = root_;
    wait(pg_.gather(outputs, inputs, opts));
  }
  int64_t count_wrong() const override {
    if (rank_ != root_) return 0;
    int64_t wrong = 0;
    const Tensors gathered = parts(output_, size_, counts_.send);
    for (int r = 0; r < size_; ++r) wrong += pattern_.count_wrong_input(gathered[r], r, 0);
    return wrong;
  }
  Tensors results() override { return rank_ == root_ ? Tensors{output_} : Tensors{}; }
  std::string call() const override { return "gather"; }

 private:
  Tensor input_;
  Tensor output_;
};

// Rank r receives part r of the root's input.
class ScatterCase final : public CaseBase {
 public:
  explicit ScatterCase(const CaseParams& p)
      : CaseBase(p, false),
        input_(rank_ == root_ ? buffer(counts_.send, dtype_) : Tensor()),
        output_(buffer(counts_.recv, dtype_)) {}
  void fill() override {
    if (rank_ == root_) pattern_.fill(input_, rank_, 0);
    Pattern::poison(output_);
  }
  void run() override {
    Tensors outputs{output_};
    std::vector<Tensors> inputs;
    if (rank_ == root_) inputs.push_back(parts(input_, size_, counts_.recv));
    ScatterOptions opts;
    opts.root_rank = root_;
    wait(pg_.scatter(outputs, inputs, opts));
  }
  int64_t count_wrong() const override {
    return pattern_.count_wrong_input(output_, root_, rank_ * counts_.recv);
  }
  Tensors results() override { return {output_}; }
  std::string call() const override { return "scatter"; }

 private:
  Tensor input_;
  Tensor output_;
};

// Each rank sends to the next and receives from the previous one, both posted
// before either is waited for.
class SendrecvCase final : public CaseBase {
 public:
  explicit SendrecvCase(const CaseParams& p)
      : CaseBase(p, false),
        send_(buffer(counts_.send, dtype_)),
        recv_(buffer(counts_.recv, dtype_)) {}
  void fill() override {
    pattern_.fill(send_, rank_, 0);
    Pattern::poison(recv_);
  }
  void run() override {
    Tensors send{send_}, recv{recv_};
    auto sent = pg_.send(send, next(), kTag);
    auto received = pg_.recv(recv, previous(), kTag);
    wait(sent);
    wait(received);
  }
  int64_t count_wrong() const override { return pattern_.count_wrong_input(recv_, previous(), 0); }
  Tensors results() override { return {recv_}; }
  std::string call() const override { return "send + recv"; }

 private:
  static constexpr int kTag = 0;
  int next() const { return (rank_ + 1) % size_; }
  int previous() const { return (rank_ + size_ - 1) % size_; }

  Tensor send_;
  Tensor recv_;
};

class BarrierCase final : public CaseBase {
 public:
  explicit BarrierCase(const CaseParams& p) : CaseBase(p, false) {}
  void fill() override {}
  void run() override { wait(pg_.barrier()); }
  int64_t count_wrong() const override { return 0; }
  Tensors results() override { return {}; }
  std::string call() const override { return "barrier"; }
};

template <class Case>
std::unique_ptr<OpCase> make(const CaseParams& params) {
  return std::make_unique<Case>(params);
}

}  // namespace

const std::vector<OpSpec>& all_ops() {
  // name, reduces, rooted, sized, min_ranks, counts, bus factor, case
  static const std::vector<OpSpec> ops{
      {"allreduce", true, false, true, 1, same_count, allreduce_factor, make<AllreduceCase>},
      {"broadcast", false, true, true, 1, same_count, unit_factor, make<BroadcastCase>},
      {"reduce", true, true, true, 1, same_count, unit_factor, make<ReduceCase>},
      {"allgather", false, false, true, 1, gathered, ring_factor, make<AllgatherCase>},
      {"reduce_scatter", true, false, true, 1, scattered, ring_factor, make<ReduceScatterCase>},
      {"alltoall", false, false, true, 1, all_to_all, ring_factor, make<AlltoallCase>},
      {"gather", false, true, true, 1, gathered, ring_factor, make<GatherCase>},
      {"scatter", false, true, true, 1, scattered, ring_factor, make<ScatterCase>},
      {"sendrecv", false, false, true, 2, same_count, unit_factor, make<SendrecvCase>},
      {"barrier", false, false, false, 1, no_data, no_factor, make<BarrierCase>},
  };
  return ops;
}

const OpSpec* find_op(std::string_view name) {
  for (const auto& op : all_ops()) {
    if (name == op.name) return &op;
  }
  return nullptr;
}

std::string op_names() {
  std::string names;
  for (const auto& op : all_ops()) names += (names.empty() ? "" : ", ") + std::string(op.name);
  return names;
}

}  // namespace tutti::bench
