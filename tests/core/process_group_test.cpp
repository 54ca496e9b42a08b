// ProcessGroup front end: routing by device, sequence numbers, argument checks
// before any backend call, capability errors, the registry and new_group.
#include "tutti/process_group.hpp"

#include <gtest/gtest.h>

#include <cstring>

#include "core/fake_backend.hpp"
#include "harness/expect.hpp"
#include "tutti/hash_store.hpp"

namespace tutti {
namespace {

using testing::FakeBackend;

Tensor cpu_tensor(std::vector<int64_t> sizes, DType dtype = DType::Float32) {
  return Tensor::zeros(std::move(sizes), dtype);
}

// Device memory is never touched by the front end, so a host buffer tagged
// as CUDA stands in for it.
Tensor cuda_tensor(std::vector<int64_t> sizes, std::vector<float>& storage) {
  return Tensor::from_blob(storage.data(), std::move(sizes), DType::Float32, {},
                           Device{DeviceType::CUDA, 0});
}

// Matches when `statement` throws InvalidArgument whose message contains
// every given fragment.

class ProcessGroupTest : public ::testing::Test {
 protected:
  void SetUp() override { make_group(/*rank=*/1, /*size=*/4); }

  void make_group(int rank, int size) {
    pg = std::make_shared<ProcessGroup>(std::make_shared<HashStore>(), rank, size,
                                        ProcessGroup::Options{});
    cpu = std::make_shared<FakeBackend>(rank, size, "fake_cpu");
    cuda = std::make_shared<FakeBackend>(rank, size, "fake_cuda");
    pg->set_backend(DeviceType::CPU, cpu);
  }

