// Memory for the tensors tutti allocates (Tensor::empty and everything built
// on it: user tensors and the gloo backend's scratch alike).
#pragma once

#include <cstddef>
#include <memory>

namespace tutti::detail {

// Every block is aligned to this many bytes, so vector loads in the reduction
// kernels never split a cache line at the start of a buffer.
inline constexpr size_t kStorageAlignment = 64;

// From this size on, storage is mapped from the kernel on its own (mmap) and
// unmapped when the last reference goes, instead of coming from malloc.
//
// Why: glibc's malloc serves blocks of 128 KiB and more with mmap only until
// the first such block is freed; then it raises its mmap threshold to that
// block's size (up to 32 MiB) and serves every smaller one from its arenas,
// where 128 KiB to 4 MiB buffers, allocated and freed on different threads
// (gloo's workers, the caller, Retired) between small long-lived objects,
// spread the arenas: freed memory that malloc_trim cannot return because
// live small chunks pin its pages. The soak's RSS grew by 6.0 to 7.8 MiB in
// 13,000 operations with a flat live heap, 1.2 to 1.4 MiB with the threshold
// pinned at 128 KiB (MALLOC_MMAP_THRESHOLD_), 2.3 to 3.6 MiB with this
// (docs/soak-and-netns.md; what is left is gloo's own scratch, which it
// allocates with new[]). The threshold is process-wide, so a library cannot
// pin it for its caller; mapping its own large blocks keeps them out of the
// arenas whatever the threshold is.
inline constexpr size_t kMappedStorageMinBytes = size_t{128} << 10;

// Freed mapped blocks stay mapped for reuse up to this many bytes in all
// (storage.cpp, MappedBlocks): RSS the cache may hold.
inline constexpr size_t kMaxCachedStorageBytes = size_t{8} << 20;

// At least `nbytes` bytes (one alignment unit for 0), aligned to
// kStorageAlignment, uninitialised. Freed when the last copy of the pointer
// goes, on any thread. Throws std::bad_alloc when out of memory.
std::shared_ptr<void> allocate_storage(size_t nbytes);

// Unmaps every cached free block and returns how many bytes that was: what
// malloc_trim is to malloc, for a measurement of RSS that should not count a
// cache whose level depends on the last few sizes freed (the soak).
size_t release_cached_storage();

}  // namespace tutti::detail
