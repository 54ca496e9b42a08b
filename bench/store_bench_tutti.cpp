// store_bench's driver over tutti::TCPStore.
#include "store_bench_driver.hpp"
#include "tutti/tcp_store.hpp"

namespace store_bench {
namespace {

class TuttiDriver final : public Driver {
 public:
  TuttiDriver(const std::string& host, const tutti::TCPStoreOptions& opts) : store_(host, opts) {}

  void set(const std::string& key, const std::vector<uint8_t>& value) override {
    store_.set(key, value);
  }
  std::vector<uint8_t> get(const std::string& key) override { return store_.get(key); }
  int64_t add(const std::string& key, int64_t delta) override { return store_.add(key, delta); }
  void wait(const std::vector<std::string>& keys) override { store_.wait(keys); }
  uint16_t port() const override { return store_.port(); }

 private:
  tutti::TCPStore store_;
};

std::unique_ptr<Driver> serve(std::chrono::milliseconds timeout) {
  tutti::TCPStoreOptions opts;
  opts.port = 0;
  opts.is_server = true;
  // Workers are counted by the benchmark itself; the server must not wait.
  opts.wait_workers = false;
  opts.timeout = timeout;
  return std::make_unique<TuttiDriver>("127.0.0.1", opts);
}

std::unique_ptr<Driver> connect(const std::string& host, uint16_t port,
                                std::chrono::milliseconds timeout) {
  tutti::TCPStoreOptions opts;
  opts.port = port;
  opts.wait_workers = false;
  opts.timeout = timeout;
  return std::make_unique<TuttiDriver>(host, opts);
}

}  // namespace

StoreKind tutti_store_kind() { return {"tutti", &serve, &connect}; }

}  // namespace store_bench
