// Tensor storage: large blocks are mapped, not malloc'd, and what is kept
// for reuse is bounded (src/core/storage.hpp; the soak's RSS growth).
#include "core/storage.hpp"

#include <gtest/gtest.h>
#include <malloc.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "tutti/tensor.hpp"

namespace tutti {
namespace {

// Under AddressSanitizer every block comes from malloc (storage.cpp) and
// its quarantine holds freed memory on purpose.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kUnderAsan = true;
#else
constexpr bool kUnderAsan = false;
#endif

int64_t heap_in_use() {
  const struct mallinfo2 heap = ::mallinfo2();
  return static_cast<int64_t>(heap.uordblks + heap.hblkhd);
}

int64_t rss_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.starts_with("VmRSS:")) return std::stoll(line.substr(6)) * 1024;
  }
  return -1;
}

Tensor touched(int64_t bytes) {
  Tensor t = Tensor::empty({bytes}, DType::UInt8);
  std::memset(t.data_ptr(), 1, static_cast<size_t>(bytes));
  return t;
}

// Before the fix these came from malloc, whose raised mmap threshold put
// them in the arenas.
TEST(Storage, LargeBlocksDoNotComeFromMalloc) {
  if (kUnderAsan) GTEST_SKIP() << "under AddressSanitizer every block comes from malloc";
  const int64_t before = heap_in_use();
  Tensor big = touched(1 << 20);
  Tensor at_threshold = touched(static_cast<int64_t>(detail::kMappedStorageMinBytes));
  EXPECT_LT(heap_in_use() - before, 64 << 10);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(big.data_ptr()) % detail::kStorageAlignment, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(at_threshold.data_ptr()) % detail::kStorageAlignment, 0u);
}

TEST(Storage, SmallBlocksAreAligned) {
  for (int64_t bytes : {0, 1, 63, 65, 4096, (128 << 10) - 1}) {
    Tensor t = Tensor::empty({bytes}, DType::UInt8);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data_ptr()) % detail::kStorageAlignment, 0u) << bytes;
  }
}

// A freed block is reused for the same size: no fresh mapping (page faults)
// per operation of a repeated size.
TEST(Storage, ASizeThatRepeatsReusesItsBlock) {
  if (kUnderAsan) GTEST_SKIP() << "under AddressSanitizer every block comes from malloc";
  void* first = nullptr;
  {
    Tensor t = touched(3 << 20);
    first = t.data_ptr();
  }
  Tensor again = touched(3 << 20);
  EXPECT_EQ(again.data_ptr(), first);
}

// Releasing the cache unmaps the freed blocks (their bytes are reported)
// and leaves blocks in use alone.
TEST(Storage, ReleasingTheCacheUnmapsOnlyFreedBlocks) {
  if (kUnderAsan) GTEST_SKIP() << "under AddressSanitizer every block comes from malloc";
  detail::release_cached_storage();
  Tensor kept = touched(1 << 20);
  { Tensor freed = touched(2 << 20); }
  EXPECT_EQ(detail::release_cached_storage(), size_t{2} << 20);
  EXPECT_EQ(detail::release_cached_storage(), 0u);
  std::memset(kept.data_ptr(), 7, 1 << 20);  // still mapped
  EXPECT_EQ(static_cast<uint8_t*>(kept.data_ptr())[(1 << 20) - 1], 7);
}

// Many distinct large sizes, allocated on some threads and freed on others
// (as the gloo backend's workers and its caller do): RSS stays within what
// the cache may hold, plus slack for the noise of a shared machine.
TEST(Storage, ChurnOfDistinctSizesAcrossThreadsKeepsRssBounded) {
  if (kUnderAsan) GTEST_SKIP() << "AddressSanitizer's quarantine holds freed memory";
  const int64_t before = rss_bytes();
  ASSERT_GT(before, 0);
  for (int round = 0; round < 4; ++round) {
    std::vector<Tensor> made;
    std::thread maker([&] {
      for (int i = 0; i < 64; ++i) made.push_back(touched((128 << 10) + i * 12288 + round * 4096));
    });
    maker.join();
    std::thread freer([&] { made.clear(); });
    freer.join();
  }
  ::malloc_trim(0);
  const int64_t slack = 4 << 20;
  EXPECT_LT(rss_bytes() - before, static_cast<int64_t>(detail::kMaxCachedStorageBytes) + slack);
}

}  // namespace
}  // namespace tutti
