#include "tutti/store.hpp"

#include <fmt/format.h>

#include "tutti/errors.hpp"

namespace tutti {

std::vector<std::vector<uint8_t>> Store::multi_get(const std::vector<std::string>& keys) {
  std::vector<std::vector<uint8_t>> values;
  values.reserve(keys.size());
  for (const auto& key : keys) values.push_back(get(key));
  return values;
}

void Store::multi_set(const std::vector<std::string>& keys,
                      const std::vector<std::vector<uint8_t>>& values) {
  if (keys.size() != values.size()) {
    throw InvalidArgument(
        fmt::format("multi_set: {} keys but {} values", keys.size(), values.size()));
  }
  for (size_t i = 0; i < keys.size(); ++i) set(keys[i], values[i]);
}

void Store::set_timeout(std::chrono::milliseconds timeout) {
  std::lock_guard<std::mutex> lock(timeout_mutex_);
  timeout_ = timeout;
}

std::chrono::milliseconds Store::timeout() const {
  std::lock_guard<std::mutex> lock(timeout_mutex_);
  return timeout_;
}

}  // namespace tutti
