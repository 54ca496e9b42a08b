// MpiBackend's collectives: the checks of MPI's own (counts fit in an int),
// then one queued job of blocking MPI calls. The ProcessGroup has already
// checked everything that does not depend on the backend.
//
// AVG is SUM then a division by the number of contributions; PREMUL_SUM
// scales the contribution first (a copy where the input must stay intact).
#include <fmt/format.h>

#include <climits>
#include <cstring>

#include "backends/mpi/backend.hpp"
#include "backends/mpi/runtime.hpp"
#include "backends/mpi/work.hpp"
#include "core/pack.hpp"
#include "core/reduce.hpp"
#include "tutti/errors.hpp"

namespace tutti::mpi_backend {
namespace {

// A list of one output (one copy of the tensor; a braced list makes two).
std::vector<Tensor> single(const Tensor& output) {
  std::vector<Tensor> outputs;
  outputs.reserve(1);
  outputs.push_back(output);
  return outputs;
}

// MPI counts are ints.
int count_of(int64_t n, OpType op) {
  if (n > INT_MAX) {
    throw InvalidArgument(fmt::format(
        "{} on backend 'mpi': {} elements exceed MPI's count limit of {}; split the tensor",
        to_string(op), n, INT_MAX));
  }
  return static_cast<int>(n);
}

int elements(const Tensor& t, OpType op) { return count_of(t.numel(), op); }

// Makes `t` the contribution of this rank to a SUM for `op`.
void premultiply(Tensor& t, const ReduceOp& op) {
  if (op.kind == ReduceOp::PREMUL_SUM && t.numel() > 0) {
    kernels::scale(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()), t.dtype(),
                   op.factor);
  }
}

// A copy of `t` premultiplied for `op`, or `t` itself when nothing changes.
Tensor contribution(const Tensor& t, const ReduceOp& op) {
  if (op.kind != ReduceOp::PREMUL_SUM) return t;
  Tensor copy = t.clone();
  premultiply(copy, op);
  return copy;
}

void finish_average(Tensor& t, const ReduceOp& op, int64_t contributions) {
  if (op.kind == ReduceOp::AVG && t.numel() > 0) {
    kernels::divide(t.data_ptr(), static_cast<size_t>(t.numel()), t.dtype(), contributions);
  }
}

MPI_Op mpi_op(const ReduceOp& op, DType dtype) {
  return mpi_backend::op(kernels::combine_kind(op), dtype);
}

// Several local tensors reduce to one contribution: their combination.
Tensor combine_local(const std::vector<Tensor>& tensors, const ReduceOp& op) {
  Tensor acc = tensors[0].clone();
  premultiply(acc, op);
  for (size_t i = 1; i < tensors.size(); ++i) {
    Tensor next = contribution(tensors[i], op);
    kernels::combine_into(acc.data_ptr(), next.data_ptr(), static_cast<size_t>(acc.numel()),
                          acc.dtype(), kernels::combine_kind(op));
  }
  return acc;
}

const uint8_t* bytes_of(const Tensor& t) { return static_cast<const uint8_t*>(t.data_ptr()); }

bool overlaps(const Tensor& a, const Tensor& b) {
  if (a.nbytes() == 0 || b.nbytes() == 0) return false;
  return bytes_of(a) < bytes_of(b) + b.nbytes() && bytes_of(b) < bytes_of(a) + a.nbytes();
}

// Elements per rank of an alltoall with split sizes along dimension 0.
void split_counts(const std::vector<int64_t>& splits, const Tensor& t, int size, OpType op,
                  std::vector<int>* counts, std::vector<int>* displs) {
  const int64_t rows = t.dim() == 0 ? 1 : t.size(0);
  const int64_t row = rows == 0 ? 0 : t.numel() / rows;
  int64_t offset = 0;
  for (int r = 0; r < size; ++r) {
    const int64_t part = splits.empty() ? rows / size : splits[static_cast<size_t>(r)];
    counts->push_back(count_of(part * row, op));
    displs->push_back(count_of(offset, op));
    offset += part * row;
  }
}

// One collective call: blocking, or (polls) nonblocking and completed by
// await_request() within the operation's deadline. `buffers()` gives the
// tensors MPI reads and writes: past the deadline, the request stays with
// MPI and they are kept alive with it (asked for only when polling).
template <class Buffers, class Blocking, class Nonblocking>
void call_collective(bool polls, const char* name, Buffers buffers, Blocking blocking,
                     Nonblocking nonblocking) {
  if (!polls) {
    CallLock call;
    check(blocking(), name);
    return;
  }
  MPI_Request request = MPI_REQUEST_NULL;
  {
    CallLock call;
    check(nonblocking(&request), name);
  }
  await_request(&request, name, buffers());
}

// This rank's block of the reduction of every rank's `input` into `output`
// (n elements), with AVG and PREMUL_SUM applied.
void reduce_scatter_block(Tensor& output, const Tensor& input, int n, const ReduceOp& op,
                          int64_t contributions, MPI_Comm comm) {
  const DType dtype = output.dtype();
  Tensor in = contribution(input, op);
  // MPI forbids overlapping send and receive buffers.
  if (in.data_ptr() == input.data_ptr() && overlaps(input, output)) in = input.clone();
  {
    CallLock call;
    check(MPI_Reduce_scatter_block(in.data_ptr(), output.data_ptr(), n, datatype(dtype),
                                   mpi_op(op, dtype), comm),
          "MPI_Reduce_scatter_block");
  }
  finish_average(output, op, contributions);
}

}  // namespace

