#include "store/store_util.hpp"

#include <fmt/format.h>

#include <charconv>

#include "tutti/errors.hpp"

namespace tutti::store_util {

int64_t parse_counter(const std::string& key, const std::vector<uint8_t>& value) {
  int64_t result = 0;
  const char* begin = reinterpret_cast<const char*>(value.data());
  const char* end = begin + value.size();
  auto [ptr, ec] = std::from_chars(begin, end, result);
  if (value.empty() || ec != std::errc() || ptr != end) {
    throw InvalidArgument(
        fmt::format("add: key {} holds a value that is not a decimal integer ({} bytes)",
                    quote_key(key), value.size()));
  }
  return result;
}

std::vector<uint8_t> format_counter(int64_t value) {
  std::string text = std::to_string(value);
  return std::vector<uint8_t>(text.begin(), text.end());
}

std::string quote_key(const std::string& key) {
  constexpr size_t kMaxShown = 200;
  std::string out = "'";
  for (size_t i = 0; i < key.size() && i < kMaxShown; ++i) {
    auto c = static_cast<unsigned char>(key[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'') {
      out.push_back(static_cast<char>(c));
    } else {
      out += fmt::format("\\x{:02x}", c);
    }
  }
  if (key.size() > kMaxShown)
    out += fmt::format("...' ({} bytes)", key.size());
  else
    out.push_back('\'');
  return out;
}

std::string quote_keys(const std::vector<std::string>& keys) {
  std::string out;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (i > 0) out += ", ";
    out += quote_key(keys[i]);
  }
  return out;
}

CompareSetResult compare_set_rule(const std::vector<uint8_t>* current,
                                  const std::vector<uint8_t>& expected,
                                  const std::vector<uint8_t>& desired) {
  if (current == nullptr) {
    if (expected.empty()) return {true, desired};
    return {false, expected};
  }
  if (*current == expected) return {true, desired};
  return {false, *current};
}

}  // namespace tutti::store_util
