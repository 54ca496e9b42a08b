// A tour of tutti's data layer on one process: tensors, the reduction
// semantics every collective uses, sparse tensors and DLPack. Until a
// backend is built this is what ./scripts/run shows.
#include <cstdio>
#include <numeric>
#include <tutti/tutti.hpp>

using namespace tutti;

int main() {
  // Four "ranks" worth of gradients, reduced the way allreduce(AVG) will.
  constexpr int kRanks = 4;
  constexpr int64_t kCount = 8;
  Tensor sum = Tensor::zeros({kCount}, DType::Float32);
  for (int r = 0; r < kRanks; ++r) {
    Tensor grad = Tensor::empty({kCount}, DType::Float32);
    std::iota(grad.data<float>(), grad.data<float>() + kCount, static_cast<float>(r));
    for (int64_t i = 0; i < kCount; ++i) sum.data<float>()[i] += grad.data<float>()[i];
  }
  std::printf("sum of %d ranks' gradients: ", kRanks);
  for (int64_t i = 0; i < kCount; ++i) std::printf("%g ", sum.data<float>()[i]);
  std::printf("\n");

  // Which reduce ops fit which dtypes.
  for (DType dtype : {DType::Bool, DType::Int32, DType::BFloat16, DType::Float64}) {
    std::printf("%-9s:", to_string(dtype));
    for (auto kind : {ReduceOp::SUM, ReduceOp::AVG, ReduceOp::BXOR, ReduceOp::PREMUL_SUM}) {
      std::printf(" %s=%s", to_string(kind), supports(ReduceOp(kind), dtype) ? "yes" : "no");
    }
    std::printf("\n");
  }

  // A sparse gradient with a duplicate entry, coalesced.
  Tensor indices = Tensor::empty({1, 3}, DType::Int64);
  Tensor values = Tensor::empty({3}, DType::Float32);
  int64_t idx[] = {4, 1, 4};
  float val[] = {1.5f, 2.0f, 0.5f};
  std::copy(idx, idx + 3, indices.data<int64_t>());
  std::copy(val, val + 3, values.data<float>());
  SparseTensor sparse(indices, values, {6});
  SparseTensor coalesced = sparse.coalesce();
  std::printf("sparse nnz %lld -> coalesced nnz %lld; dense:", static_cast<long long>(sparse.nnz()),
              static_cast<long long>(coalesced.nnz()));
  Tensor dense = coalesced.to_dense();
  for (int64_t i = 0; i < 6; ++i) std::printf(" %g", dense.data<float>()[i]);
  std::printf("\n");

  // Zero-copy exchange through DLPack.
  Tensor back = from_dlpack(to_dlpack(dense));
  std::printf("dlpack round trip shares memory: %s\n",
              back.data_ptr() == dense.data_ptr() ? "yes" : "no");
  return back.equal(dense) ? 0 : 1;
}
