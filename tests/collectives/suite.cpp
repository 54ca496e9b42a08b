#include "collectives/suite.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cstring>

#include "collectives/reference.hpp"

namespace tutti::testing {
namespace {

constexpr int64_t kOddCount = 1001;
constexpr size_t kLargeBytes = size_t{4} << 20;

std::string where(const ProcessGroup& pg, const char* op, DType dtype, ReduceOp rop,
                  int64_t count) {
  return fmt::format("{} {}[{}] op={} on rank {}/{}", op, to_string(dtype), count,
                     to_string(rop.kind), pg.rank(), pg.size());
}

// Data that is not reduced: the plain SUM input pattern.
Tensor data(DType dtype, int rank, int64_t count, int64_t offset = 0) {
  return make_input(dtype, ReduceOp::SUM, rank, count, offset);
}

std::string compare_data(const Tensor& t, int rank, int64_t offset = 0) {
  return compare_input(t, ReduceOp::SUM, rank, offset);
}

// The large size runs every dtype with SUM and every op with float32 and
// bfloat16: the transport path does not depend on the op, the kernels are
// covered for every pair at the smaller sizes, and the full cross product of
// 4 MiB messages on 4 ranks would take minutes on two cores.
bool run_large(DType dtype, ReduceOp op) {
  return op.kind == ReduceOp::SUM || dtype == DType::Float32 || dtype == DType::BFloat16;
}

bool is_large(DType dtype, int64_t count) {
  return static_cast<size_t>(count) * itemsize(dtype) >= (size_t{1} << 20);
}

}  // namespace

std::vector<DType> all_dtypes() {
  std::vector<DType> dtypes;
  for (int d = 0; d < kNumDTypes; ++d) dtypes.push_back(static_cast<DType>(d));
  return dtypes;
}

std::vector<int64_t> suite_counts(DType dtype) {
  return {0, 1, kOddCount, static_cast<int64_t>(kLargeBytes / itemsize(dtype))};
}

std::vector<ReduceOp> reduce_ops_for(DType dtype) {
  std::vector<ReduceOp> ops;
  for (auto kind : {ReduceOp::SUM, ReduceOp::AVG, ReduceOp::PRODUCT, ReduceOp::MIN, ReduceOp::MAX,
                    ReduceOp::BAND, ReduceOp::BOR, ReduceOp::BXOR}) {
    if (supports(ReduceOp(kind), dtype)) ops.emplace_back(kind);
  }
  if (supports(ReduceOp::premul_sum(0.5), dtype)) ops.push_back(ReduceOp::premul_sum(0.5));
  return ops;
}

void check_broadcast(ProcessGroup& pg) {
  for (DType dtype : all_dtypes()) {
    for (int64_t count : suite_counts(dtype)) {
      for (int root = 0; root < pg.size(); ++root) {
        // One root suffices for the large size: the path is the same.
        if (is_large(dtype, count) && root != pg.size() - 1) continue;
        // Two local tensors: the root's second one is the source.
        std::vector<Tensor> tensors = {data(dtype, pg.rank() + 10, count),
                                       data(dtype, pg.rank(), count)};
        pg.broadcast(tensors, {.root_rank = root, .root_tensor = 1})->wait();
        for (const auto& t : tensors) {
          std::string diff = compare_data(t, root);
          ASSERT_TRUE(diff.empty())
              << where(pg, "broadcast", dtype, {}, count) << " root " << root << ": " << diff;
        }
      }
    }
  }
}

void check_allreduce(ProcessGroup& pg) {
  for (DType dtype : all_dtypes()) {
    for (ReduceOp op : reduce_ops_for(dtype)) {
      for (int64_t count : suite_counts(dtype)) {
        std::vector<Tensor> tensors = {make_input(dtype, op, pg.rank(), count)};
        auto work = pg.allreduce(tensors, {.reduce_op = op});
        work->wait();
        std::string diff = compare_reduced(tensors[0], op, pg.size());
        ASSERT_TRUE(diff.empty()) << where(pg, "allreduce", dtype, op, count) << ": " << diff;
        ASSERT_TRUE(work->is_success());
      }
    }
  }
}

void check_allreduce_coalesced(ProcessGroup& pg) {
  for (DType dtype : all_dtypes()) {
    for (ReduceOp op : reduce_ops_for(dtype)) {
      // Three tensors of different sizes; element i of tensor k is reference
      // index offset_k + i.
      const std::vector<int64_t> counts = {3, 0, kOddCount};
      std::vector<Tensor> tensors;
      int64_t offset = 0;
      std::vector<int64_t> offsets;
      for (int64_t c : counts) {
        tensors.push_back(make_input(dtype, op, pg.rank(), c, offset));
        offsets.push_back(offset);
        offset += c;
      }
      pg.allreduce_coalesced(tensors, {{.reduce_op = op}})->wait();
      for (size_t k = 0; k < tensors.size(); ++k) {
        std::string diff = compare_reduced(tensors[k], op, pg.size(), offsets[k]);
        ASSERT_TRUE(diff.empty()) << where(pg, "allreduce_coalesced", dtype, op, counts[k])
                                  << " tensor " << k << ": " << diff;
      }
    }
  }
}

void check_reduce(ProcessGroup& pg) {
  for (DType dtype : all_dtypes()) {
    for (ReduceOp op : reduce_ops_for(dtype)) {
      for (int64_t count : {int64_t{0}, int64_t{1}, kOddCount}) {
        for (int root = 0; root < pg.size(); ++root) {
          std::vector<Tensor> tensors = {make_input(dtype, op, pg.rank(), count)};
          pg.reduce(tensors, {.reduce_op = op, .root_rank = root})->wait();
          if (pg.rank() != root) continue;
          std::string diff = compare_reduced(tensors[0], op, pg.size());
          ASSERT_TRUE(diff.empty())
              << where(pg, "reduce", dtype, op, count) << " root " << root << ": " << diff;
        }
      }
    }
  }
}

void check_allgather(ProcessGroup& pg) {
  const int size = pg.size();
  for (DType dtype : all_dtypes()) {
    for (int64_t count : suite_counts(dtype)) {
      // The message (the output) is count * size elements.
      if (is_large(dtype, count)) count = (count + size - 1) / size;
      const std::string at = where(pg, "allgather", dtype, {}, count);
      // allgather: two inputs, one output list per input.
      std::vector<Tensor> inputs = {data(dtype, pg.rank(), count),
                                    data(dtype, pg.rank() + size, count)};
      std::vector<std::vector<Tensor>> outputs(2);
      for (auto& list : outputs) {
        for (int r = 0; r < size; ++r) list.push_back(Tensor::zeros({count}, dtype));
      }
      pg.allgather(outputs, inputs)->wait();
      for (int r = 0; r < size; ++r) {
        ASSERT_EQ(compare_data(outputs[0][static_cast<size_t>(r)], r), "") << at;
        ASSERT_EQ(compare_data(outputs[1][static_cast<size_t>(r)], r + size), "") << at;
      }
      // allgather_into_tensor.
      Tensor flat = Tensor::zeros({size, count}, dtype);
      pg.allgather_into_tensor(flat, inputs[0])->wait();
      for (int r = 0; r < size; ++r) {
        ASSERT_EQ(compare_data(flat.narrow(0, r, 1), r), "") << at << " (into_tensor)";
      }
      // allgather_into_tensor_coalesced.
      std::vector<Tensor> flats = {Tensor::zeros({size * count}, dtype),
                                   Tensor::zeros({size * count}, dtype)};
      pg.allgather_into_tensor_coalesced(flats, inputs)->wait();
      for (int r = 0; r < size; ++r) {
        ASSERT_EQ(compare_data(flats[1].narrow(0, r * count, count), r + size), "")
            << at << " (into_tensor_coalesced)";
      }
    }
    // allgather_coalesced: inputs of different sizes and dtypes.
    std::vector<Tensor> mixed = {data(dtype, pg.rank(), 5), data(DType::Int64, pg.rank(), 3)};
    std::vector<std::vector<Tensor>> lists(static_cast<size_t>(size));
    for (auto& list : lists) {
      list = {Tensor::zeros({5}, dtype), Tensor::zeros({3}, DType::Int64)};
    }
    pg.allgather_coalesced(lists, mixed)->wait();
    for (int r = 0; r < size; ++r) {
      ASSERT_EQ(compare_data(lists[static_cast<size_t>(r)][0], r), "")
          << where(pg, "allgather_coalesced", dtype, {}, 5);
      ASSERT_EQ(compare_data(lists[static_cast<size_t>(r)][1], r), "")
          << where(pg, "allgather_coalesced", DType::Int64, {}, 3);
    }
  }
}

void check_gather_scatter(ProcessGroup& pg) {
  const int size = pg.size();
  for (DType dtype : all_dtypes()) {
    for (int64_t count : {int64_t{0}, int64_t{1}, kOddCount}) {
      for (int root = 0; root < size; ++root) {
        std::vector<Tensor> inputs = {data(dtype, pg.rank(), count)};
        std::vector<std::vector<Tensor>> outputs;
        if (pg.rank() == root) {
          outputs.resize(1);
          for (int r = 0; r < size; ++r) outputs[0].push_back(Tensor::zeros({count}, dtype));
        }
        pg.gather(outputs, inputs, {.root_rank = root})->wait();
        if (pg.rank() == root) {
          for (int r = 0; r < size; ++r) {
            ASSERT_EQ(compare_data(outputs[0][static_cast<size_t>(r)], r), "")
                << where(pg, "gather", dtype, {}, count) << " root " << root;
          }
        }
        // scatter: the root sends rank r the data of "rank" r + 100.
        std::vector<Tensor> received = {Tensor::zeros({count}, dtype)};
        std::vector<std::vector<Tensor>> sources;
        if (pg.rank() == root) {
          sources.resize(1);
          for (int r = 0; r < size; ++r) sources[0].push_back(data(dtype, r + 100, count));
        }
        pg.scatter(received, sources, {.root_rank = root})->wait();
        ASSERT_EQ(compare_data(received[0], pg.rank() + 100), "")
            << where(pg, "scatter", dtype, {}, count) << " root " << root;
      }
    }
  }
}

void check_reduce_scatter(ProcessGroup& pg) {
  const int size = pg.size();
  for (DType dtype : all_dtypes()) {
    for (ReduceOp op : reduce_ops_for(dtype)) {
      for (int64_t count : suite_counts(dtype)) {
        // The message (the input) is count * size elements: keep it near
        // the suite's size rather than size times larger.
        if (is_large(dtype, count)) {
          if (!run_large(dtype, op)) continue;
          count = (count + size - 1) / size;
        }
        // Rank r's output holds reference indices [r*count, (r+1)*count).
        Tensor input = make_input(dtype, op, pg.rank(), count * size);
        Tensor output = Tensor::zeros({count}, dtype);
        pg.reduce_scatter_tensor(output, input, {.reduce_op = op})->wait();
        ASSERT_EQ(compare_reduced(output, op, size, pg.rank() * count), "")
            << where(pg, "reduce_scatter_tensor", dtype, op, count);
        ASSERT_EQ(compare_input(input, op, pg.rank()), "")
            << where(pg, "reduce_scatter_tensor", dtype, op, count) << " modified its input";
        if (count > kOddCount) continue;  // the list forms repeat the same path
        std::vector<Tensor> outputs = {Tensor::zeros({count}, dtype)};
        std::vector<std::vector<Tensor>> inputs(1);
        for (int r = 0; r < size; ++r) {
          inputs[0].push_back(make_input(dtype, op, pg.rank(), count, r * count));
        }
        pg.reduce_scatter(outputs, inputs, {.reduce_op = op})->wait();
        ASSERT_EQ(compare_reduced(outputs[0], op, size, pg.rank() * count), "")
            << where(pg, "reduce_scatter", dtype, op, count);
        std::vector<Tensor> outs = {Tensor::zeros({count}, dtype), Tensor::zeros({1}, dtype)};
        std::vector<Tensor> ins = {make_input(dtype, op, pg.rank(), count * size),
                                   make_input(dtype, op, pg.rank(), size, 7)};
        pg.reduce_scatter_tensor_coalesced(outs, ins, {.reduce_op = op})->wait();
        ASSERT_EQ(compare_reduced(outs[0], op, size, pg.rank() * count), "")
            << where(pg, "reduce_scatter_tensor_coalesced", dtype, op, count);
        ASSERT_EQ(compare_reduced(outs[1], op, size, 7 + pg.rank()), "")
            << where(pg, "reduce_scatter_tensor_coalesced", dtype, op, 1);
      }
    }
  }
}

void check_alltoall(ProcessGroup& pg) {
  const int size = pg.size();
  const int rank = pg.rank();
  // The block rank s sends to rank d is data "rank" s * 100 + d; element
  // offsets keep blocks apart.
  for (DType dtype : all_dtypes()) {
    for (int64_t count : {int64_t{0}, int64_t{1}, int64_t{333}}) {
      const std::string at = where(pg, "alltoall_base", dtype, {}, count);
      Tensor input = Tensor::empty({size * count, 2}, dtype);
      for (int d = 0; d < size; ++d) {
        input.narrow(0, d * count, count).copy_(data(dtype, rank * 100 + d, count * 2));
      }
      Tensor output = Tensor::zeros({size * count, 2}, dtype);
      pg.alltoall_base(output, input, {}, {})->wait();
      for (int s = 0; s < size; ++s) {
        ASSERT_EQ(compare_data(output.narrow(0, s * count, count), s * 100 + rank), "") << at;
      }
      // Uneven splits: rank s sends (s + d + count) % 3 rows to rank d.
      auto rows = [&](int s, int d) { return static_cast<int64_t>((s + d + count) % 3); };
      std::vector<int64_t> in_splits, out_splits;
      int64_t in_rows = 0, out_rows = 0;
      for (int r = 0; r < size; ++r) {
        in_splits.push_back(rows(rank, r));
        out_splits.push_back(rows(r, rank));
        in_rows += rows(rank, r);
        out_rows += rows(r, rank);
      }
      Tensor uneven_in = Tensor::empty({in_rows, 2}, dtype);
      int64_t at_row = 0;
      for (int d = 0; d < size; ++d) {
        uneven_in.narrow(0, at_row, rows(rank, d))
            .copy_(data(dtype, rank * 100 + d, rows(rank, d) * 2));
        at_row += rows(rank, d);
      }
      Tensor uneven_out = Tensor::zeros({out_rows, 2}, dtype);
      pg.alltoall_base(uneven_out, uneven_in, out_splits, in_splits)->wait();
      at_row = 0;
      for (int s = 0; s < size; ++s) {
        ASSERT_EQ(compare_data(uneven_out.narrow(0, at_row, rows(s, rank)), s * 100 + rank), "")
            << at << " (uneven)";
        at_row += rows(s, rank);
      }
      // alltoall with a list: rank s sends rank d a tensor of s + d + 1 elements.
      std::vector<Tensor> ins, outs;
      for (int d = 0; d < size; ++d) ins.push_back(data(dtype, rank * 100 + d, rank + d + 1));
      for (int s = 0; s < size; ++s) outs.push_back(Tensor::zeros({s + rank + 1}, dtype));
      pg.alltoall(outs, ins)->wait();
      for (int s = 0; s < size; ++s) {
        ASSERT_EQ(compare_data(outs[static_cast<size_t>(s)], s * 100 + rank), "")
            << where(pg, "alltoall", dtype, {}, s + rank + 1);
      }
    }
  }
}

void check_point_to_point(ProcessGroup& pg) {
  const int size = pg.size();
  if (size == 1) return;
  const int rank = pg.rank();
  const int next = (rank + 1) % size;
  const int prev = (rank + size - 1) % size;
  for (DType dtype : {DType::Float32, DType::BFloat16, DType::Int64, DType::Bool}) {
    for (int64_t count : suite_counts(dtype)) {
      // A ring: everyone sends to next and receives from prev, two tags at once.
      std::vector<Tensor> out_a = {data(dtype, rank, count)};
      std::vector<Tensor> out_b = {data(dtype, rank + 50, count)};
      std::vector<Tensor> in_a = {Tensor::zeros({count}, dtype)};
      std::vector<Tensor> in_b = {Tensor::zeros({count}, dtype)};
      auto recv_b = pg.recv(in_b, prev, 2);
      auto recv_a = pg.recv(in_a, prev, 1);
      auto send_a = pg.send(out_a, next, 1);
      auto send_b = pg.send(out_b, next, 2);
      send_a->wait();
      send_b->wait();
      recv_a->wait();
      recv_b->wait();
      ASSERT_EQ(compare_data(in_a[0], prev), "") << where(pg, "send/recv", dtype, {}, count);
      ASSERT_EQ(compare_data(in_b[0], prev + 50), "") << where(pg, "send/recv", dtype, {}, count);
    }
  }
  // recv_anysource: rank 0 hears from every other rank and learns who sent.
  const int tag = 7;
  if (rank == 0) {
    std::vector<bool> seen(static_cast<size_t>(size), false);
    for (int i = 1; i < size; ++i) {
      std::vector<Tensor> in = {Tensor::zeros({4}, DType::Int32)};
      auto work = pg.recv_anysource(in, tag);
      work->wait();
      const int source = work->source_rank();
      ASSERT_GE(source, 1);
      ASSERT_LT(source, size);
      EXPECT_FALSE(seen[static_cast<size_t>(source)]) << "rank " << source << " twice";
      seen[static_cast<size_t>(source)] = true;
      ASSERT_EQ(compare_data(in[0], source), "") << "recv_anysource from " << source;
    }
  } else {
    std::vector<Tensor> out = {data(DType::Int32, rank, 4)};
    pg.send(out, 0, tag)->wait();
  }
}

void check_barrier(ProcessGroup& pg) {
  for (int i = 0; i < 3; ++i) pg.barrier()->wait();
  pg.monitored_barrier({.timeout = std::chrono::seconds(30)}, /*wait_all_ranks=*/true);
}

void check_allreduce_sparse(ProcessGroup& pg) {
  const int size = pg.size();
  const int rank = pg.rank();
  // Rank r holds entries at rows {r, r + 1, 5} of a [8, 2] tensor (row 5 on
  // every rank, so duplicates across ranks are summed); rank 1 holds none.
  auto entries = [](int r) -> std::vector<int64_t> {
    if (r == 1) return {};
    return {r % 8, (r + 1) % 8, 5};
  };
  auto value = [](int r, int64_t row, int64_t col) {
    return static_cast<float>(r * 10 + row + col * 0.5);
  };
  for (DType dtype : {DType::Float32, DType::Float64, DType::Int64}) {
    auto mine = entries(rank);
    const auto nnz = static_cast<int64_t>(mine.size());
    Tensor indices = Tensor::empty({1, nnz}, DType::Int64);
    Tensor values_f = Tensor::empty({nnz, 2}, DType::Float32);
    for (int64_t i = 0; i < nnz; ++i) {
      indices.data<int64_t>()[i] = mine[static_cast<size_t>(i)];
      for (int64_t c = 0; c < 2; ++c) {
        values_f.data<float>()[i * 2 + c] = value(rank, mine[static_cast<size_t>(i)], c);
      }
    }
    Tensor values = Tensor::empty({nnz, 2}, dtype);
    for (int64_t i = 0; i < nnz * 2; ++i) {
      double v = values_f.data<float>()[i];
      if (dtype == DType::Float32) values.data<float>()[i] = static_cast<float>(v);
      if (dtype == DType::Float64) values.data<double>()[i] = v;
      if (dtype == DType::Int64) values.data<int64_t>()[i] = static_cast<int64_t>(v);
    }
    std::vector<SparseTensor> tensors = {SparseTensor(indices, values, {8, 2})};
    auto work = pg.allreduce_sparse(tensors);
    work->wait();
    auto result = work->result();
    ASSERT_EQ(result.size(), 2u);
    SparseTensor sum(result[0], result[1], {8, 2});
    Tensor dense = sum.to_dense();
    for (int64_t row = 0; row < 8; ++row) {
      for (int64_t c = 0; c < 2; ++c) {
        double want = 0;
        for (int r = 0; r < size; ++r) {
          for (int64_t e : entries(r)) {
            if (e != row) continue;
            double v = value(r, row, c);
            want += dtype == DType::Int64 ? static_cast<double>(static_cast<int64_t>(v)) : v;
          }
        }
        EXPECT_EQ(element_value(dense, row * 2 + c), want)
            << "allreduce_sparse " << to_string(dtype) << " row " << row << " col " << c
            << " on rank " << rank;
      }
    }
  }
}

}  // namespace tutti::testing
