#include "debug/root_cause.hpp"

#include <condition_variable>
#include <optional>
#include <thread>
#include <vector>

#include "tutti/debug.hpp"
#include "tutti/errors.hpp"

namespace tutti::trace {

std::string error_type_name(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const InvalidArgument&) {
    return "InvalidArgument";
  } catch (const TimeoutError&) {
    return "TimeoutError";
  } catch (const DistNetworkError&) {
    return "DistNetworkError";
  } catch (const DistStoreError&) {
    return "DistStoreError";
  } catch (const DesyncError&) {
    return "DesyncError";
  } catch (const DistBackendError&) {
    return "DistBackendError";
  } catch (const Error&) {
    return "Error";
  } catch (const std::exception&) {
    return "std::exception";
  } catch (...) {
    return "unknown exception";
  }
}

std::string error_message(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "(no message)";
  }
}

std::exception_ptr with_note(const std::exception_ptr& error, const std::string& note) {
  try {
    std::rethrow_exception(error);
  } catch (const InvalidArgument& e) {
    return std::make_exception_ptr(InvalidArgument(e.what() + note));
  } catch (const TimeoutError& e) {
    return std::make_exception_ptr(TimeoutError(e.what() + note));
  } catch (const DistNetworkError& e) {
    return std::make_exception_ptr(DistNetworkError(e.what() + note));
  } catch (const DistStoreError& e) {
    return std::make_exception_ptr(DistStoreError(e.what() + note));
  } catch (const DesyncError& e) {  // TUTTI_DEBUG=DETAIL's, a DistBackendError
    return std::make_exception_ptr(DesyncError(e.what() + note));
  } catch (const DistBackendError& e) {
    return std::make_exception_ptr(DistBackendError(e.what() + note));
  } catch (const Error& e) {
    return std::make_exception_ptr(Error(e.what() + note));
  } catch (...) {
    return error;
  }
}

namespace {

// store->compare_set on a thread of its own, waited for at most `timeout`.
// A call that does not return in time is left to finish (or fail) alone;
// it owns everything it touches.
std::optional<std::vector<uint8_t>> bounded_compare_set(std::shared_ptr<Store> store,
                                                        const std::string& key,
                                                        std::vector<uint8_t> desired,
                                                        std::chrono::milliseconds timeout) {
  struct Shared {
    std::mutex mutex;
    std::condition_variable cv;
    bool done = false;                          // GUARDED_BY(mutex)
    std::optional<std::vector<uint8_t>> value;  // GUARDED_BY(mutex)
  };
  auto shared = std::make_shared<Shared>();
  try {
    std::thread([store = std::move(store), shared, key, desired = std::move(desired)] {
      std::optional<std::vector<uint8_t>> value;
      try {
        value = store->compare_set(key, {}, desired);
      } catch (...) {
        // A dead store: the error goes out without a root cause.
      }
      std::lock_guard<std::mutex> lock(shared->mutex);
      shared->value = std::move(value);
      shared->done = true;
      shared->cv.notify_all();
    }).detach();
  } catch (const std::system_error&) {
    return std::nullopt;  // no thread to spare: skip the root cause
  }
  std::unique_lock<std::mutex> lock(shared->mutex);
  if (!shared->cv.wait_for(lock, timeout, [&] { return shared->done; })) return std::nullopt;
  return shared->value;
}

}  // namespace

RootCause::Verdict RootCause::publish(const std::string& summary) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (decided_) return verdict_;
  decided_ = true;
  if (!store_) return verdict_;
  auto value = bounded_compare_set(store_, kKey,
                                   std::vector<uint8_t>(summary.begin(), summary.end()), timeout_);
  if (!value || value->empty()) return verdict_;
  verdict_.text.assign(value->begin(), value->end());
  verdict_.kind = verdict_.text == summary ? Verdict::MINE : Verdict::OTHER;
  return verdict_;
}

}  // namespace tutti::trace