  std::shared_ptr<ProcessGroup> pg;
  std::shared_ptr<FakeBackend> cpu;
  std::shared_ptr<FakeBackend> cuda;
};

TEST_F(ProcessGroupTest, RoutesByDeviceType) {
  pg->set_backend(DeviceType::CUDA, cuda);
  std::vector<float> device_memory(4);
  std::vector<Tensor> on_cpu = {cpu_tensor({4})};
  std::vector<Tensor> on_cuda = {cuda_tensor({4}, device_memory)};
  pg->allreduce(on_cpu)->wait();
  pg->allreduce(on_cuda)->wait();
  pg->broadcast(on_cuda)->wait();
  EXPECT_EQ(cpu->calls, std::vector<OpType>{OpType::ALLREDUCE});
  EXPECT_EQ(cuda->calls, (std::vector<OpType>{OpType::ALLREDUCE, OpType::BROADCAST}));
  EXPECT_EQ(pg->get_backend(DeviceType::CUDA), cuda);
}

TEST_F(ProcessGroupTest, MixedDevicesAreRejectedBeforeAnyBackendCall) {
  pg->set_backend(DeviceType::CUDA, cuda);
  std::vector<float> device_memory(4);
  std::vector<Tensor> mixed = {cpu_tensor({4}), cuda_tensor({4}, device_memory)};
  EXPECT_INVALID_ARGUMENT(pg->allreduce(mixed), "allreduce", "different devices", "cuda:0", "cpu",
                          "rank 1/4");
  Tensor out = cpu_tensor({16});
  Tensor in = cuda_tensor({4}, device_memory);
  EXPECT_INVALID_ARGUMENT(pg->allgather_into_tensor(out, in), "different devices");
  EXPECT_TRUE(cpu->calls.empty());
  EXPECT_TRUE(cuda->calls.empty());
  EXPECT_EQ(pg->sequence_number(), 0u);
}

TEST_F(ProcessGroupTest, NoBackendForDeviceIsAClearError) {
  std::vector<float> device_memory(4);
  std::vector<Tensor> on_cuda = {cuda_tensor({4}, device_memory)};
  EXPECT_INVALID_ARGUMENT(pg->allreduce(on_cuda), "no backend serves cuda tensors");
}

TEST_F(ProcessGroupTest, SequenceNumberCountsCollectivesOnly) {
  std::vector<Tensor> t = {cpu_tensor({8})};
  EXPECT_EQ(pg->sequence_number(), 0u);
  pg->allreduce(t);
  pg->broadcast(t);
  pg->barrier();
  EXPECT_EQ(pg->sequence_number(), 3u);
  pg->send(t, 0, 0);
  pg->recv(t, 2, 0);
  pg->recv_anysource(t, 0);
  EXPECT_EQ(pg->sequence_number(), 3u);
  // A call rejected by the checks does not advance the count, so ranks that
  // validate the same arguments stay in step.
  std::vector<Tensor> none;
  EXPECT_THROW(pg->allreduce(none), InvalidArgument);
  EXPECT_EQ(pg->sequence_number(), 3u);
}

TEST_F(ProcessGroupTest, SequenceNumberIsExactUnderConcurrentCallers) {
  constexpr int kThreads = 4;
  constexpr int kCallsPerThread = 500;
  // The fake backend's call log is not thread-safe; a backend per device is
  // not needed here, only the group's own counter.
  struct Quiet : FakeBackend {
    using FakeBackend::FakeBackend;
    std::mutex m;
    std::shared_ptr<Work> barrier(const BarrierOptions&) override {
      std::lock_guard<std::mutex> lock(m);
      return record(OpType::BARRIER);
    }
  };
  auto quiet = std::make_shared<Quiet>(1, 4, "quiet");
  pg->set_backend(DeviceType::CPU, quiet);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&] {
      for (int j = 0; j < kCallsPerThread; ++j) pg->barrier();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(pg->sequence_number(), static_cast<uint64_t>(kThreads * kCallsPerThread));
  EXPECT_EQ(quiet->calls.size(), static_cast<size_t>(kThreads * kCallsPerThread));
}

TEST_F(ProcessGroupTest, OptionsReachTheBackendUnchanged) {
  std::vector<Tensor> t = {cpu_tensor({2}), cpu_tensor({2})};
  BroadcastOptions b;
  b.root_rank = 3;
  b.root_tensor = 1;
  b.timeout = std::chrono::milliseconds(1234);
  pg->broadcast(t, b);
  EXPECT_EQ(cpu->last_broadcast.root_rank, 3);
  EXPECT_EQ(cpu->last_broadcast.root_tensor, 1);
  EXPECT_EQ(cpu->last_broadcast.timeout.count(), 1234);
  AllreduceOptions a;
  a.reduce_op = ReduceOp::premul_sum(0.25);
  pg->allreduce(t, a);
  EXPECT_EQ(cpu->last_allreduce.reduce_op.kind, ReduceOp::PREMUL_SUM);
  EXPECT_EQ(cpu->last_allreduce.reduce_op.factor, 0.25);
}

TEST_F(ProcessGroupTest, BroadcastAndReduceChecks) {
  std::vector<Tensor> none;
  EXPECT_INVALID_ARGUMENT(pg->broadcast(none), "broadcast", "non-empty");
  std::vector<Tensor> t = {cpu_tensor({4})};
  EXPECT_INVALID_ARGUMENT(pg->broadcast(t, {.root_rank = 4}), "root_rank 4 is out of range",
                          "0 to 3");
  EXPECT_INVALID_ARGUMENT(pg->broadcast(t, {.root_rank = -1}), "root_rank -1");
  EXPECT_INVALID_ARGUMENT(pg->broadcast(t, {.root_tensor = 1}), "root_tensor 1");
  std::vector<Tensor> mismatched = {cpu_tensor({4}), cpu_tensor({5})};
  EXPECT_INVALID_ARGUMENT(pg->broadcast(mismatched), "tensors[1] is float32[5]",
                          "tensors[0] is float32[4]");
  std::vector<Tensor> dtypes = {cpu_tensor({4}), cpu_tensor({4}, DType::Float64)};
  EXPECT_INVALID_ARGUMENT(pg->reduce(dtypes), "reduce", "float64[4]");
  EXPECT_INVALID_ARGUMENT(pg->reduce(t, {.root_rank = 9}), "root_rank 9");
  EXPECT_TRUE(cpu->calls.empty());
}

TEST_F(ProcessGroupTest, ReduceOpMustFitTheDtype) {
  std::vector<Tensor> f = {cpu_tensor({4})};
  EXPECT_INVALID_ARGUMENT(pg->allreduce(f, {.reduce_op = ReduceOp::BAND}), "band", "float32",
                          "bitwise");
  std::vector<Tensor> b = {cpu_tensor({4}, DType::Bool)};
  EXPECT_INVALID_ARGUMENT(pg->allreduce(b, {.reduce_op = ReduceOp::AVG}), "avg", "bool");
  Tensor h_out = cpu_tensor({4}, DType::BFloat16);
  Tensor h_in = cpu_tensor({16}, DType::BFloat16);
  EXPECT_INVALID_ARGUMENT(pg->reduce_scatter_tensor(h_out, h_in, {.reduce_op = ReduceOp::BXOR}),
                          "bxor", "bfloat16");
  std::vector<Tensor> i = {cpu_tensor({4}, DType::Int32)};
  pg->allreduce(i, {.reduce_op = ReduceOp::BXOR});
  pg->allreduce(b, {.reduce_op = ReduceOp::BOR});
  EXPECT_EQ(cpu->calls.size(), 2u);
}

TEST_F(ProcessGroupTest, NonContiguousTensorsAreRejected) {
  Tensor base = cpu_tensor({4, 4});
  Tensor column = base.narrow(1, 1, 1);  // stride 4 over 4 rows
  ASSERT_FALSE(column.is_contiguous());
  std::vector<Tensor> t = {column};
  EXPECT_INVALID_ARGUMENT(pg->allreduce(t), "tensors[0]", "not contiguous");
  std::vector<Tensor> undefined = {Tensor()};
  EXPECT_INVALID_ARGUMENT(pg->allreduce(undefined), "undefined");
}

TEST_F(ProcessGroupTest, AllgatherChecks) {
  std::vector<Tensor> in = {cpu_tensor({3})};
  std::vector<std::vector<Tensor>> out(1);
  for (int r = 0; r < 3; ++r) out[0].push_back(cpu_tensor({3}));
  EXPECT_INVALID_ARGUMENT(pg->allgather(out, in), "expected 4 tensors in each output list");
  out[0].push_back(cpu_tensor({2}));
  EXPECT_INVALID_ARGUMENT(pg->allgather(out, in), "outputs[0][3] is float32[2]");
  out[0][3] = cpu_tensor({3});
  pg->allgather(out, in);
  std::vector<std::vector<Tensor>> two_lists(2, out[0]);
  EXPECT_INVALID_ARGUMENT(pg->allgather(two_lists, in), "expected 1 output lists");

  Tensor small = cpu_tensor({11});
  EXPECT_INVALID_ARGUMENT(pg->allgather_into_tensor(small, in[0]), "output has 11 elements",
                          "world size (4) x 3");
  Tensor wrong_type = cpu_tensor({12}, DType::Int32);
  EXPECT_INVALID_ARGUMENT(pg->allgather_into_tensor(wrong_type, in[0]), "dtype int32");
  Tensor right = cpu_tensor({4, 3});
  pg->allgather_into_tensor(right, in[0]);

  std::vector<Tensor> ins = {cpu_tensor({2}), cpu_tensor({5}, DType::Int64)};
  std::vector<std::vector<Tensor>> lists(
      4, std::vector<Tensor>{cpu_tensor({2}), cpu_tensor({5}, DType::Int64)});
  pg->allgather_coalesced(lists, ins);
  lists[2][1] = cpu_tensor({5});
  EXPECT_INVALID_ARGUMENT(pg->allgather_coalesced(lists, ins), "output_lists[2][1] is float32[5]");
  lists.pop_back();
  EXPECT_INVALID_ARGUMENT(pg->allgather_coalesced(lists, ins), "expected 4 output lists");

  std::vector<Tensor> outs = {cpu_tensor({8}), cpu_tensor({20}, DType::Int64)};
  pg->allgather_into_tensor_coalesced(outs, ins);
  outs.pop_back();
  EXPECT_INVALID_ARGUMENT(pg->allgather_into_tensor_coalesced(outs, ins), "expected 2 outputs");
  EXPECT_EQ(cpu->calls, (std::vector<OpType>{OpType::ALLGATHER, OpType::ALLGATHER_INTO_TENSOR,
                                             OpType::ALLGATHER_COALESCED,
                                             OpType::ALLGATHER_INTO_TENSOR_COALESCED}));
}

TEST_F(ProcessGroupTest, GatherAndScatterChecksDependOnTheRoot) {
  std::vector<Tensor> in = {cpu_tensor({2})};
  std::vector<std::vector<Tensor>> none;
  pg->gather(none, in, {.root_rank = 0});  // rank 1 is not the root: no outputs
  std::vector<std::vector<Tensor>> some(1, std::vector<Tensor>(4, cpu_tensor({2})));
  EXPECT_INVALID_ARGUMENT(pg->gather(some, in, {.root_rank = 0}), "empty output list on non-root");
  pg->gather(some, in, {.root_rank = 1});
  EXPECT_INVALID_ARGUMENT(pg->gather(none, in, {.root_rank = 1}), "expected 1 output lists");
  some[0][2] = cpu_tensor({2}, DType::Float16);
  EXPECT_INVALID_ARGUMENT(pg->gather(some, in, {.root_rank = 1}), "outputs[0][2] is float16[2]");
  std::vector<Tensor> two_in = {cpu_tensor({2}), cpu_tensor({2})};
  EXPECT_INVALID_ARGUMENT(pg->gather(none, two_in), "expected 1 input tensors");
  EXPECT_INVALID_ARGUMENT(pg->gather(none, in, {.root_rank = 7}), "root_rank 7");

  std::vector<Tensor> out = {cpu_tensor({2})};
  pg->scatter(out, none, {.root_rank = 3});
  std::vector<std::vector<Tensor>> inputs(1, std::vector<Tensor>(4, cpu_tensor({2})));
  EXPECT_INVALID_ARGUMENT(pg->scatter(out, inputs, {.root_rank = 3}),
                          "empty input list on non-root");
  pg->scatter(out, inputs, {.root_rank = 1});
  inputs[0].pop_back();
  EXPECT_INVALID_ARGUMENT(pg->scatter(out, inputs, {.root_rank = 1}), "expected 4 tensors");
  EXPECT_EQ(cpu->calls.size(), 4u);
}

TEST_F(ProcessGroupTest, ReduceScatterChecks) {
  std::vector<Tensor> out = {cpu_tensor({3})};
  std::vector<std::vector<Tensor>> in(1, std::vector<Tensor>(4, cpu_tensor({3})));
  pg->reduce_scatter(out, in);
  in[0][1] = cpu_tensor({4});
  EXPECT_INVALID_ARGUMENT(pg->reduce_scatter(out, in), "inputs[0][1] is float32[4]");
  in[0].pop_back();
  EXPECT_INVALID_ARGUMENT(pg->reduce_scatter(out, in), "expected 4 tensors in each input list");

  Tensor o = cpu_tensor({3});
  Tensor i = cpu_tensor({12});
  pg->reduce_scatter_tensor(o, i);
  Tensor i_bad = cpu_tensor({13});
  EXPECT_INVALID_ARGUMENT(pg->reduce_scatter_tensor(o, i_bad), "input has 13 elements");

  std::vector<Tensor> outs = {cpu_tensor({1}), cpu_tensor({2})};
  std::vector<Tensor> ins = {cpu_tensor({4}), cpu_tensor({8})};
  pg->reduce_scatter_tensor_coalesced(outs, ins);
  ins[1] = cpu_tensor({8}, DType::Int8);
  EXPECT_INVALID_ARGUMENT(pg->reduce_scatter_tensor_coalesced(outs, ins), "dtype int8");
  EXPECT_EQ(cpu->calls.size(), 3u);
}

TEST_F(ProcessGroupTest, AlltoallSplitSizesMustSumToTheTensor) {
  Tensor in = cpu_tensor({10, 2});
  Tensor out = cpu_tensor({6, 2});
  pg->alltoall_base(out, in, {1, 2, 3, 0}, {4, 3, 2, 1});
  EXPECT_INVALID_ARGUMENT(pg->alltoall_base(out, in, {1, 2, 3, 0}, {4, 3, 2, 2}),
                          "input_split_sizes [4, 3, 2, 2] sum to 11", "10 rows");
  EXPECT_INVALID_ARGUMENT(pg->alltoall_base(out, in, {1, 2, 3}, {4, 3, 2, 1}),
                          "output_split_sizes has 3 entries");
  EXPECT_INVALID_ARGUMENT(pg->alltoall_base(out, in, {1, 2, 4, -1}, {4, 3, 2, 1}),
                          "output_split_sizes[3] = -1 is negative");
  // Empty splits mean equal parts: 10 rows do not split 4 ways.
  EXPECT_INVALID_ARGUMENT(pg->alltoall_base(out, in, {1, 2, 3, 0}, {}), "equal parts");
  Tensor out8 = cpu_tensor({8, 2});
  Tensor in8 = cpu_tensor({8, 2});
  pg->alltoall_base(out8, in8, {}, {});
  Tensor out_wide = cpu_tensor({8, 3});
  EXPECT_INVALID_ARGUMENT(pg->alltoall_base(out_wide, in8, {}, {}),
                          "every dimension but the first");

  std::vector<Tensor> outs(4, cpu_tensor({2}));
  std::vector<Tensor> ins(4, cpu_tensor({2}));
  pg->alltoall(outs, ins);
  ins.pop_back();
  EXPECT_INVALID_ARGUMENT(pg->alltoall(outs, ins), "expected 4 input tensors");
  EXPECT_EQ(cpu->calls.size(), 3u);
}

TEST_F(ProcessGroupTest, PointToPointChecks) {
  std::vector<Tensor> t = {cpu_tensor({2})};
  EXPECT_INVALID_ARGUMENT(pg->send(t, 4, 0), "dst_rank 4 is out of range");
  EXPECT_INVALID_ARGUMENT(pg->send(t, 1, 0), "send to self");
  EXPECT_INVALID_ARGUMENT(pg->recv(t, -1, 0), "src_rank -1");
  EXPECT_INVALID_ARGUMENT(pg->recv(t, 0, -3), "tag -3 is negative");
  std::vector<Tensor> two = {cpu_tensor({2}), cpu_tensor({2})};
  EXPECT_INVALID_ARGUMENT(pg->recv_anysource(two, 0), "exactly one");
  EXPECT_TRUE(cpu->calls.empty());
}

TEST_F(ProcessGroupTest, UnsupportedOptionalOpNamesBackendsThatSupportIt) {
  static bool registered = [] {
    register_backend({.name = "pg_test_full",
                      .devices = {DeviceType::CPU},
                      .factory =
                          [](const BackendConfig& c) {
                            return std::make_shared<FakeBackend>(c.rank, c.size, "pg_test_full");
                          },
                      .optional_ops = {OpType::ALLREDUCE_COALESCED}});
    return true;
  }();
  ASSERT_TRUE(registered);
  auto minimal = std::make_shared<FakeBackend>(1, 4, "minimal", /*all_optional=*/false);
  pg->set_backend(DeviceType::CPU, minimal);
  std::vector<Tensor> t = {cpu_tensor({2})};
  EXPECT_INVALID_ARGUMENT(pg->allreduce_coalesced(t),
                          "the minimal backend does not support allreduce_coalesced",
                          "backends that do: ", "pg_test_full");
  EXPECT_INVALID_ARGUMENT(pg->monitored_barrier(), "does not support monitored_barrier");
  EXPECT_EQ(pg->sequence_number(), 0u);
}

TEST_F(ProcessGroupTest, BarrierGoesToTheCpuBackend) {
  pg->set_backend(DeviceType::CUDA, cuda);
  pg->barrier();
  pg->monitored_barrier();
  EXPECT_EQ(cpu->calls, (std::vector<OpType>{OpType::BARRIER, OpType::MONITORED_BARRIER}));
  EXPECT_TRUE(cuda->calls.empty());
  pg->set_backend(DeviceType::CPU, nullptr);
  pg->barrier();
  EXPECT_EQ(cuda->calls, std::vector<OpType>{OpType::BARRIER});
}

TEST_F(ProcessGroupTest, SetBackendRejectsAMismatchedRank) {
  EXPECT_INVALID_ARGUMENT(pg->set_backend(DeviceType::CPU, std::make_shared<FakeBackend>(0, 4)),
                          "is rank 0 of 4");
}

TEST(ProcessGroupConstruction, RejectsBadRankSizeAndTimeout) {
  auto store = std::make_shared<HashStore>();
  EXPECT_INVALID_ARGUMENT(ProcessGroup(store, 4, 4, {}), "rank 4 is out of range");
  EXPECT_INVALID_ARGUMENT(ProcessGroup(store, 0, 0, {}), "size 0");
  EXPECT_INVALID_ARGUMENT(ProcessGroup(store, 0, 2, {.timeout = std::chrono::milliseconds(0)}),
                          "timeout must be positive");
  EXPECT_INVALID_ARGUMENT(ProcessGroup(store, 0, 2, {.backend = "no_such_backend"}),
                          "unknown backend 'no_such_backend'");
  EXPECT_INVALID_ARGUMENT(ProcessGroup(store, 0, 2, {.backend = "cpu:"}), "unknown backend ''");
  EXPECT_INVALID_ARGUMENT(ProcessGroup(store, 0, 2, {.backend = "tpu:x"}),
                          "unknown device type 'tpu'");
}

// A registered backend that records the configuration it was built with.
struct Configured : FakeBackend {
  explicit Configured(const BackendConfig& c)
      : FakeBackend(c.rank, c.size, "pg_test_configured"), config(c) {}
  BackendConfig config;
};

void register_configured_backend() {
  static bool once = [] {
    register_backend(
        {.name = "pg_test_configured",
         .devices = {DeviceType::CPU, DeviceType::CUDA},
         .factory = [](const BackendConfig& c) { return std::make_shared<Configured>(c); }});
    return true;
  }();
  (void)once;
}

TEST(BackendRegistry, RegisterFindAndRejectDuplicates) {
  register_configured_backend();
  ASSERT_NE(find_backend("pg_test_configured"), nullptr);
  EXPECT_EQ(find_backend("not_registered"), nullptr);
  auto names = registered_backends();
  EXPECT_NE(std::find(names.begin(), names.end(), "pg_test_configured"), names.end());
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
  EXPECT_INVALID_ARGUMENT(
      register_backend({.name = "pg_test_configured",
                        .devices = {DeviceType::CPU},
                        .factory = [](const BackendConfig&) { return nullptr; }}),
      "already registered");
  EXPECT_INVALID_ARGUMENT(register_backend({.name = "", .devices = {DeviceType::CPU}}), "empty");
  EXPECT_INVALID_ARGUMENT(register_backend({.name = "x", .devices = {DeviceType::CPU}}),
                          "no factory");
}

TEST(BackendRegistry, GroupBuildsItsBackendsFromTheRegistry) {
  register_configured_backend();
  auto store = std::make_shared<HashStore>();
  ProcessGroup pg(
      store, 2, 3,
      {.backend = "pg_test_configured", .timeout = std::chrono::seconds(7), .group_name = "g"});
  auto cpu = std::dynamic_pointer_cast<Configured>(pg.get_backend(DeviceType::CPU));
  ASSERT_NE(cpu, nullptr);
  // One instance serves both device types it registered for.
  EXPECT_EQ(pg.get_backend(DeviceType::CUDA), pg.get_backend(DeviceType::CPU));
  EXPECT_EQ(cpu->config.rank, 2);
  EXPECT_EQ(cpu->config.size, 3);
  EXPECT_EQ(cpu->config.timeout, std::chrono::seconds(7));
  EXPECT_EQ(cpu->config.group_name, "g");
  // The backend's keys live under its own prefix of the group's store.
  cpu->config.store->set("k", std::string("v"));
  EXPECT_FALSE(store->check({"k"}));
  EXPECT_EQ(store->num_keys(), 1);
  EXPECT_EQ(pg.backend_name(), "pg_test_configured");

  ProcessGroup per_device(store, 0, 1, {.backend = "cpu:pg_test_configured"});
  EXPECT_NE(per_device.get_backend(DeviceType::CPU), nullptr);
  EXPECT_EQ(per_device.get_backend(DeviceType::CUDA), nullptr);
}

TEST(NewGroup, MembersGetARankedSubgroupAndOthersNull) {
  register_configured_backend();
  auto store = std::make_shared<HashStore>();
  // Four "ranks" in one process share the store; each builds its view.
  std::vector<std::shared_ptr<ProcessGroup>> world;
  for (int r = 0; r < 4; ++r) {
    world.push_back(std::make_shared<ProcessGroup>(
        store, r, 4, ProcessGroup::Options{.backend = "pg_test_configured"}));
  }
  const std::vector<int> members = {3, 1};  // any order: rank 3 becomes subgroup rank 0
  std::vector<std::shared_ptr<ProcessGroup>> sub;
  for (int r = 0; r < 4; ++r) sub.push_back(world[static_cast<size_t>(r)]->new_group(members));
  EXPECT_EQ(sub[0], nullptr);
  EXPECT_EQ(sub[2], nullptr);
  ASSERT_NE(sub[3], nullptr);
  ASSERT_NE(sub[1], nullptr);
  EXPECT_EQ(sub[3]->rank(), 0);
  EXPECT_EQ(sub[1]->rank(), 1);
  EXPECT_EQ(sub[1]->size(), 2);
  EXPECT_EQ(sub[1]->group_name(), "default/1");
  // The next subgroup gets the next name on every rank.
  auto again = world[0]->new_group({0, 1, 2, 3});
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again->group_name(), "default/2");
  EXPECT_INVALID_ARGUMENT(world[0]->new_group({0, 0}), "listed twice");
  EXPECT_INVALID_ARGUMENT(world[0]->new_group({5}), "rank 5 is out of range");
  EXPECT_INVALID_ARGUMENT(world[0]->new_group({}), "must not be empty");
}

}  // namespace
}  // namespace tutti
