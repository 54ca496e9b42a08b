// Writes seed inputs for the environment-strings fuzzer: for each parser
// (the first byte, see env_strings_fuzzer.cpp), values users really set,
// good and bad.
//   env_strings_seeds DIR
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  const std::vector<std::pair<int, std::string>> seeds = {
      {0, "10.0.0.1:29500"},
      {0, "[::1]:29500"},
      {0, "node-3.cluster:1"},
      {0, "[fe80::1%eth0]:65535"},
      {0, "host:"},
      {0, "[]:80"},
      {1, "29500"},
      {1, "65536"},
      {1, "-1"},
      {2, "3"},
      {2, "4294967296"},
      {2, "-2147483648"},
      {3, "detail"},
      {3, "Info"},
      {3, "OFF"},
      {4, "2"},
      {4, "64"},
      {4, " 8"},
      {5, "12"},
      {5, "99999999999"},
      {6, "2000"},
      {6, "0"},
      {6, "1048577"},
      {7, "warning"},
      {7, "3"},
      {8, "42"},
      {8, "-9223372036854775808"},
      {8, "9223372036854775808"},
      {9, "bfloat16"},
      {9, "fp16"},
      {10, "ring"},
      {10, "bcube"},
      {11, "lo"},
      {11, "^lo,eth0"},
      {11, ",,"},
  };
  int n = 0;
  for (const auto& [parser, text] : seeds) {
    const std::string path = std::string(argv[1]) + "/seed-" + std::to_string(n++);
    FILE* f = std::fopen(path.c_str(), "wb");
    if (f == nullptr) return 1;
    std::fputc(parser, f);
    std::fwrite(text.data(), 1, text.size(), f);
    std::fclose(f);
  }
  std::printf("wrote %d seeds to %s\n", n, argv[1]);
  return 0;
}
