// Runs a job: starts the local ranks, relays their output, forwards signals,
// and stops every rank when one fails.
#pragma once

#include "tuttirun/config.hpp"

namespace tuttirun {

// Starts config.nproc_per_node ranks of config.command and waits for all of
// them. Returns tuttirun's exit code:
//   0            every rank exited with code 0;
//   code         the first rank to fail exited with this non-zero code;
//   128 + N      the first rank to fail was killed by signal N, or tuttirun
//                itself received signal N (SIGINT, SIGTERM) and stopped the job;
//   127 / 126    PROGRAM was not found / could not be executed (as a shell).
// Messages about the job go to stderr, prefixed "tuttirun: ".
// REQUIRES: validate(config) passed and config.master_port is set; the
// calling process is single-threaded (signal mask, PR_SET_PDEATHSIG).
int launch(const LaunchConfig& config);

}  // namespace tuttirun
