// The flight recorder: every process keeps the last TUTTI_TRACE_BUFFER
// (default 2000; 0 turns it off) operations issued through any of its
// ProcessGroups, each with its group, collective sequence number (or
// point-to-point number), operation, tensor count, dtype, sizes and numel,
// root or peer, state (enqueued, started, completed, failed, with the
// error) and times. Read dumps of all ranks with `tutti-trace DIR`.
//
// Dumps are written as <dir>/tutti-trace.rank<R>.json, R being the
// process's rank in its first top-level group, through a temporary file and
// a rename (a reader never sees half a dump):
//   - automatically when an operation of a group fails (its first failure
//     only), if TUTTI_TRACE_DIR is set;
//   - on SIGUSR1, into TUTTI_TRACE_DIR or else the working directory; the
//     process goes on;
//   - on SIGTERM, if TUTTI_TRACE_DIR is set; the process then terminates as
//     SIGTERM would have (launchers such as tuttirun stop the other ranks
//     with SIGTERM as soon as one fails, often before they fail themselves);
//     the signal handlers are installed with the first group, only for
//     signals the program has no handler of its own for;
//   - on demand, through dump_trace().
//
// When an operation fails, the first rank of the group to fail publishes
// its error in the group's store; errors raised on the other ranks then end
// with "; rank R failed first: <op> #<seq> on group '<g>': <Type>: <what>"
// (same exception type as without it). The note is added when the operation
// completes (Work::finish asks the recorder before anyone can see the work
// complete), so wait(), Work::exception() and the Future all carry it. The
// store is consulted once per group, for at most 2 s: a dead store leaves
// errors as they were. See docs/debugging.md.
#pragma once

#include <cstddef>
#include <string>

namespace tutti {

// Writes this process's flight recorder into `dir` (TUTTI_TRACE_DIR when
// empty), creating the directory if needed, and returns the file's path.
// Overwrites this rank's previous dump. Thread-safe; may be called at any
// time, also while operations run.
// Throws InvalidArgument if dir is empty and TUTTI_TRACE_DIR is unset, and
// tutti::Error naming the path if the file cannot be written.
std::string dump_trace(const std::string& dir = "");

// The same dump as JSON text, without writing anything.
std::string trace_json();

// Entries the recorder keeps (TUTTI_TRACE_BUFFER); 0 when it is off.
size_t trace_buffer_size();

}  // namespace tutti
