// A test-only backend that records every call it receives and completes each
// Work at once. It lets the ProcessGroup's routing, sequence numbers and
// argument checks be tested without any communication.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tutti/backend.hpp"

namespace tutti::testing {

class RecordedWork : public Work {
 public:
  RecordedWork(OpType op, std::vector<Tensor> outputs)
      : Work(op, to_string(op), std::move(outputs)) {
    finish();
  }
};

class FakeBackend : public Backend {
 public:
  FakeBackend(int rank, int size, std::string name = "fake", bool all_optional = true)
      : Backend(rank, size), name_(std::move(name)), all_optional_(all_optional) {}

  std::string name() const override { return name_; }
  bool supports(OpType op) const override { return all_optional_ || Backend::supports(op); }

  // Every call, in order.
  std::vector<OpType> calls;
  BroadcastOptions last_broadcast;
  AllreduceOptions last_allreduce;

  std::shared_ptr<Work> record(OpType op, std::vector<Tensor> outputs = {}) {
    calls.push_back(op);
    return std::make_shared<RecordedWork>(op, std::move(outputs));
  }

  std::shared_ptr<Work> broadcast(std::vector<Tensor>& t, const BroadcastOptions& o) override {
    last_broadcast = o;
    return record(OpType::BROADCAST, t);
  }
  std::shared_ptr<Work> allreduce(std::vector<Tensor>& t, const AllreduceOptions& o) override {
    last_allreduce = o;
    return record(OpType::ALLREDUCE, t);
  }
  std::shared_ptr<Work> allreduce_sparse(std::vector<SparseTensor>&,
                                         const AllreduceOptions&) override {
    return record(OpType::ALLREDUCE_SPARSE);
  }
  std::shared_ptr<Work> allreduce_coalesced(std::vector<Tensor>& t,
                                            const AllreduceCoalescedOptions&) override {
    return record(OpType::ALLREDUCE_COALESCED, t);
  }
  std::shared_ptr<Work> reduce(std::vector<Tensor>& t, const ReduceOptions&) override {
    return record(OpType::REDUCE, t);
  }
  std::shared_ptr<Work> allgather(std::vector<std::vector<Tensor>>&, std::vector<Tensor>&,
                                  const AllgatherOptions&) override {
    return record(OpType::ALLGATHER);
  }
  std::shared_ptr<Work> allgather_into_tensor(Tensor& out, Tensor&,
                                              const AllgatherOptions&) override {
    return record(OpType::ALLGATHER_INTO_TENSOR, {out});
  }
  std::shared_ptr<Work> allgather_coalesced(std::vector<std::vector<Tensor>>&, std::vector<Tensor>&,
                                            const AllgatherOptions&) override {
    return record(OpType::ALLGATHER_COALESCED);
  }
  std::shared_ptr<Work> allgather_into_tensor_coalesced(std::vector<Tensor>& out,
                                                        std::vector<Tensor>&,
                                                        const AllgatherOptions&) override {
    return record(OpType::ALLGATHER_INTO_TENSOR_COALESCED, out);
  }
  std::shared_ptr<Work> gather(std::vector<std::vector<Tensor>>&, std::vector<Tensor>&,
                               const GatherOptions&) override {
    return record(OpType::GATHER);
  }
  std::shared_ptr<Work> scatter(std::vector<Tensor>& out, std::vector<std::vector<Tensor>>&,
                                const ScatterOptions&) override {
    return record(OpType::SCATTER, out);
  }
  std::shared_ptr<Work> reduce_scatter(std::vector<Tensor>& out, std::vector<std::vector<Tensor>>&,
                                       const ReduceScatterOptions&) override {
    return record(OpType::REDUCE_SCATTER, out);
  }
  std::shared_ptr<Work> reduce_scatter_tensor(Tensor& out, Tensor&,
                                              const ReduceScatterOptions&) override {
    return record(OpType::REDUCE_SCATTER_TENSOR, {out});
  }
  std::shared_ptr<Work> reduce_scatter_tensor_coalesced(std::vector<Tensor>& out,
                                                        std::vector<Tensor>&,
                                                        const ReduceScatterOptions&) override {
    return record(OpType::REDUCE_SCATTER_TENSOR_COALESCED, out);
  }
  std::shared_ptr<Work> alltoall_base(Tensor& out, Tensor&, std::vector<int64_t>,
                                      std::vector<int64_t>, const AllToAllOptions&) override {
    return record(OpType::ALLTOALL_BASE, {out});
  }
  std::shared_ptr<Work> alltoall(std::vector<Tensor>& out, std::vector<Tensor>&,
                                 const AllToAllOptions&) override {
    return record(OpType::ALLTOALL, out);
  }
  std::shared_ptr<Work> send(std::vector<Tensor>&, int, int) override {
    return record(OpType::SEND);
  }
  std::shared_ptr<Work> recv(std::vector<Tensor>& t, int, int) override {
    return record(OpType::RECV, t);
  }
  std::shared_ptr<Work> recv_anysource(std::vector<Tensor>& t, int) override {
    return record(OpType::RECV_ANYSOURCE, t);
  }
  std::shared_ptr<Work> barrier(const BarrierOptions&) override { return record(OpType::BARRIER); }
  void monitored_barrier(const BarrierOptions&, bool) override {
    calls.push_back(OpType::MONITORED_BARRIER);
  }

 private:
  std::string name_;
  bool all_optional_;
};

}  // namespace tutti::testing
