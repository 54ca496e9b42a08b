#include "tutti/dlpack.hpp"

#include <dlpack/dlpack.h>
#include <gtest/gtest.h>

#include <cstring>

namespace tutti {
namespace {

TEST(DLPack, ExportIsZeroCopyAndKeepsStorageAlive) {
  Tensor t = Tensor::zeros({2, 3}, DType::BFloat16);
  void* data = t.data_ptr();
  DLManagedTensor* m = to_dlpack(t);
  t = Tensor();  // the export alone keeps the memory alive
  EXPECT_EQ(m->dl_tensor.data, data);
  EXPECT_EQ(m->dl_tensor.ndim, 2);
  EXPECT_EQ(m->dl_tensor.shape[0], 2);
  EXPECT_EQ(m->dl_tensor.shape[1], 3);
  EXPECT_EQ(m->dl_tensor.strides[0], 3);
  EXPECT_EQ(m->dl_tensor.dtype.code, kDLBfloat);
  EXPECT_EQ(m->dl_tensor.dtype.bits, 16);
  EXPECT_EQ(m->dl_tensor.device.device_type, kDLCPU);
  static_cast<uint16_t*>(m->dl_tensor.data)[5] = 0x3f80;  // memory still valid
  m->deleter(m);
}

TEST(DLPack, RoundTripEveryDtype) {
  for (int d = 0; d < kNumDTypes; ++d) {
    auto dtype = static_cast<DType>(d);
    Tensor t = Tensor::zeros({5}, dtype);
    std::memset(t.data_ptr(), 1, t.nbytes());
    Tensor back = from_dlpack(to_dlpack(t));
    EXPECT_EQ(back.dtype(), dtype) << to_string(dtype);
    EXPECT_EQ(back.data_ptr(), t.data_ptr());
    EXPECT_TRUE(back.equal(t));
  }
}

TEST(DLPack, ImportRunsTheDeleterOnceWhenTheLastViewDies) {
  static int deletions = 0;
  deletions = 0;
  static float values[6] = {0, 1, 2, 3, 4, 5};
  static int64_t shape[2] = {3, 2};
  static int64_t strides[2] = {1, 3};  // column-major
  auto* m = new DLManagedTensor{};
  m->dl_tensor.data = values;
  m->dl_tensor.device = {kDLCPU, 0};
  m->dl_tensor.ndim = 2;
  m->dl_tensor.dtype = {kDLFloat, 32, 1};
  m->dl_tensor.shape = shape;
  m->dl_tensor.strides = strides;
  m->dl_tensor.byte_offset = 0;
  m->deleter = [](DLManagedTensor* self) {
    ++deletions;
    delete self;
  };
  {
    Tensor t = from_dlpack(m);
    EXPECT_EQ(t.data_ptr(), values);
    EXPECT_EQ(t.strides(), (std::vector<int64_t>{1, 3}));
    EXPECT_FALSE(t.is_contiguous());
    Tensor view = t.narrow(0, 1, 1);
    t = Tensor();
    EXPECT_EQ(deletions, 0);
    EXPECT_EQ(view.clone().data<float>()[1], 4.0f);
  }
  EXPECT_EQ(deletions, 1);
}

TEST(DLPack, UnsupportedDtypeIsRejectedAndStillDeleted) {
  static int deletions = 0;
  deletions = 0;
  static int64_t shape[1] = {2};
  static double data[2];
  auto* m = new DLManagedTensor{};
  m->dl_tensor.data = data;
  m->dl_tensor.device = {kDLCPU, 0};
  m->dl_tensor.ndim = 1;
  m->dl_tensor.dtype = {kDLComplex, 64, 1};
  m->dl_tensor.shape = shape;
  m->deleter = [](DLManagedTensor* self) {
    ++deletions;
    delete self;
  };
  EXPECT_THROW(from_dlpack(m), InvalidArgument);
  EXPECT_EQ(deletions, 1);
  EXPECT_THROW(from_dlpack(nullptr), InvalidArgument);
  EXPECT_THROW(to_dlpack(Tensor()), InvalidArgument);
}

TEST(DLPack, CudaTensorsKeepTheirDevice) {
  float host[4];
  Tensor t = Tensor::from_blob(host, {4}, DType::Float32, {}, Device{DeviceType::CUDA, 2});
  DLManagedTensor* m = to_dlpack(t);
  EXPECT_EQ(m->dl_tensor.device.device_type, kDLCUDA);
  EXPECT_EQ(m->dl_tensor.device.device_id, 2);
  Tensor back = from_dlpack(m);
  EXPECT_EQ(back.device(), (Device{DeviceType::CUDA, 2}));
}

}  // namespace
}  // namespace tutti