std::shared_ptr<Work> MpiBackend::broadcast(std::vector<Tensor>& tensors,
                                            const BroadcastOptions& opts) {
  const int root = static_cast<int>(opts.root_rank);
  const size_t source = rank() == root ? static_cast<size_t>(opts.root_tensor) : 0;
  const int n = elements(tensors[0], OpType::BROADCAST);
  const MPI_Comm comm = comm_;
  const bool polls = polls_for(tensors[0].nbytes());
  return enqueue(
      OpType::BROADCAST, opts.timeout, tensors,
      [source, n, root, comm, polls](std::vector<Tensor>& tensors) {
        Tensor& data = tensors[source];
        void* buffer = data.data_ptr();
        const MPI_Datatype type = datatype(data.dtype());
        call_collective(
            polls, "MPI_Bcast", [&] { return std::vector<Tensor>{data}; },
            [&] { return MPI_Bcast(buffer, n, type, root, comm); },
            [&](MPI_Request* r) { return MPI_Ibcast(buffer, n, type, root, comm, r); });
        for (size_t i = 0; i < tensors.size(); ++i) {
          if (i != source) Tensor(tensors[i]).copy_(data);
        }
      },
      polls);
}

std::shared_ptr<Work> MpiBackend::allreduce(std::vector<Tensor>& tensors,
                                            const AllreduceOptions& opts) {
  const ReduceOp op = opts.reduce_op;
  const int n = elements(tensors[0], OpType::ALLREDUCE);
  const int64_t contributions = static_cast<int64_t>(size()) * static_cast<int64_t>(tensors.size());
  const MPI_Comm comm = comm_;
  const bool polls = polls_for(tensors[0].nbytes());
  return enqueue(
      OpType::ALLREDUCE, opts.timeout, tensors,
      [op, n, contributions, comm, polls](std::vector<Tensor>& tensors) {
        Tensor combined;
        if (tensors.size() > 1) combined = combine_local(tensors, op);
        Tensor& data = tensors.size() == 1 ? tensors[0] : combined;
        if (tensors.size() == 1) premultiply(data, op);
        void* buffer = data.data_ptr();
        const MPI_Datatype type = datatype(data.dtype());
        const MPI_Op mop = mpi_op(op, data.dtype());
        call_collective(
            polls, "MPI_Allreduce", [&] { return std::vector<Tensor>{data}; },
            [&] { return MPI_Allreduce(MPI_IN_PLACE, buffer, n, type, mop, comm); },
            [&](MPI_Request* r) {
              return MPI_Iallreduce(MPI_IN_PLACE, buffer, n, type, mop, comm, r);
            });
        finish_average(data, op, contributions);
        for (const auto& t : tensors) {
          if (t.data_ptr() != data.data_ptr()) Tensor(t).copy_(data);
        }
      },
      polls);
}

