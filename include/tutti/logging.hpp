// Log verbosity. The level starts from TUTTI_LOG_LEVEL
// (TRACE, DEBUG, INFO, WARNING, ERROR, OFF; default WARNING). Lines go to
// stderr, each prefixed with the rank and group they concern.
#pragma once

namespace tutti {

enum class LogLevel : int { TRACE, DEBUG, INFO, WARNING, ERROR, OFF };

void set_log_level(LogLevel level);
LogLevel log_level();

}  // namespace tutti
