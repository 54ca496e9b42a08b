// Runs the fuzz target without libFuzzer, so every build tests it: first on
// the files given, then on a fixed number of inputs mutated from them with a
// fixed seed. Used by ctest (gcc builds have no libFuzzer).
//   replay [--mutations N] FILE...
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
  long mutations = 100000;
  std::vector<std::vector<uint8_t>> inputs;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--mutations") == 0 && i + 1 < argc) {
      mutations = std::strtol(argv[++i], nullptr, 10);
      continue;
    }
    std::ifstream in(argv[i], std::ios::binary);
    inputs.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  if (inputs.empty()) inputs.push_back({});
  for (const auto& input : inputs) LLVMFuzzerTestOneInput(input.data(), input.size());
  std::mt19937_64 rng(20261121);
  std::vector<uint8_t> buf;
  for (long i = 0; i < mutations; ++i) {
    buf = inputs[rng() % inputs.size()];
    const int edits = 1 + static_cast<int>(rng() % 8);
    for (int e = 0; e < edits; ++e) {
      switch (rng() % 4) {
        case 0:  // flip a byte
          if (!buf.empty()) buf[rng() % buf.size()] = static_cast<uint8_t>(rng());
          break;
        case 1:  // truncate
          if (!buf.empty()) buf.resize(rng() % buf.size());
          break;
        case 2:  // insert a byte
          buf.insert(
              buf.begin() + static_cast<std::ptrdiff_t>(buf.empty() ? 0 : rng() % buf.size()),
              static_cast<uint8_t>(rng()));
          break;
        case 3:  // append another input
          const auto& other = inputs[rng() % inputs.size()];
          buf.insert(buf.end(), other.begin(), other.end());
          break;
      }
    }
    LLVMFuzzerTestOneInput(buf.data(), buf.size());
  }
  std::printf("replayed %zu inputs and %ld mutations: no failure\n", inputs.size(), mutations);
  return 0;
}