std::shared_ptr<Work> MpiBackend::allreduce_coalesced(std::vector<Tensor>& tensors,
                                                      const AllreduceCoalescedOptions& opts) {
  const ReduceOp op = opts.reduce_op;
  int64_t total = 0;
  for (const auto& t : tensors) total += t.numel();
  const int n = count_of(total, OpType::ALLREDUCE_COALESCED);
  const int64_t contributions = size();
  const MPI_Comm comm = comm_;
  return enqueue(OpType::ALLREDUCE_COALESCED, opts.timeout, tensors,
                 [tensors, op, n, contributions, comm]() mutable {
                   const DType dtype = tensors[0].dtype();
                   Tensor flat = pack(tensors, dtype);
                   premultiply(flat, op);
                   {
                     CallLock call;
                     check(MPI_Allreduce(MPI_IN_PLACE, flat.data_ptr(), n, datatype(dtype),
                                         mpi_op(op, dtype), comm),
                           "MPI_Allreduce");
                   }
                   finish_average(flat, op, contributions);
                   unpack(flat, 0, tensors);
                 });
}

std::shared_ptr<Work> MpiBackend::reduce(std::vector<Tensor>& tensors, const ReduceOptions& opts) {
  const ReduceOp op = opts.reduce_op;
  const int root = static_cast<int>(opts.root_rank);
  const size_t target = rank() == root ? static_cast<size_t>(opts.root_tensor) : 0;
  const int n = elements(tensors[0], OpType::REDUCE);
  const bool is_root = rank() == root;
  const int64_t contributions = static_cast<int64_t>(size()) * static_cast<int64_t>(tensors.size());
  const MPI_Comm comm = comm_;
  return enqueue(OpType::REDUCE, opts.timeout, tensors,
                 [tensors, op, root, target, n, is_root, contributions, comm] {
                   Tensor mine = tensors.size() == 1 ? contribution(tensors[0], op)
                                                     : combine_local(tensors, op);
                   const DType dtype = mine.dtype();
                   if (is_root) {
                     Tensor out = tensors[target];
                     if (out.data_ptr() != mine.data_ptr()) out.copy_(mine);
                     {
                       CallLock call;
                       check(MPI_Reduce(MPI_IN_PLACE, out.data_ptr(), n, datatype(dtype),
                                        mpi_op(op, dtype), root, comm),
                             "MPI_Reduce");
                     }
                     finish_average(out, op, contributions);
                     return;
                   }
                   CallLock call;
                   check(MPI_Reduce(mine.data_ptr(), nullptr, n, datatype(dtype), mpi_op(op, dtype),
                                    root, comm),
                         "MPI_Reduce");
                 });
}

std::shared_ptr<Work> MpiBackend::allgather(std::vector<std::vector<Tensor>>& outputs,
                                            std::vector<Tensor>& inputs,
                                            const AllgatherOptions& opts) {
  // Rank r's inputs land in outputs[i][r], one per input i.
  std::vector<std::vector<Tensor>> by_rank(static_cast<size_t>(size()));
  for (auto& list : outputs) {
    for (size_t r = 0; r < by_rank.size(); ++r) by_rank[r].push_back(list[r]);
  }
  return allgather_packed(OpType::ALLGATHER, opts.timeout, inputs, std::move(by_rank));
}

std::shared_ptr<Work> MpiBackend::allgather_packed(OpType op, std::chrono::milliseconds timeout,
                                                   const std::vector<Tensor>& inputs,
                                                   std::vector<std::vector<Tensor>> by_rank) {
  int64_t per_rank = 0;
  for (const auto& t : inputs) per_rank += static_cast<int64_t>(t.nbytes());
  count_of(per_rank * size(), op);
  const int bytes = static_cast<int>(per_rank);
  std::vector<Tensor> flat_outputs;
  for (const auto& list : by_rank)
    flat_outputs.insert(flat_outputs.end(), list.begin(), list.end());
  const MPI_Comm comm = comm_;
  return enqueue(op, timeout, flat_outputs, [by_rank, inputs, bytes, comm]() mutable {
    const int64_t ranks = static_cast<int64_t>(by_rank.size());
    Tensor in = pack(inputs);
    Tensor out = Tensor::empty({static_cast<int64_t>(bytes) * ranks}, DType::UInt8);
    {
      CallLock call;
      check(MPI_Allgather(in.data_ptr(), bytes, MPI_BYTE, out.data_ptr(), bytes, MPI_BYTE, comm),
            "MPI_Allgather");
    }
    // out holds, for each rank, its inputs one after the other.
    for (size_t r = 0; r < by_rank.size(); ++r) {
      unpack(out, r * static_cast<size_t>(bytes), by_rank[r]);
    }
  });
}

