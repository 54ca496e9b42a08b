// Key-value stores through which ranks find each other (rendezvous).
//
// Keys are strings of any bytes; values are byte vectors. Every blocking call
// (get, wait) honours the store's timeout, or the one it is given, and throws
// TimeoutError naming the keys. Implementations are thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace tutti {

inline constexpr std::chrono::milliseconds kDefaultStoreTimeout{300 * 1000};

class Store {
 public:
  explicit Store(std::chrono::milliseconds timeout = kDefaultStoreTimeout) : timeout_(timeout) {}
  virtual ~Store() = default;
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  virtual void set(const std::string& key, const std::vector<uint8_t>& value) = 0;
  // Waits up to timeout() for the key to exist.
  virtual std::vector<uint8_t> get(const std::string& key) = 0;
  // Atomically adds delta to the integer stored at key (a missing key counts
  // as 0) and returns the new value.
  virtual int64_t add(const std::string& key, int64_t delta) = 0;
  // Atomically: if the key holds `expected` (or is missing and expected is
  // empty), store `desired` and return it; else return the current value
  // (`expected` if the key is missing).
  virtual std::vector<uint8_t> compare_set(const std::string& key,
                                           const std::vector<uint8_t>& expected,
                                           const std::vector<uint8_t>& desired) = 0;
  // True if the key existed.
  virtual bool delete_key(const std::string& key) = 0;
  // True if all keys exist now; does not wait.
  virtual bool check(const std::vector<std::string>& keys) = 0;
  void wait(const std::vector<std::string>& keys) { wait(keys, timeout()); }
  virtual void wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout) = 0;
  virtual int64_t num_keys() = 0;
  // Appends to the value at key (creating it). Atomic.
  virtual void append(const std::string& key, const std::vector<uint8_t>& value) = 0;
  // Not atomic as a whole unless a store says so; each key is.
  virtual std::vector<std::vector<uint8_t>> multi_get(const std::vector<std::string>& keys);
  virtual void multi_set(const std::vector<std::string>& keys,
                         const std::vector<std::vector<uint8_t>>& values);

  // String conveniences.
  void set(const std::string& key, const std::string& value) {
    set(key, std::vector<uint8_t>(value.begin(), value.end()));
  }
  std::string get_string(const std::string& key) {
    auto v = get(key);
    return std::string(v.begin(), v.end());
  }

  virtual void set_timeout(std::chrono::milliseconds timeout);
  std::chrono::milliseconds timeout() const;

 private:
  mutable std::mutex timeout_mutex_;
  std::chrono::milliseconds timeout_;  // GUARDED_BY(timeout_mutex_)
};

}  // namespace tutti
