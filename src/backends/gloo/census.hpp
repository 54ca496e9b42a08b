// Naming the rank behind a failed gloo operation.
//
// gloo reports a lost peer as a closed socket and a stalled one as a
// timeout; neither says which rank it was. After the first such failure of
// a group, each rank that is still alive takes a roll call through the
// group's store: it sets "tutti/gloo/alive/<rank>" and appends the
// operation it failed in to "tutti/gloo/alive", then waits a short grace
// for the other ranks' keys. The ranks
// whose keys do not come are named: they are dead, stopped, or not inside
// an operation with this group. No store traffic until something fails.
//
// Bounded: the roll call runs on a helper thread the caller waits for at
// most the grace plus kStoreSlack, so a dead or stopped store delays an
// error by at most that. When the store does not answer or is gone, the
// rank that hosts it (if it is a TCPStore server of this group) is named
// instead: with the default set-up, rank 0.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>

#include "tutti/store.hpp"
#include "tutti/tcp_store.hpp"

namespace tutti::gloo_backend {

class Census {
 public:
  // What the waiting thread allows the store beyond the grace.
  static constexpr std::chrono::milliseconds kStoreSlack{1000};
  // Under the group's store: one key per rank that answered, and the list
  // of answers ("<rank> <failed op>" lines).
  static constexpr const char* kKeyPrefix = "tutti/gloo/alive/";
  static constexpr const char* kListKey = "tutti/gloo/alive";

  // How long a roll call waits for the other ranks: half the operation's
  // timeout, at most 1 s (and at least 100 ms).
  static std::chrono::milliseconds grace(std::chrono::milliseconds timeout);

  // `store_name` names the store in messages ("the store at host:port");
  // `store_host` is the rank whose process serves it, -1 if none or unknown.
  Census(std::shared_ptr<Store> store, int rank, int size, std::string store_name, int store_host);

  // The first call takes the roll call for `failed_op` (e.g. "allreduce
  // #7"; `timed_out` if it failed at its deadline) and returns its verdict,
  // starting with "; "; later calls return the same text at once.
  // Thread-safe; concurrent callers wait for the first. Never throws.
  std::string roll_call(const std::string& failed_op, bool timed_out,
                        std::chrono::milliseconds grace);

  // After the roll call: whether another rank answered that the same
  // operation timed out there. gloo closes every connection of a rank
  // whose operation times out, so its peers in that operation see a
  // closed connection before their own deadline: that is the timeout's
  // doing, not a crash.
  bool peer_timed_out();

 private:
  const std::shared_ptr<Store> store_;
  const int rank_;
  const int size_;
  const std::string store_name_;
  const int store_host_;
  std::mutex mutex_;
  bool done_ = false;            // GUARDED_BY(mutex_)
  std::string verdict_;          // GUARDED_BY(mutex_)
  bool peer_timed_out_ = false;  // GUARDED_BY(mutex_)
};

// The TCPStore under `store` (through PrefixStores), or nullptr.
const TCPStore* find_tcp_store(const Store& store);

// "the store at host:port" for a TCPStore (see find_tcp_store), else "the
// group's store".
std::string describe_store(const Store& store);

}  // namespace tutti::gloo_backend
