// The 128-byte description of a tensor that each end of a send/recv sends
// the other under TUTTI_DEBUG=DETAIL (see debug_backend.hpp). What arrives
// is a peer's bytes: text() and differences() must cope with any 16 words.
#pragma once

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "tutti/tensor.hpp"
#include "tutti/types.hpp"

namespace tutti::debug {

// The 16 words each end sends the other.
struct Description {
  static constexpr int64_t kWords = 16;
  static constexpr int kMaxDims = 7;
  enum Slot {
    kCounter,
    kTag,
    kAgrees,
    kDType,
    kDevice,
    kDeviceIndex,
    kNumel,
    kDims,
    kSizes,
    kAnysource = kSizes + kMaxDims,  // set by a recv_anysource's answer
  };

  static Tensor of(const Tensor& t, int tag, uint64_t counter) {
    Tensor d = Tensor::zeros({kWords}, DType::Int64);
    auto* w = d.data<int64_t>();
    w[kCounter] = static_cast<int64_t>(counter);
    w[kTag] = tag;
    w[kAgrees] = 1;
    w[kDType] = static_cast<int64_t>(t.dtype());
    w[kDevice] = static_cast<int64_t>(t.device().type);
    w[kDeviceIndex] = t.device().index;
    w[kNumel] = t.numel();
    w[kDims] = t.dim();
    for (int64_t i = 0; i < std::min<int64_t>(t.dim(), kMaxDims); ++i) w[kSizes + i] = t.size(i);
    return d;
  }

  // A peer's dtype code by name; a code this build does not know (another
  // build, or corrupt bytes) is shown as a number instead of raising.
  static std::string dtype_name(int64_t code) {
    if (code >= 0 && code < static_cast<int64_t>(kNumDTypes)) {
      return to_string(static_cast<DType>(code));
    }
    return fmt::format("dtype#{}", code);
  }

  // "float32[2, 3]"
  static std::string text(const Tensor& d) {
    const auto* w = d.data<int64_t>();
    std::string shape;
    for (int64_t i = 0; i < std::min<int64_t>(w[kDims], kMaxDims); ++i) {
      shape += fmt::format("{}{}", i ? ", " : "", w[kSizes + i]);
    }
    if (w[kDims] > kMaxDims) shape += ", ...";
    std::string device;
    if (static_cast<DeviceType>(w[kDevice]) != DeviceType::CPU) {
      device = fmt::format("@{}", to_string(Device{static_cast<DeviceType>(w[kDevice]),
                                                   static_cast<int>(w[kDeviceIndex])}));
    }
    return fmt::format("{}[{}]{}", dtype_name(w[kDType]), shape, device);
  }

  // "" if a send of `sent` may land in a recv of `received`; else what
  // differs.
  static std::string differences(const Tensor& sent, const Tensor& received) {
    const auto* s = sent.data<int64_t>();
    const auto* r = received.data<int64_t>();
    std::vector<std::string> parts;
    if (s[kTag] != r[kTag]) {
      parts.push_back(fmt::format(
          "tag ({} vs {}: the checks fold tags modulo 2^29, so these two share a channel)", s[kTag],
          r[kTag]));
    }
    if (s[kDType] != r[kDType]) {
      parts.push_back(
          fmt::format("dtype ({} vs {})", dtype_name(s[kDType]), dtype_name(r[kDType])));
    }
    if (s[kNumel] != r[kNumel]) {
      parts.push_back(fmt::format("size ({} vs {} elements)", s[kNumel], r[kNumel]));
    }
    if (s[kDevice] != r[kDevice]) parts.push_back("device type");
    return fmt::format("{}", fmt::join(parts, ", "));
  }
};

}  // namespace tutti::debug
