// Helpers shared by the store implementations.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tutti::store_util {

// add() keeps counters as decimal text, as c10d does, so any client can read
// them with get(). Throws InvalidArgument if the value is not an integer.
int64_t parse_counter(const std::string& key, const std::vector<uint8_t>& value);
std::vector<uint8_t> format_counter(int64_t value);

// 'key' with non-printable bytes shown as \xNN, cut after 200 bytes, for
// messages.
std::string quote_key(const std::string& key);
// "'a', 'b'" for a list of keys.
std::string quote_keys(const std::vector<std::string>& keys);

// compare_set's rule (see Store): the value to keep and to return.
// `current` is null when the key is missing.
struct CompareSetResult {
  bool store;                     // whether to write `desired`
  std::vector<uint8_t> returned;  // what compare_set returns
};
CompareSetResult compare_set_rule(const std::vector<uint8_t>* current,
                                  const std::vector<uint8_t>& expected,
                                  const std::vector<uint8_t>& desired);

}  // namespace tutti::store_util
