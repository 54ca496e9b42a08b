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

}  // namespace tutti
