#include "core/error_context.hpp"

#include <fmt/format.h>

#include "tutti/errors.hpp"

namespace tutti {

std::exception_ptr with_context(const std::string& what) {
  try {
    throw;
  } catch (const InvalidArgument& e) {
    return std::make_exception_ptr(InvalidArgument(fmt::format("{}: {}", what, e.what())));
  } catch (const TimeoutError& e) {
    return std::make_exception_ptr(TimeoutError(fmt::format("{}: {}", what, e.what())));
  } catch (const DistNetworkError& e) {
    return std::make_exception_ptr(DistNetworkError(fmt::format("{}: {}", what, e.what())));
  } catch (const Error& e) {
    return std::make_exception_ptr(DistBackendError(fmt::format("{}: {}", what, e.what())));
  } catch (...) {
    return nullptr;
  }
}

std::string message_of(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown error";
  }
}

std::exception_ptr with_detail(std::exception_ptr error, const std::string& detail) {
  if (detail.empty() || !error) return error;
  try {
    std::rethrow_exception(error);
  } catch (const InvalidArgument& e) {
    return std::make_exception_ptr(InvalidArgument(e.what() + detail));
  } catch (const TimeoutError& e) {
    return std::make_exception_ptr(TimeoutError(e.what() + detail));
  } catch (const DistNetworkError& e) {
    return std::make_exception_ptr(DistNetworkError(e.what() + detail));
  } catch (const std::exception& e) {
    return std::make_exception_ptr(DistBackendError(e.what() + detail));
  } catch (...) {
    return error;
  }
}

}  // namespace tutti
