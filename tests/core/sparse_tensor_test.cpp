#include <gtest/gtest.h>

#include "tutti/tensor.hpp"

namespace tutti {
namespace {

Tensor int64_tensor(std::vector<int64_t> sizes, std::vector<int64_t> values) {
  Tensor t = Tensor::empty(std::move(sizes), DType::Int64);
  std::copy(values.begin(), values.end(), t.data<int64_t>());
  return t;
}

Tensor float_tensor(std::vector<int64_t> sizes, std::vector<float> values) {
  Tensor t = Tensor::empty(std::move(sizes), DType::Float32);
  std::copy(values.begin(), values.end(), t.data<float>());
  return t;
}

TEST(SparseTensor, ShapeQueries) {
  // 3x4 matrix with dense rows of 2: sizes [3, 4, 2].
  SparseTensor s(int64_tensor({2, 3}, {0, 2, 1, 3, 0, 1}), float_tensor({3, 2}, {1, 2, 3, 4, 5, 6}),
                 {3, 4, 2});
  EXPECT_EQ(s.nnz(), 3);
  EXPECT_EQ(s.sparse_dim(), 2);
  EXPECT_EQ(s.dense_dim(), 1);
  EXPECT_EQ(s.dtype(), DType::Float32);
  EXPECT_FALSE(s.is_coalesced());
}

TEST(SparseTensor, CoalesceSortsAndSumsDuplicates) {
  // Entries (2,1)=1, (0,3)=2, (2,1)=3, (0,0)=4.
  SparseTensor s(int64_tensor({2, 4}, {2, 0, 2, 0, 1, 3, 1, 0}), float_tensor({4}, {1, 2, 3, 4}),
                 {3, 4});
  SparseTensor c = s.coalesce();
  EXPECT_TRUE(c.is_coalesced());
  ASSERT_EQ(c.nnz(), 3);
  const int64_t* idx = c.indices().data<int64_t>();
  EXPECT_EQ((std::vector<int64_t>(idx, idx + 6)), (std::vector<int64_t>{0, 0, 2, 0, 3, 1}));
  const float* v = c.values().data<float>();
  EXPECT_EQ((std::vector<float>(v, v + 3)), (std::vector<float>{4, 2, 4}));
  EXPECT_TRUE(c.to_dense().equal(s.to_dense()));
}

TEST(SparseTensor, ToDenseSumsDuplicatesWithDenseDims) {
  SparseTensor s(int64_tensor({1, 3}, {1, 0, 1}), float_tensor({3, 2}, {1, 2, 3, 4, 5, 6}), {2, 2});
  Tensor d = s.to_dense();
  EXPECT_TRUE(d.equal(float_tensor({2, 2}, {3, 4, 6, 8})));
}

TEST(SparseTensor, EmptyAndIntegerValues) {
  SparseTensor empty(Tensor::empty({1, 0}, DType::Int64), Tensor::empty({0}, DType::Float32), {5});
  EXPECT_EQ(empty.coalesce().nnz(), 0);
  EXPECT_TRUE(empty.to_dense().equal(Tensor::zeros({5}, DType::Float32)));
  Tensor values = Tensor::empty({2}, DType::Int8);
  values.data<int8_t>()[0] = 100;
  values.data<int8_t>()[1] = 100;
  SparseTensor wraps(int64_tensor({1, 2}, {0, 0}), values, {1});
  EXPECT_EQ(wraps.coalesce().values().data<int8_t>()[0], static_cast<int8_t>(-56));
}

TEST(SparseTensor, RejectsMalformedParts) {
  EXPECT_THROW(SparseTensor(float_tensor({1, 1}, {0}), float_tensor({1}, {1}), {2}),
               InvalidArgument);  // float indices
  EXPECT_THROW(SparseTensor(int64_tensor({1, 2}, {0, 1}), float_tensor({3}, {1, 2, 3}), {2}),
               InvalidArgument);  // nnz mismatch
  EXPECT_THROW(SparseTensor(int64_tensor({1, 1}, {2}), float_tensor({1}, {1}), {2}),
               InvalidArgument);  // index out of range
  EXPECT_THROW(SparseTensor(int64_tensor({1, 1}, {-1}), float_tensor({1}, {1}), {2}),
               InvalidArgument);  // negative index
  EXPECT_THROW(SparseTensor(int64_tensor({1, 1}, {0}), float_tensor({1, 3}, {1, 2, 3}), {2, 2}),
               InvalidArgument);  // dense size mismatch
  EXPECT_THROW(SparseTensor(int64_tensor({2, 1}, {0, 0}), float_tensor({1}, {1}), {2}),
               InvalidArgument);  // too few sizes
}

}  // namespace
}  // namespace tutti
