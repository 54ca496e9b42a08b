#include "side.hpp"

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace gloo_compare {

Args parse_args(int argc, char** argv, const char* description) {
  Args args;
  CLI::App app{description};
  app.add_option("--rank", args.rank)->required();
  app.add_option("--world-size", args.world_size)->required()->check(CLI::Range(1, 64));
  app.add_option("--host", args.host);
  app.add_option("--port", args.port);
  app.add_option("--store-dir", args.store_dir);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    std::exit(app.exit(e));
  }
  return args;
}

void serve(const std::function<void(const Command&)>& run) {
  std::printf("READY\n");
  std::fflush(stdout);
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::string verb;
    in >> verb;
    if (verb == "quit") return;
    Command command;
    in >> command.op >> command.variant >> command.bytes >> command.iterations >> command.warmup;
    if (verb != "run" || in.fail() || command.bytes == 0 || command.iterations < 1 ||
        command.warmup < 0) {
      throw std::invalid_argument(fmt::format("malformed command '{}'", line));
    }
    run(command);
  }
}

void measure(const Command& command, const std::function<void()>& op) {
  using Clock = std::chrono::steady_clock;
  for (int i = 0; i < command.warmup; ++i) op();
  std::vector<int64_t> times;
  times.reserve(static_cast<size_t>(command.iterations));
  for (int i = 0; i < command.iterations; ++i) {
    const auto start = Clock::now();
    op();
    times.push_back(
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count());
  }
  std::sort(times.begin(), times.end());
  const size_t n = times.size();
  const int64_t median = n % 2 == 1 ? times[n / 2] : (times[n / 2 - 1] + times[n / 2]) / 2;
  std::printf("RESULT %s %s %zu %lld %lld %d\n", command.op.c_str(), command.variant.c_str(),
              command.bytes, static_cast<long long>(median), static_cast<long long>(times.front()),
              command.iterations);
  std::fflush(stdout);
}

void expect_equal(const Command& command, const float* got, size_t count,
                  const std::function<float(size_t)>& want) {
  for (size_t i = 0; i < count; ++i) {
    if (got[i] != want(i)) {
      throw std::runtime_error(fmt::format("{} {} of {} bytes: element {} is {}, expected {}",
                                           command.op, command.variant, command.bytes, i, got[i],
                                           want(i)));
    }
  }
}

}  // namespace gloo_compare
