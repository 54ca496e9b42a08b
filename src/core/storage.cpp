#include "core/storage.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

namespace tutti::detail {
namespace {

void* map(size_t bytes) {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  return p;  // page-aligned, hence kStorageAlignment-aligned
}

// Mapped blocks kept mapped for reuse after their tensor goes, up to
// kMaxCachedStorageBytes in all, reused for a tensor of the same page-rounded size.
// A fresh mapping costs a page fault per 4 KiB on first touch: measured 1.2
// ms per MiB on this project's machine, against 30 us for malloc reusing a
// block, so repeated sizes (every training step's buckets, the backend's
// scratch for them) must not pay it each time. The bound keeps what is
// cached, hence RSS, from growing with the workload's history: exact sizes,
// not size classes, so a cached block's resident pages are its size and a
// block first touched in part cannot grow in the cache. The oldest blocks go
// first, so the cache follows the sizes in use.
class MappedBlocks {
 public:
  // A block of exactly `capacity` bytes (a multiple of the page size): a
  // cached one if any, else a new mapping.
  void* take(size_t capacity) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      // The most recently returned first: its pages are resident and warm.
      for (size_t i = free_.size(); i-- > 0;) {
        if (free_[i].first != capacity) continue;
        void* p = free_[i].second;
        free_.erase(free_.begin() + static_cast<std::ptrdiff_t>(i));
        cached_bytes_ -= capacity;
        return p;
      }
    }
    return map(capacity);
  }

  void give_back(void* p, size_t capacity) {
    std::vector<std::pair<size_t, void*>> evicted;
    if (capacity > kMaxCachedStorageBytes) {
      evicted.emplace_back(capacity, p);
    } else {
      std::lock_guard<std::mutex> lock(mutex_);
      free_.emplace_back(capacity, p);
      cached_bytes_ += capacity;
      while (cached_bytes_ > kMaxCachedStorageBytes) {
        evicted.push_back(free_.front());
        cached_bytes_ -= free_.front().first;
        free_.erase(free_.begin());
      }
    }
    for (const auto& [bytes, block] : evicted) ::munmap(block, bytes);
  }

  size_t release() {
    std::vector<std::pair<size_t, void*>> cached;
    size_t bytes = 0;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      cached.swap(free_);
      std::swap(bytes, cached_bytes_);
    }
    for (const auto& [size, block] : cached) ::munmap(block, size);
    return bytes;
  }

 private:
  std::mutex mutex_;
  // Oldest first; at most kMaxCachedStorageBytes / kMappedStorageMinBytes entries.
  std::vector<std::pair<size_t, void*>> free_;  // GUARDED_BY(mutex_)
  size_t cached_bytes_ = 0;                     // GUARDED_BY(mutex_)
};

MappedBlocks& mapped_blocks() {
  // Never destroyed: tensors may outlive static destruction.
  static auto* blocks = new MappedBlocks;
  return *blocks;
}

std::shared_ptr<void> map_storage(size_t nbytes) {
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  const size_t capacity = (nbytes + page - 1) / page * page;
  void* p = mapped_blocks().take(capacity);
  return std::shared_ptr<void>(p, [capacity](void* q) { mapped_blocks().give_back(q, capacity); });
}

// Under AddressSanitizer every block comes from malloc, so overflows of
// large tensors are caught too (mappings have no redzones).
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kMapLargeBlocks = false;
#else
constexpr bool kMapLargeBlocks = true;
#endif

}  // namespace

size_t release_cached_storage() { return kMapLargeBlocks ? mapped_blocks().release() : 0; }

std::shared_ptr<void> allocate_storage(size_t nbytes) {
  const size_t rounded =
      nbytes == 0 ? kStorageAlignment
                  : (nbytes + kStorageAlignment - 1) / kStorageAlignment * kStorageAlignment;
  if (kMapLargeBlocks && rounded >= kMappedStorageMinBytes) return map_storage(rounded);
  void* p = std::aligned_alloc(kStorageAlignment, rounded);
  if (p == nullptr) throw std::bad_alloc();
  return std::shared_ptr<void>(p, [](void* q) { std::free(q); });
}

}  // namespace tutti::detail