std::shared_ptr<Work> MpiBackend::allgather_into_tensor(Tensor& output, Tensor& input,
                                                        const AllgatherOptions& opts) {
  const int n = elements(input, OpType::ALLGATHER_INTO_TENSOR);
  elements(output, OpType::ALLGATHER_INTO_TENSOR);
  const MPI_Comm comm = comm_;
  const size_t own_offset = static_cast<size_t>(rank()) * input.nbytes();
  const bool polls = polls_for(input.nbytes());
  return enqueue(
      OpType::ALLGATHER_INTO_TENSOR, opts.timeout, single(output),
      [input, n, comm, own_offset, polls](std::vector<Tensor>& outputs) {
        Tensor& output = outputs[0];
        const MPI_Datatype type = datatype(input.dtype());
        const void* send = input.data_ptr();
        Tensor copy;
        if (overlaps(input, output)) {
          if (bytes_of(input) == bytes_of(output) + own_offset) {
            send = MPI_IN_PLACE;  // the input is this rank's slot of the output
          } else {
            copy = input.clone();
            send = copy.data_ptr();
          }
        }
        void* recv = output.data_ptr();
        call_collective(
            polls, "MPI_Allgather",
            [&] {
              return std::vector<Tensor>{input, output, copy};
            },
            [&] { return MPI_Allgather(send, n, type, recv, n, type, comm); },
            [&](MPI_Request* r) { return MPI_Iallgather(send, n, type, recv, n, type, comm, r); });
      },
      polls);
}

std::shared_ptr<Work> MpiBackend::allgather_coalesced(
    std::vector<std::vector<Tensor>>& output_lists, std::vector<Tensor>& inputs,
    const AllgatherOptions& opts) {
  return allgather_packed(OpType::ALLGATHER_COALESCED, opts.timeout, inputs, output_lists);
}

std::shared_ptr<Work> MpiBackend::allgather_into_tensor_coalesced(std::vector<Tensor>& outputs,
                                                                  std::vector<Tensor>& inputs,
                                                                  const AllgatherOptions& opts) {
  std::vector<int> counts;
  for (const auto& t : outputs) elements(t, OpType::ALLGATHER_INTO_TENSOR_COALESCED);
  for (const auto& t : inputs)
    counts.push_back(elements(t, OpType::ALLGATHER_INTO_TENSOR_COALESCED));
  const MPI_Comm comm = comm_;
  return enqueue(OpType::ALLGATHER_INTO_TENSOR_COALESCED, opts.timeout, outputs,
                 [outputs, inputs, counts, comm]() mutable {
                   for (size_t i = 0; i < inputs.size(); ++i) {
                     const Tensor in =
                         overlaps(inputs[i], outputs[i]) ? inputs[i].clone() : inputs[i];
                     const MPI_Datatype type = datatype(in.dtype());
                     CallLock call;
                     check(MPI_Allgather(in.data_ptr(), counts[i], type, outputs[i].data_ptr(),
                                         counts[i], type, comm),
                           "MPI_Allgather");
                   }
                 });
}

std::shared_ptr<Work> MpiBackend::gather(std::vector<std::vector<Tensor>>& outputs,
                                         std::vector<Tensor>& inputs, const GatherOptions& opts) {
  const int root = static_cast<int>(opts.root_rank);
  const int n = elements(inputs[0], OpType::GATHER);
  count_of(inputs[0].numel() * size(), OpType::GATHER);
  const bool is_root = rank() == root;
  std::vector<Tensor> results = is_root ? outputs[0] : std::vector<Tensor>{};
  const MPI_Comm comm = comm_;
  const int ranks = size();
  return enqueue(OpType::GATHER, opts.timeout, results,
                 [results, inputs, root, n, is_root, ranks, comm]() mutable {
                   const Tensor& in = inputs[0];
                   const MPI_Datatype type = datatype(in.dtype());
                   Tensor flat;
                   if (is_root) {
                     flat = Tensor::empty({static_cast<int64_t>(n) * ranks}, in.dtype());
                   }
                   {
                     CallLock call;
                     check(MPI_Gather(in.data_ptr(), n, type, is_root ? flat.data_ptr() : nullptr,
                                      n, type, root, comm),
                           "MPI_Gather");
                   }
                   if (is_root) {
                     unpack(flat, 0, results);
                   }
                 });
}

