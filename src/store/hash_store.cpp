#include "tutti/hash_store.hpp"

#include <fmt/format.h>

#include "store/store_util.hpp"
#include "tutti/errors.hpp"

namespace tutti {

void HashStore::set(const std::string& key, const std::vector<uint8_t>& value) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    data_[key] = value;
  }
  changed_.notify_all();
}

std::vector<uint8_t> HashStore::get(const std::string& key) {
  std::unique_lock<std::mutex> lock(mutex_);
  wait_locked(lock, {key}, timeout(), "get");
  return data_.at(key);
}

int64_t HashStore::add(const std::string& key, int64_t delta) {
  int64_t result;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = data_.find(key);
    int64_t current = it == data_.end() ? 0 : store_util::parse_counter(key, it->second);
    // Wraps like the TCPStore server instead of overflowing (UB).
    result = static_cast<int64_t>(static_cast<uint64_t>(current) + static_cast<uint64_t>(delta));
    data_[key] = store_util::format_counter(result);
  }
  changed_.notify_all();
  return result;
}

std::vector<uint8_t> HashStore::compare_set(const std::string& key,
                                            const std::vector<uint8_t>& expected,
                                            const std::vector<uint8_t>& desired) {
  store_util::CompareSetResult result;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = data_.find(key);
    result =
        store_util::compare_set_rule(it == data_.end() ? nullptr : &it->second, expected, desired);
    if (result.store) data_[key] = desired;
  }
  if (result.store) changed_.notify_all();
  return result.returned;
}

bool HashStore::delete_key(const std::string& key) {
  std::lock_guard<std::mutex> lock(mutex_);
  return data_.erase(key) > 0;
}

bool HashStore::check(const std::vector<std::string>& keys) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (const auto& key : keys) {
    if (data_.find(key) == data_.end()) return false;
  }
  return true;
}

void HashStore::wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mutex_);
  wait_locked(lock, keys, timeout, "wait");
}

int64_t HashStore::num_keys() {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<int64_t>(data_.size());
}

void HashStore::append(const std::string& key, const std::vector<uint8_t>& value) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto& stored = data_[key];
    stored.insert(stored.end(), value.begin(), value.end());
  }
  changed_.notify_all();
}

std::vector<std::vector<uint8_t>> HashStore::multi_get(const std::vector<std::string>& keys) {
  std::unique_lock<std::mutex> lock(mutex_);
  wait_locked(lock, keys, timeout(), "multi_get");
  std::vector<std::vector<uint8_t>> values;
  values.reserve(keys.size());
  for (const auto& key : keys) values.push_back(data_.at(key));
  return values;
}

void HashStore::multi_set(const std::vector<std::string>& keys,
                          const std::vector<std::vector<uint8_t>>& values) {
  if (keys.size() != values.size()) {
    throw InvalidArgument(
        fmt::format("multi_set: {} keys but {} values", keys.size(), values.size()));
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (size_t i = 0; i < keys.size(); ++i) data_[keys[i]] = values[i];
  }
  changed_.notify_all();
}

void HashStore::wait_locked(std::unique_lock<std::mutex>& lock,
                            const std::vector<std::string>& keys, std::chrono::milliseconds timeout,
                            const char* operation) {
  auto all_present = [&] {
    for (const auto& key : keys) {
      if (data_.find(key) == data_.end()) return false;
    }
    return true;
  };
  if (timeout <= std::chrono::milliseconds::zero()) {
    changed_.wait(lock, all_present);
    return;
  }
  if (!changed_.wait_for(lock, timeout, all_present)) {
    std::vector<std::string> missing;
    for (const auto& key : keys) {
      if (data_.find(key) == data_.end()) missing.push_back(key);
    }
    throw TimeoutError(fmt::format("HashStore {}: timed out after {} ms waiting for keys {}",
                                   operation, timeout.count(), store_util::quote_keys(missing)));
  }
}

}  // namespace tutti
