// Debug levels: how much checking and logging a process group does.
//
//   OFF     nothing beyond the normal argument checks (the default)
//   INFO    logs each group's creation (name, rank, size, backend) and every
//           failed operation with what it was called with, whatever
//           TUTTI_LOG_LEVEL says
//   DETAIL  INFO, and wraps every backend of every group created afterwards
//           (subgroups included) in a checking wrapper: before each
//           collective the ranks compare a fingerprint of the call (op,
//           sequence number, reduce op, root, split sizes, every tensor's
//           dtype, device and shape) and before each send/recv the two ends
//           compare theirs, and a mismatch raises DesyncError on every rank
//           involved instead of a hang or wrong results. See
//           docs/debugging.md for the checks and what they cost.
//
// The level starts from TUTTI_DEBUG (OFF, INFO or DETAIL, any case), read
// once at the first call of debug_level(). set_debug_level() overrides it.
// A level applies to groups created after it is set; a group keeps the
// level it was created under.
#pragma once

#include "tutti/errors.hpp"

namespace tutti {

enum class DebugLevel { OFF, INFO, DETAIL };

// The current level. Throws InvalidArgument, naming the accepted values, if
// TUTTI_DEBUG holds anything else (and set_debug_level was not called).
DebugLevel debug_level();
void set_debug_level(DebugLevel level);
const char* to_string(DebugLevel level);  // "OFF", "INFO", "DETAIL"

// Raised by the DETAIL checks when ranks disagree about an operation: they
// called different collectives, or the same one with arguments that must
// match (sizes, dtypes, root, reduce op, split sizes), a rank did not reach
// a collective the others did, or a send and the recv it met disagree about
// size or dtype (or one of them was never matched). The message names the
// ranks and each field that differs, with both values. Raised before the
// operation reaches the backend, so no data moved.
class DesyncError : public DistBackendError {
 public:
  using DistBackendError::DistBackendError;
};

}  // namespace tutti
