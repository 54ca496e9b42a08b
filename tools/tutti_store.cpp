// tutti-store: a standalone TCPStore server, for jobs whose rank 0 should not
// host the store (or that outlive any one rank).
//
//   tutti-store --port 29500 [--token-env] [--max-value-bytes N]
//
// Serves until SIGINT or SIGTERM.
#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <cstdlib>

#include "store/tcp/server.hpp"
#include "tutti/errors.hpp"

int main(int argc, char** argv) {
  CLI::App app{"tutti-store: a standalone TCPStore server"};
  uint16_t port = 29500;
  size_t max_value_bytes = size_t{64} << 20;
  app.add_option("-p,--port", port, "TCP port to listen on (0 picks a free one)")
      ->capture_default_str();
  app.add_option("--max-value-bytes", max_value_bytes, "largest value a client may store")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  // Block the signals before any thread starts, then wait for them here.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  tutti::tcpstore::ServerOptions options;
  options.port = port;
  options.limits.max_value_bytes = max_value_bytes;
  if (const char* token = std::getenv("TUTTI_STORE_TOKEN")) options.token = token;
  try {
    tutti::tcpstore::Server server(options);
    std::printf("tutti-store listening on port %u%s\n", server.port(),
                options.token.empty() ? "" : " (token required)");
    std::fflush(stdout);
    int received = 0;
    sigwait(&signals, &received);
    auto stats = server.stats();
    std::printf(
        "tutti-store: stopping on signal %d after %llu connections, %llu requests, "
        "%llu refused\n",
        received, static_cast<unsigned long long>(stats.connections_accepted),
        static_cast<unsigned long long>(stats.requests),
        static_cast<unsigned long long>(stats.connections_rejected));
  } catch (const tutti::Error& e) {
    std::fprintf(stderr, "tutti-store: %s\n", e.what());
    return 1;
  }
  return 0;
}
