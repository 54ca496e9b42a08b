#include "side.hpp"

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <sstream>
#include <stdexcept>

namespace gloo_compare {
namespace {

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> parts;
  std::stringstream in(text);
  std::string part;
  while (std::getline(in, part, sep)) {
    if (!part.empty()) parts.push_back(part);
  }
  return parts;
}

// "bytes:iterations:warmup,..." as compare.py writes it: the launcher owns
// the schedule, so all three sides run exactly the same one.
std::vector<Step> parse_schedule(const std::string& text) {
  std::vector<Step> steps;
  for (const auto& item : split(text, ',')) {
    const auto fields = split(item, ':');
    if (fields.size() != 3) {
      throw std::invalid_argument(fmt::format("schedule item '{}' is not bytes:iters:warmup", item));
    }
    Step step{std::stoull(fields[0]), std::stoi(fields[1]), std::stoi(fields[2])};
    if (step.bytes == 0 || step.iterations < 1 || step.warmup < 0) {
      throw std::invalid_argument(fmt::format("schedule item '{}' is out of range", item));
    }
    steps.push_back(step);
  }
  return steps;
}

}  // namespace

Args parse_args(int argc, char** argv, const char* description) {
  Args args;
  std::string schedule;
  std::string ops = "allreduce,allgather";
  std::string variants = "ring,bcube";
  CLI::App app{description};
  app.add_option("--rank", args.rank)->required();
  app.add_option("--world-size", args.world_size)->required()->check(CLI::Range(1, 64));
  app.add_option("--schedule", schedule, "bytes:iters:warmup,...")->required();
  app.add_option("--ops", ops, "comma list of allreduce, allgather");
  app.add_option("--variants", variants, "raw gloo allreduce algorithms: ring, bcube");
  app.add_option("--host", args.host);
  app.add_option("--port", args.port);
  app.add_option("--store-dir", args.store_dir);
  try {
    app.parse(argc, argv);
    args.schedule = parse_schedule(schedule);
  } catch (const CLI::ParseError& e) {
    std::exit(app.exit(e));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    std::exit(2);
  }
  args.ops = split(ops, ',');
  args.variants = split(variants, ',');
  return args;
}

bool wants(const Args& args, const std::string& op) {
  return std::find(args.ops.begin(), args.ops.end(), op) != args.ops.end();
}

void measure(const std::string& op, const std::string& variant, const Step& step,
             const std::function<void()>& run) {
  using Clock = std::chrono::steady_clock;
  for (int i = 0; i < step.warmup; ++i) run();
  std::vector<int64_t> times;
  times.reserve(static_cast<size_t>(step.iterations));
  for (int i = 0; i < step.iterations; ++i) {
    const auto start = Clock::now();
    run();
    times.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start)
                        .count());
  }
  std::sort(times.begin(), times.end());
  const size_t n = times.size();
  const int64_t median = n % 2 == 1 ? times[n / 2] : (times[n / 2 - 1] + times[n / 2]) / 2;
  std::printf("RESULT %s %s %zu %lld %lld %d\n", op.c_str(), variant.c_str(), step.bytes,
              static_cast<long long>(median), static_cast<long long>(times.front()),
              step.iterations);
  std::fflush(stdout);
}

void expect_equal(const std::string& op, size_t bytes, const float* got, size_t count,
                  const std::function<float(size_t)>& want) {
  for (size_t i = 0; i < count; ++i) {
    if (got[i] != want(i)) {
      throw std::runtime_error(fmt::format("{} of {} bytes: element {} is {}, expected {}", op,
                                           bytes, i, got[i], want(i)));
    }
  }
}

}  // namespace gloo_compare