std::shared_ptr<Work> MpiBackend::scatter(std::vector<Tensor>& outputs,
                                          std::vector<std::vector<Tensor>>& inputs,
                                          const ScatterOptions& opts) {
  const int root = static_cast<int>(opts.root_rank);
  const int n = elements(outputs[0], OpType::SCATTER);
  count_of(outputs[0].numel() * size(), OpType::SCATTER);
  const bool is_root = rank() == root;
  std::vector<Tensor> sources = is_root ? inputs[0] : std::vector<Tensor>{};
  const MPI_Comm comm = comm_;
  return enqueue(OpType::SCATTER, opts.timeout, outputs,
                 [outputs, sources, root, n, is_root, comm]() mutable {
                   Tensor out = outputs[0];
                   const MPI_Datatype type = datatype(out.dtype());
                   Tensor flat = is_root ? pack(sources) : Tensor();
                   CallLock call;
                   check(MPI_Scatter(is_root ? flat.data_ptr() : nullptr, n, type, out.data_ptr(),
                                     n, type, root, comm),
                         "MPI_Scatter");
                 });
}

std::shared_ptr<Work> MpiBackend::reduce_scatter(std::vector<Tensor>& outputs,
                                                 std::vector<std::vector<Tensor>>& inputs,
                                                 const ReduceScatterOptions& opts) {
  const ReduceOp op = opts.reduce_op;
  const int n = elements(outputs[0], OpType::REDUCE_SCATTER);
  count_of(outputs[0].numel() * size(), OpType::REDUCE_SCATTER);
  const MPI_Comm comm = comm_;
  const int64_t contributions = size();
  return enqueue(OpType::REDUCE_SCATTER, opts.timeout, outputs,
                 [outputs, list = inputs[0], op, n, contributions, comm]() mutable {
                   Tensor out = outputs[0];
                   const DType dtype = out.dtype();
                   Tensor flat = pack(list, dtype);
                   premultiply(flat, op);
                   {
                     CallLock call;
                     check(MPI_Reduce_scatter_block(flat.data_ptr(), out.data_ptr(), n,
                                                    datatype(dtype), mpi_op(op, dtype), comm),
                           "MPI_Reduce_scatter_block");
                   }
                   finish_average(out, op, contributions);
                 });
}

std::shared_ptr<Work> MpiBackend::reduce_scatter_tensor(Tensor& output, Tensor& input,
                                                        const ReduceScatterOptions& opts) {
  const ReduceOp op = opts.reduce_op;
  const int n = elements(output, OpType::REDUCE_SCATTER_TENSOR);
  elements(input, OpType::REDUCE_SCATTER_TENSOR);
  const MPI_Comm comm = comm_;
  const int64_t contributions = size();
  return enqueue(OpType::REDUCE_SCATTER_TENSOR, opts.timeout, single(output),
                 [input, op, n, contributions, comm](std::vector<Tensor>& outputs) {
                   reduce_scatter_block(outputs[0], input, n, op, contributions, comm);
                 });
}

std::shared_ptr<Work> MpiBackend::reduce_scatter_tensor_coalesced(
    std::vector<Tensor>& outputs, std::vector<Tensor>& inputs, const ReduceScatterOptions& opts) {
  const ReduceOp op = opts.reduce_op;
  std::vector<int> counts;
  for (const auto& t : inputs) elements(t, OpType::REDUCE_SCATTER_TENSOR_COALESCED);
  for (const auto& t : outputs)
    counts.push_back(elements(t, OpType::REDUCE_SCATTER_TENSOR_COALESCED));
  const MPI_Comm comm = comm_;
  const int64_t contributions = size();
  return enqueue(OpType::REDUCE_SCATTER_TENSOR_COALESCED, opts.timeout, outputs,
                 [outputs, inputs, counts, op, contributions, comm]() mutable {
                   for (size_t i = 0; i < inputs.size(); ++i) {
                     reduce_scatter_block(outputs[i], inputs[i], counts[i], op, contributions,
                                          comm);
                   }
                 });
}

