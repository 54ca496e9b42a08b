#include "tutti/tensor.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <numeric>

namespace tutti {
namespace {

Tensor iota(std::vector<int64_t> sizes, DType dtype = DType::Int32) {
  Tensor t = Tensor::empty(std::move(sizes), dtype);
  auto* p = t.data<int32_t>();
  std::iota(p, p + t.numel(), 0);
  return t;
}

TEST(Tensor, EmptyAndZerosAreContiguousAndOwned) {
  Tensor t = Tensor::zeros({2, 3, 4}, DType::Float64);
  EXPECT_TRUE(t.defined());
  EXPECT_EQ(t.numel(), 24);
  EXPECT_EQ(t.nbytes(), 24u * 8);
  EXPECT_EQ(t.strides(), (std::vector<int64_t>{12, 4, 1}));
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data_ptr()) % 64, 0u);
  for (int64_t i = 0; i < t.numel(); ++i) EXPECT_EQ(t.data<double>()[i], 0.0);
  EXPECT_EQ(t.device(), Device{});
}

TEST(Tensor, ZeroSizedAndScalar) {
  Tensor empty = Tensor::empty({0, 5}, DType::Float32);
  EXPECT_EQ(empty.numel(), 0);
  EXPECT_EQ(empty.nbytes(), 0u);
  EXPECT_TRUE(empty.is_contiguous());
  EXPECT_TRUE(empty.equal(empty.clone()));
  Tensor scalar = Tensor::zeros({}, DType::Int64);
  EXPECT_EQ(scalar.numel(), 1);
  EXPECT_EQ(scalar.dim(), 0);
  scalar.data<int64_t>()[0] = 7;
  EXPECT_EQ(scalar.clone().data<int64_t>()[0], 7);
}

TEST(Tensor, RejectsBadSizesAndDevices) {
  EXPECT_THROW(Tensor::empty({-1}, DType::Float32), InvalidArgument);
  EXPECT_THROW(Tensor::empty({int64_t{1} << 40, int64_t{1} << 40}, DType::Float32),
               InvalidArgument);
  EXPECT_THROW(Tensor::empty({4}, DType::Float32, Device{DeviceType::CUDA, 0}), InvalidArgument);
  float x = 0;
  EXPECT_THROW(Tensor::from_blob(&x, {1, 1}, DType::Float32, {1}), InvalidArgument);
  EXPECT_THROW(Tensor::from_blob(nullptr, {1}, DType::Float32), InvalidArgument);
}

TEST(Tensor, TypedAccessChecksTheDtype) {
  Tensor t = Tensor::zeros({4}, DType::Float32);
  EXPECT_NO_THROW(t.data<float>());
  EXPECT_THROW(t.data<double>(), InvalidArgument);
  EXPECT_THROW(t.data<int32_t>(), InvalidArgument);
  Tensor h = Tensor::zeros({4}, DType::BFloat16);
  EXPECT_NO_THROW(h.data<uint16_t>());
  Tensor b = Tensor::zeros({4}, DType::Bool);
  EXPECT_NO_THROW(b.data<bool>());
  EXPECT_THROW(b.data<uint8_t>(), InvalidArgument);
}

TEST(Tensor, FromBlobBorrowsMemory) {
  std::vector<float> buffer = {1, 2, 3, 4, 5, 6};
  Tensor t = Tensor::from_blob(buffer.data(), {2, 3}, DType::Float32);
  EXPECT_EQ(t.data_ptr(), buffer.data());
  t.data<float>()[5] = 60;
  EXPECT_EQ(buffer[5], 60);
  Tensor copy = t;  // shares the view
  EXPECT_EQ(copy.data_ptr(), buffer.data());
}

TEST(Tensor, KeepAliveRunsWhenLastViewDies) {
  bool released = false;
  auto* memory = new float[4]{1, 2, 3, 4};
  {
    std::shared_ptr<void> owner(memory, [&](void* p) {
      delete[] static_cast<float*>(p);
      released = true;
    });
    Tensor t = Tensor::from_blob(memory, {4}, DType::Float32, {}, owner);
    owner.reset();
    Tensor view = t.narrow(0, 1, 2);
    t = Tensor();
    EXPECT_FALSE(released);
    EXPECT_EQ(view.data<float>()[0], 2);
  }
  EXPECT_TRUE(released);
}

