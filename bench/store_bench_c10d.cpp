// store_bench_c10d: the c10d side of store_bench. A worker only, run by
// store_bench, measuring PyTorch's c10d::TCPStore (libtorch 1.13 API) with
// the same harness as tutti. Built only when CMake finds libtorch; no other
// file of the benchmark includes a torch header.
#include <CLI/CLI.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "store_bench_driver.hpp"
#include "store_bench_harness.hpp"

namespace store_bench {
namespace {

class C10dDriver final : public Driver {
 public:
  C10dDriver(const std::string& host, const c10d::TCPStoreOptions& opts) : store_(host, opts) {}

  void set(const std::string& key, const std::vector<uint8_t>& value) override {
    store_.set(key, value);
  }
  std::vector<uint8_t> get(const std::string& key) override { return store_.get(key); }
  int64_t add(const std::string& key, int64_t delta) override { return store_.add(key, delta); }
  void wait(const std::vector<std::string>& keys) override { store_.wait(keys); }
  uint16_t port() const override { return store_.getPort(); }

 private:
  c10d::TCPStore store_;
};

std::unique_ptr<Driver> serve(std::chrono::milliseconds timeout) {
  c10d::TCPStoreOptions opts;
  opts.port = 0;
  opts.isServer = true;
  // numWorkers unset: neither server nor clients run c10d's worker count, so
  // both stores do the same work (connect, set, wait) in the rendezvous.
  opts.waitWorkers = false;
  opts.timeout = timeout;
  return std::make_unique<C10dDriver>("127.0.0.1", opts);
}

std::unique_ptr<Driver> connect(const std::string& host, uint16_t port,
                                std::chrono::milliseconds timeout) {
  c10d::TCPStoreOptions opts;
  opts.port = port;
  opts.waitWorkers = false;
  opts.timeout = timeout;
  return std::make_unique<C10dDriver>(host, opts);
}

}  // namespace

StoreKind c10d_store_kind() { return {"c10d", &serve, &connect}; }

}  // namespace store_bench

int main(int argc, char** argv) {
  store_bench::WorkerArgs args;
  CLI::App app{"c10d::TCPStore worker of store_bench; run store_bench instead"};
  store_bench::add_worker_options(app, &args);
  app.get_option("--worker")->required();
  CLI11_PARSE(app, argc, argv);
  return store_bench::run_worker(store_bench::c10d_store_kind(), args);
}
