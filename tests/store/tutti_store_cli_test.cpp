// The standalone tutti-store binary: it serves the same protocol, honours a
// token from the environment, and exits cleanly on SIGTERM.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "tutti/errors.hpp"
#include "tutti/tcp_store.hpp"

namespace tutti {
namespace {

using namespace std::chrono_literals;

// A running tutti-store, stopped with SIGTERM by stop() or the destructor.
class StoreProcess {
 public:
  explicit StoreProcess(const char* token) {
    int out[2];
    if (pipe(out) != 0) throw std::runtime_error("pipe");
    pid_ = fork();
    if (pid_ == 0) {
      dup2(out[1], STDOUT_FILENO);
      close(out[0]);
      close(out[1]);
      if (token != nullptr) setenv("TUTTI_STORE_TOKEN", token, 1);
      execl(TUTTI_STORE_BIN, TUTTI_STORE_BIN, "--port", "0", static_cast<char*>(nullptr));
      _exit(127);
    }
    close(out[1]);
    output_ = fdopen(out[0], "r");
    char line[256] = {};
    if (fgets(line, sizeof line, output_) == nullptr) return;
    unsigned port = 0;
    if (std::sscanf(line, "tutti-store listening on port %u", &port) == 1) port_ = port;
  }
  ~StoreProcess() {
    if (pid_ > 0) stop();
    if (output_ != nullptr) fclose(output_);
  }

  uint16_t port() const { return static_cast<uint16_t>(port_); }

  // Returns the exit status and the last line printed.
  std::pair<int, std::string> stop() {
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    std::string last;
    char line[512];
    while (fgets(line, sizeof line, output_) != nullptr) last = line;
    return {status, last};
  }

 private:
  pid_t pid_ = -1;
  FILE* output_ = nullptr;
  unsigned port_ = 0;
};

TEST(TuttiStoreCli, ServesClientsAndStopsOnSigterm) {
  StoreProcess server(nullptr);
  ASSERT_NE(server.port(), 0) << "tutti-store did not print its port";
  TCPStore a("127.0.0.1", {.port = server.port(), .timeout = 10s});
  TCPStore b("127.0.0.1", {.port = server.port(), .timeout = 10s});
  a.set("k", std::string("v"));
  EXPECT_EQ(b.get_string("k"), "v");
  EXPECT_EQ(b.add("n", 2), 2);
  auto [status, last] = server.stop();
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_NE(last.find("stopping on signal 15"), std::string::npos) << last;
  EXPECT_THROW(a.get("k"), DistNetworkError);
}

TEST(TuttiStoreCli, RequiresTheTokenFromTheEnvironment) {
  StoreProcess server("hunter2");
  ASSERT_NE(server.port(), 0);
  EXPECT_THROW(TCPStore("127.0.0.1", {.port = server.port(), .timeout = 5s, .token = ""}),
               DistStoreError);
  TCPStore ok("127.0.0.1", {.port = server.port(), .timeout = 5s, .token = "hunter2"});
  ok.set("k", std::string("v"));
  EXPECT_EQ(ok.get_string("k"), "v");
}

}  // namespace
}  // namespace tutti
