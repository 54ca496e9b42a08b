#include "tuttirun/spawn.hpp"

#include <fmt/format.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace tuttirun {
namespace {

// What a child that failed before exec reports through its status pipe.
enum class ChildStep : int { kProcessGroup, kDeathSignal, kRedirect, kExec };

struct ChildFailure {
  ChildStep step;
  int error;
};

const char* describe(ChildStep step) {
  switch (step) {
    case ChildStep::kProcessGroup:
      return "setpgid";
    case ChildStep::kDeathSignal:
      return "prctl(PR_SET_PDEATHSIG)";
    case ChildStep::kRedirect:
      return "redirecting stdin/stdout/stderr";
    case ChildStep::kExec:
      return "exec";
  }
  return "?";
}

// Only async-signal-safe calls from here on, until exec.
[[noreturn]] void fail_in_child(int status_fd, ChildStep step) {
  ChildFailure failure{step, errno};
  [[maybe_unused]] ssize_t ignored = ::write(status_fd, &failure, sizeof failure);
  ::_exit(127);
}

// dup2 clears close-on-exec on the copy, except when fd already is target.
bool move_fd(int fd, int target) {
  if (fd == target) return ::fcntl(fd, F_SETFD, 0) == 0;
  return ::dup2(fd, target) == target;
}

[[noreturn]] void run_child(pid_t parent, const SpawnRequest& request, char* const* argv,
                            char* const* envp, int stdout_fd, int stderr_fd, int status_fd) {
  if (::setpgid(0, 0) != 0) fail_in_child(status_fd, ChildStep::kProcessGroup);
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) fail_in_child(status_fd, ChildStep::kDeathSignal);
  if (::getppid() != parent) ::_exit(127);  // tuttirun died before prctl took effect
  if (!move_fd(request.stdin_fd, STDIN_FILENO) || !move_fd(stdout_fd, STDOUT_FILENO) ||
      !move_fd(stderr_fd, STDERR_FILENO)) {
    fail_in_child(status_fd, ChildStep::kRedirect);
  }
  ::signal(SIGPIPE, SIG_DFL);  // tuttirun ignores it; exec would keep that
  ::sigprocmask(SIG_SETMASK, request.signal_mask, nullptr);
  ::execvpe(argv[0], argv, envp);
  fail_in_child(status_fd, ChildStep::kExec);
}

std::vector<char*> c_strings(const std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  pointers.reserve(strings.size() + 1);
  for (const auto& s : strings) pointers.push_back(const_cast<char*>(s.c_str()));
  pointers.push_back(nullptr);
  return pointers;
}

std::string exec_error_message(const std::string& program, int error) {
  if (error == ENOENT && program.find('/') == std::string::npos) {
    return fmt::format("cannot run '{}': not found in PATH", program);
  }
  return fmt::format("cannot run '{}': {}", program, std::strerror(error));
}

}  // namespace

SpawnedRank spawn_rank(const SpawnRequest& request) {
  const std::string& program = request.command->front();
  // Everything the child needs is prepared before fork.
  std::vector<char*> argv = c_strings(*request.command);
  std::vector<char*> envp = c_strings(*request.environment);
  Pipe out, err, status;
  try {
    out = make_pipe("pipe for stdout");
    err = make_pipe("pipe for stderr");
    status = make_pipe("pipe for exec status");
    set_nonblocking(out.read.get());
    set_nonblocking(err.read.get());
  } catch (const std::system_error& e) {
    throw SpawnError(fmt::format("cannot start '{}': {}", program, e.what()), 1);
  }

  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) {
    throw SpawnError(fmt::format("cannot start '{}': fork: {}", program, std::strerror(errno)), 1);
  }
  if (pid == 0) {
    run_child(parent, request, argv.data(), envp.data(), out.write.get(), err.write.get(),
              status.write.get());
  }

  // The status pipe is close-on-exec: end of file means exec succeeded.
  status.write.reset();
  out.write.reset();
  err.write.reset();
  ChildFailure failure{};
  ssize_t n;
  do {
    n = ::read(status.read.get(), &failure, sizeof failure);
  } while (n < 0 && errno == EINTR);
  if (n == 0) return SpawnedRank{pid, std::move(out.read), std::move(err.read)};

  while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
  if (n != sizeof failure) {
    throw SpawnError(fmt::format("cannot start '{}': lost the child's exec status", program), 1);
  }
  if (failure.step == ChildStep::kExec) {
    throw SpawnError(exec_error_message(program, failure.error),
                     failure.error == ENOENT ? 127 : 126);
  }
  throw SpawnError(fmt::format("cannot start '{}': {} failed in the child: {}", program,
                               describe(failure.step), std::strerror(failure.error)),
                   1);
}

}  // namespace tuttirun
