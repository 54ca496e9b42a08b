// libFuzzer target for what TUTTI_DEBUG=DETAIL reads from its peers: the full
// fingerprints read back from the store (Fingerprint::deserialize, then
// compare() over them, as the slow round does), and the 128-byte tensor
// description of a send or recv (debug/p2p_description.hpp).
//
// The input is up to 4 ranks' fingerprints separated by "|FP|"; its first
// 256 bytes are also read as a send's and a recv's descriptions. Malformed
// fingerprints may only raise DistBackendError; whatever parses must
// re-serialize to bytes that parse to the same fingerprint, and must compare
// without throwing. A description never throws.
// Seeds: fingerprint_seeds writes real fingerprints and descriptions.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <vector>

#include "debug/fingerprint.hpp"
#include "debug/p2p_description.hpp"
#include "tutti/errors.hpp"

using namespace tutti;
using namespace tutti::debug;

namespace {

void require(bool condition) {
  if (!condition) std::abort();
}

bool same(const Fingerprint& a, const Fingerprint& b) { return a.serialize() == b.serialize(); }

void fuzz_description(const uint8_t* data, size_t size) {
  constexpr size_t kBytes = Description::kWords * sizeof(int64_t);
  Tensor sent = Tensor::zeros({Description::kWords}, DType::Int64);
  Tensor received = Tensor::zeros({Description::kWords}, DType::Int64);
  std::memcpy(sent.data<int64_t>(), data, std::min(size, kBytes));
  if (size > kBytes)
    std::memcpy(received.data<int64_t>(), data + kBytes, std::min(size - kBytes, kBytes));
  (void)Description::text(sent);
  (void)Description::text(received);
  (void)Description::differences(sent, received);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz_description(data, size);

  constexpr std::string_view kSeparator = "|FP|";
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  std::vector<Fingerprint> prints;
  size_t start = 0;
  while (prints.size() < 4) {
    const size_t end = std::min(input.find(kSeparator, start), input.size());
    const auto* blob = data + start;
    const size_t length = end - start;
    Fingerprint fp;
    try {
      fp = Fingerprint::deserialize(blob, length);
    } catch (const DistBackendError&) {
      return 0;
    }
    const std::vector<uint8_t> again = fp.serialize();
    Fingerprint twice;
    try {
      twice = Fingerprint::deserialize(again.data(), again.size());
    } catch (const DistBackendError&) {
      std::abort();  // our own bytes must parse
    }
    require(same(fp, twice));
    (void)fp.call();
    (void)fp.hash();
    prints.push_back(std::move(fp));
    if (end == input.size()) break;
    start = end + kSeparator.size();
  }
  (void)compare(prints);
  return 0;
}
