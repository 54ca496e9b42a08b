// Starts one rank as a child process.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "tuttirun/fd.hpp"

namespace tuttirun {

// A rank that has exec'ed its program.
struct SpawnedRank {
  pid_t pid = -1;
  UniqueFd stdout_read;  // non-blocking read ends of the rank's stdout and stderr
  UniqueFd stderr_read;
};

// The rank could not be started; nothing of it is left running.
class SpawnError : public std::runtime_error {
 public:
  SpawnError(const std::string& message, int exit_code)
      : std::runtime_error(message), exit_code_(exit_code) {}
  // What tuttirun exits with, as a shell would: 127 when the program is not
  // found, 126 when it is found but cannot be executed, 1 otherwise.
  int exit_code() const { return exit_code_; }

 private:
  int exit_code_;
};

struct SpawnRequest {
  const std::vector<std::string>* command = nullptr;      // PROGRAM and its arguments
  const std::vector<std::string>* environment = nullptr;  // "NAME=value" entries
  const sigset_t* signal_mask = nullptr;                  // the mask the rank starts with
  int stdin_fd = -1;                                      // what the rank reads as stdin
};

// Forks and execs the rank: PROGRAM is looked up in PATH as by execvp, the
// rank leads a process group of its own (so a terminal's Ctrl-C reaches only
// tuttirun, which forwards it once), receives SIGKILL if tuttirun dies, gets
// default SIGPIPE handling and the given signal mask, and writes stdout and
// stderr into pipes returned here. Returns once exec has succeeded; throws
// SpawnError, naming the program and the reason, once it has failed (the
// child is reaped by then).
SpawnedRank spawn_rank(const SpawnRequest& request);

}  // namespace tuttirun
