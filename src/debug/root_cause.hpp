// Root cause on every rank: the first rank of a group to fail an operation
// publishes its error in the group's store; the errors the other ranks raise
// afterwards end with "; rank R failed first: <op> ...: <ErrorType>: <what>".
//
// Bounded: a rank consults the store once per group (the first failure it
// sees), on a helper thread it waits for at most `timeout` (2 s), so a dead
// or hung store (rank 0 killed) delays a failure by at most that, and the
// error then goes out unchanged. The decoration never changes an error's
// type. Racy by nature: a survivor of a crashed peer may fail before the
// crashed peer could publish anything; the first publication wins, so the
// others then name that survivor.
#pragma once

#include <chrono>
#include <exception>
#include <memory>
#include <mutex>
#include <string>

#include "tutti/store.hpp"

namespace tutti::trace {

// "TimeoutError", "DistNetworkError", ... ("std::exception" for others).
std::string error_type_name(const std::exception_ptr& error);
std::string error_message(const std::exception_ptr& error);
// `error` with `note` appended to its message, as the same tutti error type;
// any other exception is returned unchanged.
std::exception_ptr with_note(const std::exception_ptr& error, const std::string& note);

class RootCause {
 public:
  static constexpr std::chrono::milliseconds kStoreTimeout{2000};
  // Under the group's store (already prefixed for subgroups).
  static constexpr const char* kKey = "tutti/first_failure";

  struct Verdict {
    enum Kind { MINE, OTHER, UNKNOWN } kind = UNKNOWN;
    std::string text;  // the winning publication (MINE, OTHER)
  };

  explicit RootCause(std::shared_ptr<Store> store,
                     std::chrono::milliseconds timeout = kStoreTimeout)
      : store_(std::move(store)), timeout_(timeout) {}

  // The first call publishes `summary` unless a publication is already
  // there, and returns which one holds; later calls return the same verdict
  // without touching the store. UNKNOWN: no store, or it did not answer in
  // time. Thread-safe; concurrent callers wait for the first.
  Verdict publish(const std::string& summary);

 private:
  const std::shared_ptr<Store> store_;
  const std::chrono::milliseconds timeout_;
  std::mutex mutex_;
  bool decided_ = false;  // GUARDED_BY(mutex_)
  Verdict verdict_;       // GUARDED_BY(mutex_)
};

}  // namespace tutti::trace
