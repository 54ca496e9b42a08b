// Memory bandwidth of the reduction kernels against memcpy.
//
// Each benchmark streams over two buffers of 16 MiB (together about the size
// of a server L3) or 256 MiB (far beyond it): SUM with combine_into (dst[i] +=
// src[i]: two reads and one write per element) for float32, float16 and
// bfloat16, and memcpy (one read, one write) as the ceiling. Bytes processed
// count every byte read or written, so the figures compare directly. After the
// usual table a summary gives each kernel's bandwidth as a fraction of
// memcpy's at the same size, from the medians when run with
// --benchmark_repetitions.
//
// Rates are per second of the benchmark thread's CPU time, Google Benchmark's
// default. On an idle machine that is the wall time (one thread, no sleeps);
// on a shared one it leaves out the time the thread waited for a core, which
// says nothing about the kernels. Interleaving the repetitions also keeps a
// burst of load from landing on one benchmark only.
//
// The kernels run through the dispatched entry point (the variant this CPU
// selects) and, where that is not the generic variant, through the generic
// variant too, which is what CPUs without AVX2 get.
//
// Run as (one command line):
//   reduce_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
//                --benchmark_enable_random_interleaving=true
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "core/half.hpp"
#include "core/reduce.hpp"
#include "core/reduce_variants.hpp"
#include "tutti/types.hpp"

namespace {

constexpr size_t kMiB = size_t{1} << 20;
constexpr size_t kSizes[] = {16 * kMiB, 256 * kMiB};

// A page-aligned buffer whose pages are all faulted in before any timing.
class Buffer {
 public:
  explicit Buffer(size_t bytes)
      : bytes_(bytes), data_(static_cast<unsigned char*>(std::aligned_alloc(4096, bytes))) {
    if (!data_) throw std::bad_alloc();
    std::memset(data_.get(), 0, bytes_);
  }
  unsigned char* data() const { return data_.get(); }
  size_t bytes() const { return bytes_; }

  // Every element set to `value` (a float32, float16 or bfloat16 one).
  template <typename T>
  void fill(T value) {
    T* elements = reinterpret_cast<T*>(data_.get());
    for (size_t i = 0; i < bytes_ / sizeof(T); ++i) elements[i] = value;
  }

 private:
  struct Free {
    void operator()(unsigned char* p) const { std::free(p); }
  };
  size_t bytes_;
  std::unique_ptr<unsigned char, Free> data_;
};

using CombineFn = void (*)(void*, const void*, const void*, size_t, tutti::DType,
                           tutti::ReduceOp::Kind);

// combine_into(dst, src) by SUM, with src holding ones and dst starting at zero: the sums stay
// finite and normal in every format, so no slow special cases are timed.
void bench_sum(benchmark::State& state, CombineFn combine, tutti::DType dtype, size_t bytes) {
  Buffer dst(bytes), src(bytes);
  switch (dtype) {
    case tutti::DType::Float16:
      src.fill(tutti::float_to_half(1.0f));
      break;
    case tutti::DType::BFloat16:
      src.fill(tutti::float_to_bf16(1.0f));
      break;
    default:
      src.fill(1.0f);
      break;
  }
  const size_t n = bytes / tutti::itemsize(dtype);
  for (auto _ : state) {
    combine(dst.data(), dst.data(), src.data(), n, dtype, tutti::ReduceOp::SUM);
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * 3 * bytes));
}

void bench_memcpy(benchmark::State& state, size_t bytes) {
  Buffer dst(bytes), src(bytes);
  src.fill(1.0f);
  for (auto _ : state) {
    std::memcpy(dst.data(), src.data(), bytes);
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * 2 * bytes));
}

std::string size_name(size_t bytes) { return std::to_string(bytes / kMiB) + "MiB"; }

// The console table, then a summary of each kernel against memcpy at the
// same size. Benchmark names are "<what>/<size>", <what> being "memcpy" or
// "<kernel>/<dtype>".
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      if (run.error_occurred) continue;
      const bool median = run.run_type == Run::RT_Aggregate && run.aggregate_name == "median";
      const bool single = run.run_type == Run::RT_Iteration && run.repetitions <= 1;
      if (!median && !single) continue;
      const auto rate = run.counters.find("bytes_per_second");
      if (rate == run.counters.end()) continue;
      const std::string& name = run.run_name.function_name;
      const size_t slash = name.rfind('/');
      results_[name.substr(slash + 1)][name.substr(0, slash)] = rate->second.value;
      medians_ = medians_ || median;
    }
  }

  void Finalize() override {
    ConsoleReporter::Finalize();
    std::printf("\nBandwidth vs memcpy (bytes read + written per second%s):\n",
                medians_ ? ", medians" : "");
    for (const auto& [size, kernels] : results_) {
      const auto baseline = kernels.find("memcpy");
      if (baseline == kernels.end()) continue;
      const double memcpy_rate = baseline->second;
      for (const auto& [what, rate] : kernels) {
        std::printf("  %-24s %-7s %7.2f GB/s  %5.1f%% of memcpy\n", what.c_str(), size.c_str(),
                    rate / 1e9, 100.0 * rate / memcpy_rate);
      }
    }
  }

 private:
  // Bytes per second by size, then by what ran ("sum/float32", "memcpy").
  std::map<std::string, std::map<std::string, double>> results_;
  bool medians_ = false;
};

void register_benchmarks() {
  struct Kernel {
    std::string name;
    CombineFn combine;
  };
  std::vector<Kernel> kernels = {{"sum", tutti::kernels::combine}};
  if (tutti::kernels::using_vectorized_kernels()) {
    kernels.push_back({"sum_generic", tutti::kernels::available_variants().front().combine});
  }
  for (size_t bytes : kSizes) {
    benchmark::RegisterBenchmark(("memcpy/" + size_name(bytes)).c_str(), bench_memcpy, bytes)
        ->Unit(benchmark::kMillisecond);
    for (const Kernel& kernel : kernels) {
      for (tutti::DType dtype :
           {tutti::DType::Float32, tutti::DType::Float16, tutti::DType::BFloat16}) {
        const std::string name =
            kernel.name + "/" + tutti::to_string(dtype) + "/" + size_name(bytes);
        benchmark::RegisterBenchmark(name.c_str(), bench_sum, kernel.combine, dtype, bytes)
            ->Unit(benchmark::kMillisecond);
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  std::printf("reduction kernels: %s variant\n", tutti::kernels::active_variant().name);
  register_benchmarks();
  RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
