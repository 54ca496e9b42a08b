// Writes seed inputs for the fingerprint fuzzer: the fingerprints of real
// calls, alone and as 2 or 3 ranks that agree or disagree (alltoall counts
// included), and pairs of tensor descriptions.
//   fingerprint_seeds DIR
#include <cstdio>
#include <string>
#include <vector>

#include "debug/fingerprint.hpp"
#include "debug/p2p_description.hpp"

using namespace tutti;
using namespace tutti::debug;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  const Tensor t = Tensor::zeros({2, 3}, DType::Float32);
  const Tensor big = Tensor::zeros({4, 4}, DType::BFloat16);
  std::vector<Tensor> one = {t}, two = {t, big};
  const Fingerprint sum = fingerprint_allreduce(OpType::ALLREDUCE, one, ReduceOp::SUM);
  const Fingerprint max = fingerprint_allreduce(OpType::ALLREDUCE, two, ReduceOp::MAX);
  const Fingerprint bcast = fingerprint_broadcast(one, {.root_rank = 1});
  const Fingerprint a2a0 = fingerprint_alltoall_base(t, t, {1, 1}, {2, 0}, 2);
  const Fingerprint a2a1 = fingerprint_alltoall_base(t, t, {0, 2}, {1, 1}, 2);
  const Fingerprint barrier = fingerprint_barrier(OpType::BARRIER);
  const std::vector<std::vector<Fingerprint>> jobs = {
      {sum}, {bcast}, {barrier}, {sum, sum}, {sum, max}, {sum, bcast, barrier}, {a2a0, a2a1},
  };
  int n = 0;
  auto write = [&](const std::string& bytes) {
    const std::string path = std::string(argv[1]) + "/seed-" + std::to_string(n++);
    FILE* f = std::fopen(path.c_str(), "wb");
    if (f == nullptr) return;
    std::fwrite(bytes.data(), 1, bytes.size(), f);
    std::fclose(f);
  };
  for (const auto& job : jobs) {
    std::string bytes;
    for (const auto& fp : job) {
      const std::vector<uint8_t> blob = fp.serialize();
      if (!bytes.empty()) bytes += "|FP|";
      bytes.append(blob.begin(), blob.end());
    }
    write(bytes);
  }
  // A send's and a recv's descriptions, as the fuzzer reads them from the
  // front of every input.
  for (const auto& [a, b] : {std::pair{t, big}, std::pair{big, big}}) {
    const Tensor sent = Description::of(a, 3, 7);
    const Tensor received = Description::of(b, 3, 7);
    std::string bytes(reinterpret_cast<const char*>(sent.data<int64_t>()), sent.nbytes());
    bytes.append(reinterpret_cast<const char*>(received.data<int64_t>()), received.nbytes());
    write(bytes);
  }
  std::printf("wrote %d seeds to %s\n", n, argv[1]);
  return 0;
}