TEST(Tensor, StridedViewsCloneAndCompare) {
  Tensor t = iota({3, 4});
  // A transposed view: sizes [4, 3], strides [1, 4].
  Tensor transposed = Tensor::from_blob(t.data_ptr(), {4, 3}, DType::Int32, {1, 4});
  EXPECT_FALSE(transposed.is_contiguous());
  Tensor c = transposed.clone();
  EXPECT_TRUE(c.is_contiguous());
  const int32_t expected[] = {0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11};
  EXPECT_EQ(std::memcmp(c.data_ptr(), expected, sizeof expected), 0);
  EXPECT_TRUE(transposed.equal(c));
  EXPECT_FALSE(t.equal(transposed));  // different sizes
  Tensor other = c.clone();
  other.data<int32_t>()[11] = -1;
  EXPECT_FALSE(transposed.equal(other));
  EXPECT_FALSE(c.equal(c.view({12})));
}

TEST(Tensor, NarrowSharesStorage) {
  Tensor t = iota({4, 3});
  Tensor rows = t.narrow(0, 1, 2);
  EXPECT_TRUE(rows.is_contiguous());
  EXPECT_TRUE(rows.shares_storage(t));
  EXPECT_EQ(rows.data<int32_t>()[0], 3);
  Tensor column = t.narrow(1, 2, 1);
  EXPECT_FALSE(column.is_contiguous());
  EXPECT_EQ(column.clone().data<int32_t>()[3], 11);
  EXPECT_THROW(t.narrow(0, 3, 2), InvalidArgument);
  EXPECT_THROW(t.narrow(2, 0, 1), InvalidArgument);
  EXPECT_EQ(t.narrow(0, 4, 0).numel(), 0);
}

TEST(Tensor, SizeOneDimensionsIgnoreTheirStride) {
  int32_t data[4] = {};
  Tensor t = Tensor::from_blob(data, {1, 4}, DType::Int32, {100, 1});
  EXPECT_TRUE(t.is_contiguous());
}

TEST(Tensor, ViewAndCopy) {
  Tensor t = iota({2, 6});
  Tensor v = t.view({3, 4});
  EXPECT_EQ(v.sizes(), (std::vector<int64_t>{3, 4}));
  EXPECT_THROW(t.view({5}), InvalidArgument);
  Tensor transposed = Tensor::from_blob(t.data_ptr(), {6, 2}, DType::Int32, {1, 6});
  EXPECT_THROW(transposed.view({12}), InvalidArgument);

  Tensor dst = Tensor::zeros({12}, DType::Int32);
  dst.copy_(transposed);  // strided source
  EXPECT_EQ(dst.data<int32_t>()[1], 6);
  Tensor strided_dst_base = Tensor::zeros({2, 6}, DType::Int32);
  Tensor strided_dst = Tensor::from_blob(strided_dst_base.data_ptr(), {6, 2}, DType::Int32, {1, 6});
  strided_dst.copy_(dst);  // strided destination: inverse of the transpose
  EXPECT_TRUE(strided_dst_base.equal(t));
  Tensor wrong = Tensor::zeros({12}, DType::Int64);
  EXPECT_THROW(wrong.copy_(t), InvalidArgument);
}

TEST(Tensor, CopiesShareStorage) {
  Tensor a = Tensor::zeros({3}, DType::Float32);
  Tensor b = a;
  b.data<float>()[1] = 5;
  EXPECT_EQ(a.data<float>()[1], 5);
  Tensor c = a.clone();
  c.data<float>()[1] = 6;
  EXPECT_EQ(a.data<float>()[1], 5);
  EXPECT_FALSE(c.shares_storage(a));
}

// Copies share one shape object; a view made from either gets its own, and
// neither copy's sizes or strides change.
TEST(Tensor, CopiesKeepTheirShapeWhenAnotherIsReshaped) {
  Tensor a = Tensor::zeros({2, 3}, DType::Float32);
  Tensor b = a;
  a = a.view({3, 2});
  EXPECT_EQ(a.sizes(), (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(b.sizes(), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(b.strides(), (std::vector<int64_t>{3, 1}));
  Tensor column = b.narrow(1, 1, 1);
  EXPECT_FALSE(column.is_contiguous());
  EXPECT_TRUE(b.is_contiguous());
  Tensor copy_of_column = column;
  EXPECT_EQ(copy_of_column.strides(), (std::vector<int64_t>{3, 1}));
  EXPECT_FALSE(copy_of_column.is_contiguous());
  EXPECT_EQ(copy_of_column.data_ptr(), column.data_ptr());
}

TEST(Tensor, UndefinedTensors) {
  Tensor t;
  EXPECT_FALSE(t.defined());
  EXPECT_TRUE(t.equal(Tensor()));
  EXPECT_FALSE(t.equal(Tensor::zeros({1}, DType::Float32)));
  EXPECT_FALSE(t.clone().defined());
  EXPECT_TRUE(t.sizes().empty());
  EXPECT_TRUE(t.strides().empty());
  EXPECT_EQ(t.dim(), 0);
  EXPECT_TRUE(t.is_contiguous());
}

}  // namespace
}  // namespace tutti
