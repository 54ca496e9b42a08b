#include "backends/gloo/rendezvous.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gloo/transport/tcp/address.h>

#include <vector>

namespace tutti::gloo_backend {
namespace {

// The address rank `peer` published for its pair with `rank`, as gloo
// prints it; empty if the published value does not have the expected shape.
std::string peer_address(const std::vector<uint8_t>& published, int rank, int peer, int size) {
  const size_t count = static_cast<size_t>(size - 1);
  if (count == 0 || published.empty() || published.size() % count != 0) return {};
  const size_t one = published.size() / count;
  const size_t index = static_cast<size_t>(rank > peer ? rank - 1 : rank);
  std::vector<char> bytes(published.begin() + static_cast<std::ptrdiff_t>(index * one),
                          published.begin() + static_cast<std::ptrdiff_t>((index + 1) * one));
  try {
    return ::gloo::transport::tcp::Address(bytes).str();
  } catch (...) {
    return {};
  }
}

}  // namespace

std::string explain_connect_failure(Store& store, int rank, int size,
                                    const std::string& gloo_error) {
  std::vector<int> missing;
  std::vector<std::string> addresses(static_cast<size_t>(size));
  try {
    for (int peer = 0; peer < size; ++peer) {
      if (peer == rank) continue;
      const std::string key = std::to_string(peer);
      if (!store.check({key})) {
        missing.push_back(peer);
        continue;
      }
      addresses[static_cast<size_t>(peer)] = peer_address(store.get(key), rank, peer, size);
    }
  } catch (...) {
    return {};  // the store itself is gone; the caller's error says enough
  }
  std::string text;
  if (!missing.empty()) {
    text += fmt::format(
        "; rank{} {} never published {} address: check that {} started, with world size {} and "
        "the same store (MASTER_ADDR/MASTER_PORT)",
        missing.size() > 1 ? "s" : "", fmt::join(missing, ", "),
        missing.size() > 1 ? "their" : "its", missing.size() > 1 ? "they were" : "it was", size);
  }
  for (int peer = 0; peer < size; ++peer) {
    const std::string& address = addresses[static_cast<size_t>(peer)];
    if (!address.empty() && gloo_error.find(address) != std::string::npos) {
      // gloo prints a pair's address as [host]:port$pair; the pair number
      // means nothing to a user.
      text += fmt::format(
          "; the connection that failed was to rank {} at {}: check that this host can reach "
          "that address (firewall, or TUTTI_SOCKET_IFNAME on rank {})",
          peer, address.substr(0, address.rfind('$')), peer);
    }
  }
  return text;
}

}  // namespace tutti::gloo_backend
