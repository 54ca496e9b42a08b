// Fingerprints keep what must agree across ranks and leave out what may
// differ; compare() names the ranks and fields that differ.
#include "debug/fingerprint.hpp"

#include <gtest/gtest.h>

#include "debug/p2p_description.hpp"

namespace tutti::debug {
namespace {

Tensor f32(std::vector<int64_t> sizes) { return Tensor::zeros(std::move(sizes), DType::Float32); }

// Gather and scatter fingerprints take no root-only list at all (non-roots
// pass empty ones; the DETAIL suite's GatherScatter runs show no false
// positive); the root and the common tensors must agree.
TEST(Fingerprint, GatherAndScatterCompareTheCommonTensorsAndTheRoot) {
  const std::vector<Tensor> inputs = {f32({4})};
  EXPECT_NE(fingerprint_gather(inputs, {.root_rank = 1}).hash(),
            fingerprint_gather(inputs, {.root_rank = 0}).hash());
  EXPECT_NE(fingerprint_gather(inputs, {}).hash(), fingerprint_gather({f32({5})}, {}).hash());
  EXPECT_NE(fingerprint_scatter({f32({4})}, {}).hash(), fingerprint_scatter({f32({5})}, {}).hash());
  EXPECT_NE(fingerprint_scatter({f32({4})}, {.root_rank = 1}).hash(),
            fingerprint_scatter({f32({4})}, {}).hash());
}

TEST(Fingerprint, PremulSumFactorsMayDifferButNotTheKind) {
  const std::vector<Tensor> t = {f32({2})};
  EXPECT_EQ(fingerprint_allreduce(OpType::ALLREDUCE, t, ReduceOp::premul_sum(0.5)).hash(),
            fingerprint_allreduce(OpType::ALLREDUCE, t, ReduceOp::premul_sum(2.0)).hash());
  EXPECT_NE(fingerprint_allreduce(OpType::ALLREDUCE, t, ReduceOp::premul_sum(0.5)).hash(),
            fingerprint_allreduce(OpType::ALLREDUCE, t, ReduceOp::SUM).hash());
}

TEST(Fingerprint, SparseNnzMayDifferButNotSizesOrSparseDim) {
  auto sparse = [](int64_t nnz, std::vector<int64_t> sizes) {
    return SparseTensor(Tensor::zeros({1, nnz}, DType::Int64),
                        Tensor::zeros({nnz, 2}, DType::Float32), std::move(sizes));
  };
  EXPECT_EQ(fingerprint_allreduce_sparse({sparse(0, {8, 2})}, ReduceOp::SUM).hash(),
            fingerprint_allreduce_sparse({sparse(3, {8, 2})}, ReduceOp::SUM).hash());
  EXPECT_NE(fingerprint_allreduce_sparse({sparse(3, {8, 2})}, ReduceOp::SUM).hash(),
            fingerprint_allreduce_sparse({sparse(3, {9, 2})}, ReduceOp::SUM).hash());
}

TEST(Fingerprint, SerializationRoundTrips) {
  Fingerprint fp =
      fingerprint_alltoall_base(f32({4, 3}), f32({5, 3}), {2, 2}, {1, 4}, /*world_size=*/2);
  fp.sequence = 17;
  const auto bytes = fp.serialize();
  const Fingerprint back = Fingerprint::deserialize(bytes.data(), bytes.size());
  EXPECT_EQ(back.call(), fp.call());
  EXPECT_EQ(back.sequence, 17u);
  EXPECT_EQ(back.send_counts, fp.send_counts);
  EXPECT_EQ(back.recv_counts, fp.recv_counts);
  EXPECT_EQ(back.hash(), fp.hash());
  EXPECT_THROW(Fingerprint::deserialize(bytes.data(), bytes.size() / 2), DistBackendError);
}

TEST(Fingerprint, CompareNamesRanksAndEveryDifferingField) {
  std::vector<Fingerprint> prints = {
      fingerprint_allreduce(OpType::ALLREDUCE, {f32({4})}, ReduceOp::SUM),
      fingerprint_allreduce(OpType::ALLREDUCE, {f32({4})}, ReduceOp::SUM),
      fingerprint_broadcast({f32({4})}, {.root_rank = 0}),
  };
  for (auto& p : prints) p.sequence = 5;
  EXPECT_EQ(compare(prints),
            "ranks 0, 1 call allreduce(tensors=float32[4], reduce_op=sum) as #5 but rank 2 "
            "calls broadcast(tensors=float32[4], root_rank=0, root_tensor=0) as #5; they differ "
            "in op (allreduce vs broadcast), reduce_op (sum vs absent), root_rank (absent vs 0), "
            "root_tensor (absent vs 0)");
  prints.pop_back();
  EXPECT_EQ(compare(prints), "");
}

TEST(Fingerprint, AlltoallSplitsAreCrossCheckedNotCompared) {
  // Rank 0 sends [1, 2] rows and expects [1, 1]; rank 1 sends [1, 1] and
  // expects [2, 1]: consistent although the ranks' splits differ.
  std::vector<Fingerprint> prints = {
      fingerprint_alltoall_base(f32({2, 3}), f32({3, 3}), {1, 1}, {1, 2}, 2),
      fingerprint_alltoall_base(f32({3, 3}), f32({2, 3}), {2, 1}, {1, 1}, 2),
  };
  EXPECT_EQ(compare(prints), "");
  prints[1] = fingerprint_alltoall_base(f32({2, 3}), f32({2, 3}), {1, 1}, {1, 1}, 2);
  EXPECT_EQ(compare(prints),
            "alltoall_base #0 disagrees between senders and receivers: rank 0 sends 2 rows of "
            "float32[*, 3] to rank 1 (input_split_sizes[1]) but rank 1 expects 1 from rank 0 "
            "(output_split_sizes[0])");
}

// Found by fuzz/fingerprint_fuzzer: a peer's description with a dtype code
// this build does not know raised InvalidArgument("unknown dtype code")
// instead of being reported as a mismatch.
TEST(P2PDescription, UnknownDTypeCodesAreShownNotThrown) {
  Tensor sent = Description::of(Tensor::zeros({2, 3}, DType::Float32), 5, 1);
  const Tensor received = Description::of(Tensor::zeros({2, 3}, DType::Float32), 5, 1);
  sent.data<int64_t>()[Description::kDType] = 116;
  EXPECT_EQ(Description::text(sent), "dtype#116[2, 3]");
  EXPECT_EQ(Description::differences(sent, received), "dtype (dtype#116 vs float32)");
}

}  // namespace
}  // namespace tutti::debug
