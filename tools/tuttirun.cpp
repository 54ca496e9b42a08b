// tuttirun: starts the local ranks of a tutti job, as torchrun or mpirun do.
//
//   tuttirun [-n N] [--nnodes M --node-rank R] [--master-addr A] [--master-port P]
//            [--kill-timeout S] PROGRAM [ARGS...]
//
// Each rank gets the env:// variables, its output lines come out prefixed
// "[rank] ", and when one rank fails the others are stopped. See
// docs/launching.md.
#include <fcntl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "tuttirun/config.hpp"
#include "tuttirun/launcher.hpp"

namespace {

constexpr const char* kFooter = R"(
Every rank gets RANK (node_rank * nproc_per_node + local_rank), WORLD_SIZE,
LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK and NODE_RANK, MASTER_ADDR and
MASTER_PORT. Output lines are prefixed "[RANK] ". SIGINT and SIGTERM are
forwarded to every rank; a second one kills them.

Exit code: 0 if every rank exits 0; else that of the first rank to fail
(128+N if signal N killed it), 128+N if tuttirun received signal N, 127/126
if PROGRAM cannot be found/executed.)";

// CLI11 cannot describe "everything from PROGRAM on" itself.
class Formatter : public CLI::Formatter {
 public:
  std::string make_usage(const CLI::App*, std::string) const override {
    return "Usage: tuttirun [OPTIONS] PROGRAM [ARGS...]\n";
  }
};

// A rank's pipes must not land on fds 0-2 if tuttirun was started with one
// of them closed.
void ensure_standard_fds_open() {
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) >= 0) continue;
    int opened = ::open("/dev/null", O_RDWR);
    if (opened >= 0 && opened != fd) ::close(opened);
  }
}

}  // namespace

int main(int argc, char** argv) {
  ensure_standard_fds_open();

  CLI::App app{"tuttirun: starts the local ranks of a tutti job"};
  app.formatter(std::make_shared<Formatter>());
  app.footer(kFooter);
  // Everything from PROGRAM on belongs to PROGRAM.
  app.prefix_command();
  tuttirun::LaunchConfig config;
  int master_port = 0;
  double kill_timeout_seconds = 3.0;
  app.add_option("-n,--nproc-per-node,--nproc_per_node", config.nproc_per_node,
                 "ranks to start on this node")
      ->capture_default_str();
  app.add_option("--nnodes", config.nnodes, "nodes in the job")->capture_default_str();
  app.add_option("--node-rank,--node_rank", config.node_rank, "this node's index, 0 to nnodes-1")
      ->capture_default_str();
  app.add_option("--master-addr,--master_addr", config.master_addr, "address of the host of rank 0")
      ->capture_default_str();
  auto* port_option =
      app.add_option("--master-port,--master_port", master_port,
                     "port of rank 0's store (default: a free port; required with --nnodes > 1)")
          ->check(CLI::Range(1, 65535));
  app.add_option("--kill-timeout", kill_timeout_seconds,
                 "seconds ranks get to exit after SIGTERM before SIGKILL")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  config.command = app.remaining();
  if (!config.command.empty() && config.command.front() == "--") {
    config.command.erase(config.command.begin());
  } else if (!config.command.empty() && config.command.front().starts_with("-")) {
    std::fprintf(stderr,
                 "tuttirun: unknown option '%s' (see tuttirun --help; put -- before a "
                 "PROGRAM whose name starts with '-')\n",
                 config.command.front().c_str());
    return 2;
  }
  if (port_option->count() > 0) config.master_port = static_cast<uint16_t>(master_port);
  config.kill_timeout =
      std::chrono::milliseconds(static_cast<int64_t>(kill_timeout_seconds * 1000));
  if (auto error = tuttirun::validate(config)) {
    std::fprintf(stderr, "tuttirun: %s\n", error->c_str());
    return 2;
  }

  try {
    if (!config.master_port) config.master_port = tuttirun::find_free_port();
    return tuttirun::launch(config);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tuttirun: %s\n", e.what());
    return 1;
  }
}
