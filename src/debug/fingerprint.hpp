// Fingerprint: what every rank must agree on about one collective call, and
// the report that says where ranks disagree.
//
// A fingerprint is the op, its sequence number in the group, and named
// fields rendered as text ("tensors" -> "float32[4] x2", "root_rank" ->
// "0"). Only what must be equal on every rank goes into the fields: gather
// and scatter lists that only the root passes are left out, and so is a
// sparse tensor's nnz. The alltoall forms add per-peer counts that are
// cross-checked instead (what rank r sends to j must be what j expects from
// r).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tutti/options.hpp"
#include "tutti/tensor.hpp"
#include "tutti/work.hpp"

namespace tutti::debug {

struct Field {
  std::string name;
  std::string value;
};

struct Fingerprint {
  OpType op = OpType::UNKNOWN;
  uint64_t sequence = 0;
  std::vector<Field> fields;
  // alltoall forms only: how much this rank sends to / expects from each
  // rank, in `unit`, and the argument each count comes from.
  std::vector<int64_t> send_counts;
  std::vector<int64_t> recv_counts;
  std::string unit;
  std::string send_source;  // "input_split_sizes"
  std::string recv_source;  // "output_split_sizes"

  bool cross_checked() const { return !send_counts.empty() || !recv_counts.empty(); }
  // 64-bit hash of the op and the fields (not the sequence number).
  uint64_t hash() const;
  std::vector<uint8_t> serialize() const;
  // Throws DistBackendError on malformed input.
  static Fingerprint deserialize(const uint8_t* data, size_t size);
  // "allreduce(tensors=float32[4], reduce_op=sum)"
  std::string call() const;
};

// "float32[4]", "bfloat16[2, 3]@cuda:0"
std::string describe_tensor(const Tensor& t);
// Runs of equal tensors folded: "float32[4] x3, int64[2]"; "(none)" if empty.
std::string describe_list(const std::vector<Tensor>& tensors);
std::string describe_lists(const std::vector<std::vector<Tensor>>& lists);
std::string describe_reduce_op(const ReduceOp& op);

// One builder per operation. Each takes what the Backend call takes.
Fingerprint fingerprint_broadcast(const std::vector<Tensor>& tensors, const BroadcastOptions& o);
Fingerprint fingerprint_allreduce(OpType op, const std::vector<Tensor>& tensors,
                                  const ReduceOp& reduce_op);
Fingerprint fingerprint_allreduce_sparse(const std::vector<SparseTensor>& tensors,
                                         const ReduceOp& reduce_op);
Fingerprint fingerprint_reduce(const std::vector<Tensor>& tensors, const ReduceOptions& o);
// allgather, allgather_coalesced, reduce_scatter (lists of lists).
Fingerprint fingerprint_lists(OpType op, const char* lists_name,
                              const std::vector<std::vector<Tensor>>& lists, const char* flat_name,
                              const std::vector<Tensor>& flat);
// The *_tensor and *_tensor_coalesced forms.
Fingerprint fingerprint_flat(OpType op, const std::vector<Tensor>& outputs,
                             const std::vector<Tensor>& inputs);
Fingerprint fingerprint_gather(const std::vector<Tensor>& inputs, const GatherOptions& o);
Fingerprint fingerprint_scatter(const std::vector<Tensor>& outputs, const ScatterOptions& o);
Fingerprint fingerprint_alltoall_base(const Tensor& output, const Tensor& input,
                                      const std::vector<int64_t>& output_split_sizes,
                                      const std::vector<int64_t>& input_split_sizes,
                                      int world_size);
Fingerprint fingerprint_alltoall(const std::vector<Tensor>& outputs,
                                 const std::vector<Tensor>& inputs);
Fingerprint fingerprint_barrier(OpType op);

// The disagreements among `prints` (one per rank, in rank order), as
// sentences naming the ranks and each differing field with both values;
// empty if they agree.
std::string compare(const std::vector<Fingerprint>& prints);

}  // namespace tutti::debug
