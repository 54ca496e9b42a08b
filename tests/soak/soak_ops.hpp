// The operations of the soak test (soak.cpp): one random draw describes an
// operation completely, every rank makes the same draws in the same order,
// and each operation comes with a check of its result against the
// independent reference (collectives/reference.hpp), computed locally.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "tutti/process_group.hpp"

namespace tutti::soak {

enum class Kind {
  Allreduce,
  AllreduceCoalesced,
  Broadcast,
  Reduce,
  Allgather,
  AllgatherIntoTensor,
  AllgatherCoalesced,
  AllgatherIntoTensorCoalesced,
  Gather,
  Scatter,
  ReduceScatter,
  ReduceScatterTensor,
  ReduceScatterTensorCoalesced,
  AlltoallBase,
  AlltoallBaseUneven,
  Alltoall,
  SendRecv,
  RecvAnysource,
  Barrier,
  AllreduceSparse,
};
inline constexpr int kNumKinds = static_cast<int>(Kind::AllreduceSparse) + 1;
const char* to_string(Kind kind);

// Everything one operation needs, drawn identically on every rank.
struct Draw {
  Kind kind = Kind::Allreduce;
  DType dtype = DType::Float32;
  ReduceOp op;
  int64_t count = 0;   // elements per rank (what each rank contributes)
  int64_t offset = 0;  // reference index of element 0
  int root = 0;        // a group rank: root, or the receiver of p2p ops
  int peer = 0;        // a group rank: the sender of send/recv
  int tag = 0;
};

// Deterministic: the same seed gives the same draws on every rank.
class Drawer {
 public:
  explicit Drawer(uint64_t seed) : rng_(seed) {}
  uint64_t below(uint64_t n) { return n == 0 ? 0 : rng_() % n; }
  // One operation for a group of `size` ranks. Sizes are skewed small:
  // 1 in 20 is empty, the rest log-uniform from 1 byte to max_bytes.
  Draw draw(int size, int64_t max_bytes, int tag);

 private:
  std::mt19937_64 rng_;
};

// An issued operation: its Works and the check of its result ("" if right).
struct Issued {
  std::vector<std::shared_ptr<Work>> works;
  std::function<std::string()> check;
};

// Issues `d` on `pg` (this rank's group). Returns at once; wait for every
// work, then call check.
Issued issue(ProcessGroup& pg, const Draw& d);

// "allreduce float32[1001] op=SUM root=0"
std::string describe(const Draw& d);

}  // namespace tutti::soak
