// The backends compiled into libtutti. Adding one: a folder under
// src/backends/ and one line in builtin.cpp.
#pragma once

#include <vector>

#include "tutti/backend.hpp"

namespace tutti {

std::vector<BackendInfo> builtin_backends();

}  // namespace tutti
