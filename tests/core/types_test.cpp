#include "tutti/types.hpp"

#include <gtest/gtest.h>

#include "tutti/errors.hpp"

namespace tutti {
namespace {

TEST(DType, ItemsizeAndNamesRoundTrip) {
  const std::pair<DType, size_t> expected[] = {
      {DType::Bool, 1},    {DType::UInt8, 1},  {DType::Int8, 1},    {DType::Int16, 2},
      {DType::Int32, 4},   {DType::Int64, 8},  {DType::Float16, 2}, {DType::BFloat16, 2},
      {DType::Float32, 4}, {DType::Float64, 8}};
  for (auto [dtype, size] : expected) {
    EXPECT_EQ(itemsize(dtype), size) << to_string(dtype);
    EXPECT_EQ(dtype_from_string(to_string(dtype)), dtype);
  }
  EXPECT_STREQ(to_string(DType::BFloat16), "bfloat16");
  EXPECT_STREQ(to_string(DType::Float32), "float32");
  EXPECT_EQ(dtype_from_string("half"), DType::Float16);
  EXPECT_EQ(dtype_from_string("float"), DType::Float32);
  EXPECT_EQ(dtype_from_string("bf16"), DType::BFloat16);
  EXPECT_THROW(dtype_from_string("float8"), InvalidArgument);
  EXPECT_THROW(itemsize(static_cast<DType>(42)), InvalidArgument);
}

TEST(DType, Categories) {
  EXPECT_TRUE(is_floating_point(DType::BFloat16));
  EXPECT_FALSE(is_floating_point(DType::Int64));
  EXPECT_TRUE(is_integral(DType::UInt8));
  EXPECT_FALSE(is_integral(DType::Bool));
  EXPECT_FALSE(is_integral(DType::Float32));
}

TEST(Device, Names) {
  EXPECT_EQ(to_string(Device{}), "cpu");
  EXPECT_EQ(to_string(Device{DeviceType::CUDA, 1}), "cuda:1");
  EXPECT_EQ((Device{DeviceType::CUDA, 1}), (Device{DeviceType::CUDA, 1}));
  EXPECT_FALSE((Device{DeviceType::CUDA, 1}) == (Device{DeviceType::CUDA, 0}));
}

TEST(Errors, HierarchyDerivesFromError) {
  EXPECT_THROW(throw InvalidArgument("x"), Error);
  EXPECT_THROW(throw TimeoutError("x"), Error);
  EXPECT_THROW(throw DistNetworkError("x"), Error);
  EXPECT_THROW(throw DistStoreError("x"), Error);
  EXPECT_THROW(throw DistBackendError("x"), std::runtime_error);
}

}  // namespace
}  // namespace tutti
