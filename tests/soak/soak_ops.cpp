#include "soak/soak_ops.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "collectives/reference.hpp"
#include "collectives/suite.hpp"

namespace tutti::soak {
namespace {

using testing::compare_input;
using testing::compare_reduced;
using testing::make_input;

// Data that is not reduced: the SUM input pattern of "rank" `who`.
Tensor data(DType dtype, int who, int64_t count, int64_t offset = 0) {
  return make_input(dtype, ReduceOp::SUM, who, count, offset);
}
std::string compare_data(const Tensor& t, int who, int64_t offset = 0) {
  return compare_input(t, ReduceOp::SUM, who, offset);
}

// Relative frequencies: allreduce and broadcast dominate real jobs.
constexpr int kWeights[kNumKinds] = {
    8,  // Allreduce
    1,  // AllreduceCoalesced
    3,  // Broadcast
    2,  // Reduce
    2,  // Allgather
    2,  // AllgatherIntoTensor
    1,  // AllgatherCoalesced
    1,  // AllgatherIntoTensorCoalesced
    1,  // Gather
    1,  // Scatter
    1,  // ReduceScatter
    2,  // ReduceScatterTensor
    1,  // ReduceScatterTensorCoalesced
    1,  // AlltoallBase
    1,  // AlltoallBaseUneven
    1,  // Alltoall
    3,  // SendRecv
    1,  // RecvAnysource
    1,  // Barrier
    1,  // AllreduceSparse
};

bool reduces(Kind k) {
  switch (k) {
    case Kind::Allreduce:
    case Kind::AllreduceCoalesced:
    case Kind::Reduce:
    case Kind::ReduceScatter:
    case Kind::ReduceScatterTensor:
    case Kind::ReduceScatterTensorCoalesced:
      return true;
    default:
      return false;
  }
}

// Ops whose message is every rank's block together: each block is smaller.
bool gathers(Kind k) {
  switch (k) {
    case Kind::Allgather:
    case Kind::AllgatherIntoTensor:
    case Kind::AllgatherCoalesced:
    case Kind::AllgatherIntoTensorCoalesced:
    case Kind::Gather:
    case Kind::Scatter:
    case Kind::ReduceScatter:
    case Kind::ReduceScatterTensor:
    case Kind::ReduceScatterTensorCoalesced:
    case Kind::AlltoallBase:
    case Kind::AlltoallBaseUneven:
    case Kind::Alltoall:
      return true;
    default:
      return false;
  }
}

// Collects the first failure of several comparisons.
struct Failures {
  std::string text;
  void add(const std::string& diff, const std::string& where) {
    if (!diff.empty() && text.empty()) text = where + ": " + diff;
  }
};

int64_t rows(int s, int d, int64_t count) { return (s + d + count) % 3; }

}  // namespace

const char* to_string(Kind kind) {
  static constexpr const char* kNames[kNumKinds] = {"allreduce",
                                                    "allreduce_coalesced",
                                                    "broadcast",
                                                    "reduce",
                                                    "allgather",
                                                    "allgather_into_tensor",
                                                    "allgather_coalesced",
                                                    "allgather_into_tensor_coalesced",
                                                    "gather",
                                                    "scatter",
                                                    "reduce_scatter",
                                                    "reduce_scatter_tensor",
                                                    "reduce_scatter_tensor_coalesced",
                                                    "alltoall_base",
                                                    "alltoall_base_uneven",
                                                    "alltoall",
                                                    "send_recv",
                                                    "recv_anysource",
                                                    "barrier",
                                                    "allreduce_sparse"};
  return kNames[static_cast<int>(kind)];
}

std::string describe(const Draw& d) {
  return fmt::format("{} {}[{}] op={} root={} peer={} offset={} tag={}", to_string(d.kind),
                     tutti::to_string(d.dtype), d.count, to_string(d.op.kind), d.root, d.peer,
                     d.offset, d.tag);
}

Draw Drawer::draw(int size, int64_t max_bytes, int tag) {
  Draw d;
  int total = 0;
  for (int w : kWeights) total += w;
  int pick = static_cast<int>(below(static_cast<uint64_t>(total)));
  int k = 0;
  while (pick >= kWeights[k]) pick -= kWeights[k++];
  d.kind = static_cast<Kind>(k);
  d.dtype = static_cast<DType>(below(kNumDTypes));
  const auto ops = testing::reduce_ops_for(d.dtype);
  d.op = ops[below(ops.size())];
  if (!reduces(d.kind)) d.op = ReduceOp::SUM;
  // log2(bytes) uniform in [0, log2(max_bytes)]: most operations are small,
  // as in training loops, and some reach max_bytes.
  const double exponent = std::log2(static_cast<double>(max_bytes)) *
                          static_cast<double>(below(1 << 20)) / double(1 << 20);
  const auto bytes = static_cast<int64_t>(std::exp2(exponent));
  d.count = below(20) == 0 ? 0 : std::max<int64_t>(1, bytes / itemsize(d.dtype));
  if (gathers(d.kind)) d.count /= size;
  d.offset = static_cast<int64_t>(below(testing::kInputPeriod));
  d.root = static_cast<int>(below(static_cast<uint64_t>(size)));
  d.peer = static_cast<int>(below(static_cast<uint64_t>(size)));
  if (size > 1 && d.peer == d.root) d.peer = (d.root + 1) % size;
  d.tag = tag;
  return d;
}

Issued issue(ProcessGroup& pg, const Draw& d) {
  const int rank = pg.rank();
  const int size = pg.size();
  const DType dt = d.dtype;
  const int64_t n = d.count;
  const int64_t off = d.offset;
  const ReduceOp op = d.op;
  const std::string at = fmt::format("{} on rank {}/{}", describe(d), rank, size);
  Issued out;
  switch (d.kind) {
    case Kind::Allreduce: {
      std::vector<Tensor> t = {make_input(dt, op, rank, n, off)};
      out.works.push_back(pg.allreduce(t, {.reduce_op = op}));
      out.check = [=] { return compare_reduced(t[0], op, size, off); };
      break;
    }
    case Kind::AllreduceCoalesced: {
      // Three tensors; tensor k covers reference indices from offs[k].
      const std::vector<int64_t> counts = {n, 1, n / 3};
      std::vector<Tensor> t;
      std::vector<int64_t> offs;
      int64_t at_index = off;
      for (int64_t c : counts) {
        t.push_back(make_input(dt, op, rank, c, at_index));
        offs.push_back(at_index);
        at_index += c;
      }
      out.works.push_back(pg.allreduce_coalesced(t, {{.reduce_op = op}}));
      out.check = [=] {
        Failures f;
        for (size_t k = 0; k < t.size(); ++k) {
          f.add(compare_reduced(t[k], op, size, offs[k]), fmt::format("tensor {}", k));
        }
        return f.text;
      };
      break;
    }
    case Kind::Broadcast: {
      std::vector<Tensor> t = {data(dt, rank, n, off)};
      out.works.push_back(pg.broadcast(t, {.root_rank = d.root}));
      out.check = [=, root = d.root] { return compare_data(t[0], root, off); };
      break;
    }
    case Kind::Reduce: {
      std::vector<Tensor> t = {make_input(dt, op, rank, n, off)};
      out.works.push_back(pg.reduce(t, {.reduce_op = op, .root_rank = d.root}));
      out.check = [=, root = d.root] {
        // Non-roots' tensors are unspecified afterwards.
        return rank == root ? compare_reduced(t[0], op, size, off) : std::string();
      };
      break;
    }
    case Kind::Allgather: {
      std::vector<Tensor> in = {data(dt, rank, n, off)};
      auto outs = std::make_shared<std::vector<std::vector<Tensor>>>(1);
      for (int r = 0; r < size; ++r) (*outs)[0].push_back(Tensor::zeros({n}, dt));
      out.works.push_back(pg.allgather(*outs, in));
      out.check = [=] {
        Failures f;
        for (int r = 0; r < size; ++r) {
          f.add(compare_data((*outs)[0][static_cast<size_t>(r)], r, off),
                fmt::format("from {}", r));
        }
        return f.text;
      };
      break;
    }
    case Kind::AllgatherIntoTensor: {
      Tensor in = data(dt, rank, n, off);
      Tensor flat = Tensor::zeros({size * n}, dt);
      out.works.push_back(pg.allgather_into_tensor(flat, in));
      out.check = [=] {
        Failures f;
        for (int r = 0; r < size; ++r) {
          f.add(compare_data(flat.narrow(0, r * n, n), r, off), fmt::format("from {}", r));
        }
        return f.text;
      };
      break;
    }
    case Kind::AllgatherCoalesced: {
      // Inputs of different sizes and dtypes.
      std::vector<Tensor> in = {data(dt, rank, n, off), data(DType::Int64, rank, 3, off)};
      auto lists = std::make_shared<std::vector<std::vector<Tensor>>>(static_cast<size_t>(size));
      for (auto& list : *lists) list = {Tensor::zeros({n}, dt), Tensor::zeros({3}, DType::Int64)};
      out.works.push_back(pg.allgather_coalesced(*lists, in));
      out.check = [=] {
        Failures f;
        for (int r = 0; r < size; ++r) {
          f.add(compare_data((*lists)[static_cast<size_t>(r)][0], r, off), "tensor 0");
          f.add(compare_data((*lists)[static_cast<size_t>(r)][1], r, off), "tensor 1");
        }
        return f.text;
      };
      break;
    }
    case Kind::AllgatherIntoTensorCoalesced: {
      std::vector<Tensor> in = {data(dt, rank, n, off), data(dt, rank + size, 2, off)};
      std::vector<Tensor> flats = {Tensor::zeros({size * n}, dt), Tensor::zeros({size * 2}, dt)};
      out.works.push_back(pg.allgather_into_tensor_coalesced(flats, in));
      out.check = [=] {
        Failures f;
        for (int r = 0; r < size; ++r) {
          f.add(compare_data(flats[0].narrow(0, r * n, n), r, off), "tensor 0");
          f.add(compare_data(flats[1].narrow(0, r * 2, 2), r + size, off), "tensor 1");
        }
        return f.text;
      };
      break;
    }
    case Kind::Gather: {
      std::vector<Tensor> in = {data(dt, rank, n, off)};
      auto outs = std::make_shared<std::vector<std::vector<Tensor>>>();
      if (rank == d.root) {
        outs->resize(1);
        for (int r = 0; r < size; ++r) (*outs)[0].push_back(Tensor::zeros({n}, dt));
      }
      out.works.push_back(pg.gather(*outs, in, {.root_rank = d.root}));
      out.check = [=] {
        Failures f;
        if (outs->empty()) return f.text;
        for (int r = 0; r < size; ++r) {
          f.add(compare_data((*outs)[0][static_cast<size_t>(r)], r, off),
                fmt::format("from {}", r));
        }
        return f.text;
      };
      break;
    }
    case Kind::Scatter: {
      // The root sends rank r the data of "rank" r + 100.
      std::vector<Tensor> received = {Tensor::zeros({n}, dt)};
      std::vector<std::vector<Tensor>> sources;
      if (rank == d.root) {
        sources.resize(1);
        for (int r = 0; r < size; ++r) sources[0].push_back(data(dt, r + 100, n, off));
      }
      out.works.push_back(pg.scatter(received, sources, {.root_rank = d.root}));
      out.check = [=] { return compare_data(received[0], rank + 100, off); };
      break;
    }
    case Kind::ReduceScatter: {
      std::vector<Tensor> outs = {Tensor::zeros({n}, dt)};
      std::vector<std::vector<Tensor>> ins(1);
      for (int r = 0; r < size; ++r) ins[0].push_back(make_input(dt, op, rank, n, off + r * n));
      out.works.push_back(pg.reduce_scatter(outs, ins, {.reduce_op = op}));
      out.check = [=] { return compare_reduced(outs[0], op, size, off + rank * n); };
      break;
    }
    case Kind::ReduceScatterTensor: {
      Tensor in = make_input(dt, op, rank, n * size, off);
      Tensor result = Tensor::zeros({n}, dt);
      out.works.push_back(pg.reduce_scatter_tensor(result, in, {.reduce_op = op}));
      out.check = [=] {
        Failures f;
        f.add(compare_reduced(result, op, size, off + rank * n), "output");
        f.add(compare_input(in, op, rank, off), "the input was modified");
        return f.text;
      };
      break;
    }
    case Kind::ReduceScatterTensorCoalesced: {
      std::vector<Tensor> outs = {Tensor::zeros({n}, dt), Tensor::zeros({1}, dt)};
      std::vector<Tensor> ins = {make_input(dt, op, rank, n * size, off),
                                 make_input(dt, op, rank, size, off + 7)};
      out.works.push_back(pg.reduce_scatter_tensor_coalesced(outs, ins, {.reduce_op = op}));
      out.check = [=] {
        Failures f;
        f.add(compare_reduced(outs[0], op, size, off + rank * n), "tensor 0");
        f.add(compare_reduced(outs[1], op, size, off + 7 + rank), "tensor 1");
        return f.text;
      };
      break;
    }
    case Kind::AlltoallBase: {
      // The block rank s sends to rank d is data "rank" s * 100 + d.
      Tensor in = Tensor::empty({size * n}, dt);
      for (int r = 0; r < size; ++r) in.narrow(0, r * n, n).copy_(data(dt, rank * 100 + r, n, off));
      Tensor result = Tensor::zeros({size * n}, dt);
      out.works.push_back(pg.alltoall_base(result, in, {}, {}));
      out.check = [=] {
        Failures f;
        for (int s = 0; s < size; ++s) {
          f.add(compare_data(result.narrow(0, s * n, n), s * 100 + rank, off),
                fmt::format("from {}", s));
        }
        return f.text;
      };
      break;
    }
    case Kind::AlltoallBaseUneven: {
      // Rank s sends rows(s, d) rows of two elements to rank d.
      std::vector<int64_t> in_splits, out_splits;
      int64_t in_rows = 0, out_rows = 0;
      for (int r = 0; r < size; ++r) {
        in_splits.push_back(rows(rank, r, n));
        out_splits.push_back(rows(r, rank, n));
        in_rows += rows(rank, r, n);
        out_rows += rows(r, rank, n);
      }
      Tensor in = Tensor::empty({in_rows, 2}, dt);
      int64_t row = 0;
      for (int r = 0; r < size; ++r) {
        in.narrow(0, row, rows(rank, r, n))
            .copy_(data(dt, rank * 100 + r, rows(rank, r, n) * 2, off));
        row += rows(rank, r, n);
      }
      Tensor result = Tensor::zeros({out_rows, 2}, dt);
      out.works.push_back(pg.alltoall_base(result, in, out_splits, in_splits));
      out.check = [=] {
        Failures f;
        int64_t at_row = 0;
        for (int s = 0; s < size; ++s) {
          f.add(compare_data(result.narrow(0, at_row, rows(s, rank, n)), s * 100 + rank, off),
                fmt::format("from {}", s));
          at_row += rows(s, rank, n);
        }
        return f.text;
      };
      break;
    }
    case Kind::Alltoall: {
      // Rank s sends rank d a tensor of n / 2 + (s + d) % 5 elements.
      auto len = [n](int s, int dst) { return n / 2 + (s + dst) % 5; };
      std::vector<Tensor> ins, outs;
      for (int r = 0; r < size; ++r) ins.push_back(data(dt, rank * 100 + r, len(rank, r), off));
      for (int s = 0; s < size; ++s) outs.push_back(Tensor::zeros({len(s, rank)}, dt));
      out.works.push_back(pg.alltoall(outs, ins));
      out.check = [=] {
        Failures f;
        for (int s = 0; s < size; ++s) {
          f.add(compare_data(outs[static_cast<size_t>(s)], s * 100 + rank, off),
                fmt::format("from {}", s));
        }
        return f.text;
      };
      break;
    }
    case Kind::SendRecv: {
      // d.peer sends to d.root; the other ranks take no part.
      if (size == 1) break;
      if (rank == d.peer) {
        std::vector<Tensor> t = {data(dt, rank, n, off)};
        out.works.push_back(pg.send(t, d.root, d.tag));
      } else if (rank == d.root) {
        std::vector<Tensor> t = {Tensor::zeros({n}, dt)};
        out.works.push_back(pg.recv(t, d.peer, d.tag));
        out.check = [=, peer = d.peer] { return compare_data(t[0], peer, off); };
      }
      break;
    }
    case Kind::RecvAnysource: {
      // Every other rank sends to d.root, which learns who sent each.
      if (size == 1) break;
      if (rank != d.root) {
        std::vector<Tensor> t = {data(dt, rank, n, off)};
        out.works.push_back(pg.send(t, d.root, d.tag));
        break;
      }
      std::vector<Tensor> received;
      for (int i = 1; i < size; ++i) {
        std::vector<Tensor> t = {Tensor::zeros({n}, dt)};
        out.works.push_back(pg.recv_anysource(t, d.tag));
        received.push_back(t[0]);
      }
      out.check = [=, works = out.works] {
        Failures f;
        std::set<int> seen;
        for (size_t i = 0; i < works.size(); ++i) {
          const int source = works[i]->source_rank();
          if (source < 0 || source >= size || source == rank || !seen.insert(source).second) {
            f.add(fmt::format("source rank {}", source), "recv_anysource");
            continue;
          }
          f.add(compare_data(received[i], source, off), fmt::format("from {}", source));
        }
        return f.text;
      };
      break;
    }
    case Kind::Barrier:
      out.works.push_back(pg.barrier());
      break;
    case Kind::AllreduceSparse: {
      // Rank r holds rows {r % 8, 5} of an [8, 2] tensor with values
      // 10 r + row + col (row 5 on every rank: duplicates are summed).
      const std::vector<int64_t> mine = {rank % 8, 5};
      Tensor indices = Tensor::empty({1, 2}, DType::Int64);
      Tensor values = Tensor::empty({2, 2}, DType::Float64);
      for (int64_t i = 0; i < 2; ++i) {
        indices.data<int64_t>()[i] = mine[static_cast<size_t>(i)];
        for (int64_t c = 0; c < 2; ++c)
          values.data<double>()[i * 2 + c] = 10.0 * rank + mine[i] + c;
      }
      std::vector<SparseTensor> t = {SparseTensor(indices, values, {8, 2})};
      auto work = pg.allreduce_sparse(t);
      out.works.push_back(work);
      out.check = [=] {
        auto result = work->result();
        if (result.size() != 2) return fmt::format("{} result tensors, not 2", result.size());
        Tensor dense = SparseTensor(result[0], result[1], {8, 2}).to_dense();
        for (int64_t row = 0; row < 8; ++row) {
          for (int64_t c = 0; c < 2; ++c) {
            double want = 0;
            for (int r = 0; r < size; ++r) {
              if (row == r % 8) want += 10.0 * r + row + c;
              if (row == 5) want += 10.0 * r + row + c;
            }
            if (dense.data<double>()[row * 2 + c] != want) {
              return fmt::format("[{}, {}] is {}, not {}", row, c,
                                 dense.data<double>()[row * 2 + c], want);
            }
          }
        }
        return std::string();
      };
      break;
    }
  }
  if (!out.check) out.check = [] { return std::string(); };
  auto check = std::move(out.check);
  out.check = [check, at] {
    std::string diff = check();
    return diff.empty() ? diff : at + ": " + diff;
  };
  return out;
}

}  // namespace tutti::soak
