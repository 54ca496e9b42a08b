#include "tutti_bench/options.hpp"

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "tutti/errors.hpp"
#include "tutti_bench/ops.hpp"

namespace tutti::bench {
namespace {

constexpr const char* kSizeHelp = "bytes, with an optional K, M or G suffix (e.g. 8, 1K, 64M)";

// CLI11 validators return "" for a good value, else the reason.
std::string check_size(const std::string& text) {
  return parse_size(text) ? std::string() : fmt::format("'{}' is not a size: {}", text, kSizeHelp);
}

std::string check_op_list(const std::string& text) {
  if (text == "all") return {};
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string name = text.substr(start, comma - start);
    if (find_op(name) == nullptr) {
      return fmt::format("unknown op '{}'; expected all or one or more (comma-separated) of {}",
                         name, op_names());
    }
    start = comma + 1;
  }
  return {};
}

std::string check_dtype(const std::string& text) {
  try {
    dtype_from_string(text);
    return {};
  } catch (const Error& e) {
    return e.what();
  }
}

std::string check_redop(const std::string& text) {
  try {
    reduce_kind_from_string(text.c_str());
    return {};
  } catch (const Error& e) {
    return e.what();
  }
}

std::vector<std::string> split_ops(const std::string& text) {
  std::vector<std::string> names;
  if (text == "all") {
    for (const auto& op : all_ops()) names.emplace_back(op.name);
    return names;
  }
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    names.push_back(text.substr(start, comma - start));
    start = comma + 1;
  }
  return names;
}

}  // namespace

std::optional<uint64_t> parse_size(const std::string& text) {
  const char* begin = text.c_str();
  if (text.empty() || !(std::isdigit(static_cast<unsigned char>(begin[0])) || begin[0] == '.')) {
    return std::nullopt;
  }
  char* end = nullptr;
  const double number = std::strtod(begin, &end);
  double unit = 1;
  switch (std::toupper(static_cast<unsigned char>(*end))) {
    case '\0':
      break;
    case 'K':
      unit = 1024.0;
      ++end;
      break;
    case 'M':
      unit = 1024.0 * 1024;
      ++end;
      break;
    case 'G':
      unit = 1024.0 * 1024 * 1024;
      ++end;
      break;
    default:
      return std::nullopt;
  }
  const double bytes = number * unit;
  if (*end != '\0' || !std::isfinite(bytes) || bytes < 0 || bytes > 0x1p62) return std::nullopt;
  return static_cast<uint64_t>(bytes);
}

std::optional<BenchOptions> parse_options(int argc, char** argv, bool print_errors,
                                          int& exit_code) {
  BenchOptions o;
  CLI::App app{
      "tutti-bench: nccl-tests for tutti. Times each collective over a sweep of sizes and "
      "checks its results. Run one process per rank under a launcher that sets MASTER_ADDR, "
      "MASTER_PORT, RANK and WORLD_SIZE, e.g. tuttirun -n 2 tutti-bench --op allreduce"};
  // As with getopt (nccl-tests), a later occurrence of an option wins.
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  std::string ops = "all", dtype = "float", redop = "sum";
  std::string min_bytes = "8", max_bytes = "32M";
  int check = 1;
  app.add_option("--backend", o.backend, "backend to initialise (auto picks the best available)")
      ->capture_default_str();
  app.add_option("-o,--op", ops, "all, or one or more of " + op_names() + " (comma-separated)")
      ->check(CLI::Validator(check_op_list, "OP", "op"))
      ->capture_default_str();
  app.add_option("-d,--dtype", dtype, "element type: any tutti dtype name (float, bf16, int64...)")
      ->check(CLI::Validator(check_dtype, "DTYPE", "dtype"))
      ->capture_default_str();
  app.add_option("--redop", redop,
                 "reduction of allreduce, reduce, reduce_scatter: sum, avg, product, min, max, "
                 "band, bor, bxor, premul_sum (factor 1)")
      ->check(CLI::Validator(check_redop, "REDOP", "redop"))
      ->capture_default_str();
  app.add_option("-r,--root", o.root, "root rank of broadcast, reduce, gather, scatter")
      ->check(CLI::Range(0, 1 << 20))
      ->capture_default_str();
  app.add_option("-b,--min-bytes", min_bytes, std::string("smallest size: ") + kSizeHelp)
      ->check(CLI::Validator(check_size, "SIZE", "size"))
      ->capture_default_str();
  app.add_option("-e,--max-bytes", max_bytes, "largest size; sizes double from --min-bytes")
      ->check(CLI::Validator(check_size, "SIZE", "size"))
      ->capture_default_str();
  app.add_option("-n,--iters", o.iters, "timed iterations per size")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  app.add_option("-w,--warmup", o.warmup, "untimed iterations before each size")
      ->check(CLI::Range(0, 1000000))
      ->capture_default_str();
  app.add_option("-c,--check", check, "1: check the result of one more iteration per size")
      ->check(CLI::Range(0, 1))
      ->capture_default_str();
  app.add_option("--json", o.json_path, "write the rows as a JSON array to this file (rank 0)");
  app.add_option("--timeout", o.timeout_seconds,
                 "seconds any operation or rendezvous may take before the run fails")
      ->check(CLI::Range(1, 86400))
      ->capture_default_str();

  const auto usage_error = [&](const std::string& message) {
    if (print_errors) {
      std::fprintf(stderr, "tutti-bench: %s\nRun with --help for more information.\n",
                   message.c_str());
    }
    exit_code = kExitUsage;
    return std::nullopt;
  };
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    exit_code = app.exit(e);
    return std::nullopt;
  } catch (const CLI::ParseError& e) {
    return usage_error(e.what());
  }

  o.ops = split_ops(ops);
  o.dtype = dtype_from_string(dtype);
  o.redop = reduce_kind_from_string(redop.c_str());
  o.min_bytes = *parse_size(min_bytes);
  o.max_bytes = *parse_size(max_bytes);
  o.check = check == 1;
  if (o.min_bytes > o.max_bytes) {
    return usage_error(
        fmt::format("--min-bytes {} is larger than --max-bytes {}", o.min_bytes, o.max_bytes));
  }
  for (const auto& name : o.ops) {
    if (find_op(name)->reduces && !supports(ReduceOp(o.redop), o.dtype)) {
      return usage_error(fmt::format(
          "--redop {} is not defined on --dtype {} (bitwise ops need an integer or bool "
          "dtype; avg and premul_sum do not apply to bool)",
          to_string(o.redop), to_string(o.dtype)));
    }
  }
  return o;
}

}  // namespace tutti::bench
