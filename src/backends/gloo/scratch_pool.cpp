#include "backends/gloo/scratch_pool.hpp"

#include <utility>

namespace tutti::gloo_backend {

Tensor ScratchPool::take(size_t bytes) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (size_t i = free_.size(); i-- > 0;) {
      if (free_[i].nbytes() < bytes) continue;
      Tensor block = std::move(free_[i]);
      free_.erase(free_.begin() + static_cast<std::ptrdiff_t>(i));
      pooled_bytes_ -= block.nbytes();
      return block;
    }
  }
  return Tensor::empty({static_cast<int64_t>(bytes)}, DType::UInt8);
}

void ScratchPool::give_back(Tensor block) {
  if (!block.defined() || block.nbytes() > kMaxBytes) return;
  std::vector<Tensor> dropped;  // freed after the lock
  std::lock_guard<std::mutex> lock(mutex_);
  pooled_bytes_ += block.nbytes();
  free_.push_back(std::move(block));
  while (free_.size() > kMaxBlocks || pooled_bytes_ > kMaxBytes) {
    pooled_bytes_ -= free_.front().nbytes();
    dropped.push_back(std::move(free_.front()));
    free_.erase(free_.begin());
  }
}

size_t ScratchPool::pooled_bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return pooled_bytes_;
}

}  // namespace tutti::gloo_backend