std::shared_ptr<Work> MpiBackend::alltoall_base(Tensor& output, Tensor& input,
                                                std::vector<int64_t> output_split_sizes,
                                                std::vector<int64_t> input_split_sizes,
                                                const AllToAllOptions& opts) {
  std::vector<int> send_counts, send_displs, recv_counts, recv_displs;
  split_counts(input_split_sizes, input, size(), OpType::ALLTOALL_BASE, &send_counts, &send_displs);
  split_counts(output_split_sizes, output, size(), OpType::ALLTOALL_BASE, &recv_counts,
               &recv_displs);
  elements(input, OpType::ALLTOALL_BASE);
  elements(output, OpType::ALLTOALL_BASE);
  const bool equal = output_split_sizes.empty() && input_split_sizes.empty();
  const MPI_Comm comm = comm_;
  return enqueue(
      OpType::ALLTOALL_BASE, opts.timeout, single(output),
      [input, equal, send_counts, send_displs, recv_counts, recv_displs,
       comm](std::vector<Tensor>& outputs) {
        Tensor& output = outputs[0];
        const MPI_Datatype type = datatype(input.dtype());
        Tensor in = overlaps(input, output) ? input.clone() : input;
        CallLock call;
        if (equal) {
          check(MPI_Alltoall(in.data_ptr(), send_counts[0], type, output.data_ptr(), recv_counts[0],
                             type, comm),
                "MPI_Alltoall");
          return;
        }
        check(MPI_Alltoallv(in.data_ptr(), send_counts.data(), send_displs.data(), type,
                            output.data_ptr(), recv_counts.data(), recv_displs.data(), type, comm),
              "MPI_Alltoallv");
      });
}

std::shared_ptr<Work> MpiBackend::alltoall(std::vector<Tensor>& outputs,
                                           std::vector<Tensor>& inputs,
                                           const AllToAllOptions& opts) {
  std::vector<int> send_counts, send_displs, recv_counts, recv_displs;
  int64_t offset = 0;
  for (const auto& t : inputs) {
    send_counts.push_back(count_of(static_cast<int64_t>(t.nbytes()), OpType::ALLTOALL));
    send_displs.push_back(count_of(offset, OpType::ALLTOALL));
    offset += static_cast<int64_t>(t.nbytes());
  }
  offset = 0;
  for (const auto& t : outputs) {
    recv_counts.push_back(count_of(static_cast<int64_t>(t.nbytes()), OpType::ALLTOALL));
    recv_displs.push_back(count_of(offset, OpType::ALLTOALL));
    offset += static_cast<int64_t>(t.nbytes());
  }
  const int64_t out_total = offset;
  const MPI_Comm comm = comm_;
  return enqueue(OpType::ALLTOALL, opts.timeout, outputs,
                 [outputs, inputs, send_counts, send_displs, recv_counts, recv_displs, out_total,
                  comm]() mutable {
                   Tensor in = pack(inputs);
                   Tensor out = Tensor::empty({out_total}, DType::UInt8);
                   {
                     CallLock call;
                     check(MPI_Alltoallv(in.data_ptr(), send_counts.data(), send_displs.data(),
                                         MPI_BYTE, out.data_ptr(), recv_counts.data(),
                                         recv_displs.data(), MPI_BYTE, comm),
                           "MPI_Alltoallv");
                   }
                   unpack(out, 0, outputs);
                 });
}

std::shared_ptr<Work> MpiBackend::barrier(const BarrierOptions& opts) {
  const MPI_Comm comm = comm_;
  const bool polls = polls_for(0);
  return enqueue(
      OpType::BARRIER, opts.timeout, {},
      [comm, polls] {
        call_collective(
            polls, "MPI_Barrier", [] { return std::vector<Tensor>{}; },
            [&] { return MPI_Barrier(comm); },
            [&](MPI_Request* r) { return MPI_Ibarrier(comm, r); });
      },
      polls);
}

}  // namespace tutti::mpi_backend
