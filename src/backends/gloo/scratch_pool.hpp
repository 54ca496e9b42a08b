// Scratch memory for tutti's own schedules, reused from one operation to the
// next.
//
// A schedule's gloo buffers are retired for several operations (Retired,
// backend.hpp), and the memory under them used to go with them. So every
// operation took fresh scratch: memory no cache held any more, or (past the
// storage cache's bound, from 4 MiB allreduces on) a new mapping that
// faulted in page by page. Scratch whose transfers all completed is no longer
// touched by gloo, even while the buffers over it live on, so an operation
// that ends well hands it back here and the next one gets it warm. An
// operation that fails keeps its scratch with its buffers: a receive may
// still be posted into it.
#pragma once

#include <cstddef>
#include <mutex>
#include <vector>

#include "tutti/tensor.hpp"

namespace tutti::gloo_backend {

class ScratchPool {
 public:
  // Blocks kept for reuse: as many as operations run at once in practice
  // (one per worker or waiting thread), and at most this many bytes.
  static constexpr size_t kMaxBlocks = 4;
  static constexpr size_t kMaxBytes = size_t{32} << 20;

  // A UInt8 tensor of at least `bytes` bytes: the most recently handed back
  // block that is large enough, else a new one.
  Tensor take(size_t bytes);

  // `block` (from take) is free again. REQUIRES: no transfer is posted on
  // any buffer over it.
  void give_back(Tensor block);

  size_t pooled_bytes() const;

 private:
  mutable std::mutex mutex_;
  std::vector<Tensor> free_;  // GUARDED_BY(mutex_): the most recent last
  size_t pooled_bytes_ = 0;   // GUARDED_BY(mutex_)
};

}  // namespace tutti::gloo_backend
