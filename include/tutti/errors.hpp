// The exception hierarchy. Every error tutti raises derives from Error.
//
//   InvalidArgument   bad input; raised before any communication starts
//   TimeoutError      a deadline passed
//   DistNetworkError  a peer or the store is unreachable, or a connection broke
//   DistStoreError    the store refused or failed an operation
//   DistBackendError  anything a backend or the library below it reports
//
// Messages name the operation, the group, this rank and the peer where known.
#pragma once

#include <stdexcept>
#include <string>

namespace tutti {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

class InvalidArgument : public Error {
 public:
  using Error::Error;
};

class TimeoutError : public Error {
 public:
  using Error::Error;
};

class DistNetworkError : public Error {
 public:
  using Error::Error;
};

class DistStoreError : public Error {
 public:
  using Error::Error;
};

class DistBackendError : public Error {
 public:
  using Error::Error;
};

}  // namespace tutti
