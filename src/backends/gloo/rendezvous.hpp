// Naming the peer behind a failed gloo rendezvous.
//
// gloo's connectFullMesh publishes, under key "<rank>" of the store it is
// given, the addresses of the rank's pairs to every other rank, in rank
// order with itself left out; then each rank waits for every peer's key and
// connects. Its errors name neither the peer nor (for a missing key) the
// rank. This reads the same keys back after a failure to say which.
#pragma once

#include <string>

#include "tutti/store.hpp"

namespace tutti::gloo_backend {

// For a failed connectFullMesh of `rank` in a group of `size` over `store`
// (already prefixed as gloo saw it): which peers never published their
// addresses, and which peer's address appears in gloo's error text. Never
// throws; an empty string when nothing can be said (e.g. the store is gone).
std::string explain_connect_failure(Store& store, int rank, int size,
                                    const std::string& gloo_error);

}  // namespace tutti::gloo_backend
