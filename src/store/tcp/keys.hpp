// Keys the TCPStore keeps for itself. They start with a NUL byte, which no
// text key has, and are not counted by num_keys().
#pragma once

#include <string>
#include <string_view>

namespace tutti::tcpstore {

inline const std::string kInternalPrefix = std::string("\0tutti/", 7);
// Incremented by every client on connecting (wait_workers counts it).
inline const std::string kWorkersKey = kInternalPrefix + "workers";
// Set by the client whose increment reached num_workers.
inline const std::string kAllJoinedKey = kInternalPrefix + "all_joined";

inline bool is_internal_key(std::string_view key) {
  return key.size() >= kInternalPrefix.size() &&
         key.compare(0, kInternalPrefix.size(), kInternalPrefix) == 0;
}

}  // namespace tutti::tcpstore
