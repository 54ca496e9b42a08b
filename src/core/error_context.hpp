// Naming the operation in an error raised below it.
#pragma once

#include <exception>
#include <string>

namespace tutti {

// Call from a catch block. If the exception in flight is a tutti error,
// returns it with "<what>: " before its message: InvalidArgument,
// TimeoutError and DistNetworkError keep their type, any other tutti error
// becomes DistBackendError. Returns nullptr for any other exception.
std::exception_ptr with_context(const std::string& what);

// `error` with `detail` appended to its message, of the same type as
// with_context() keeps (a non-tutti error becomes DistBackendError). An
// empty detail returns error unchanged.
std::exception_ptr with_detail(std::exception_ptr error, const std::string& detail);

// what() of the exception in `error` ("unknown error" for a non-std one),
// for logs and messages.
std::string message_of(const std::exception_ptr& error);

// Whether the exception in `error` is an E (or derives from it).
template <class E>
bool holds(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const E&) {
    return true;
  } catch (...) {
    return false;
  }
}

}  // namespace tutti
