// MpiBackend::monitored_barrier: rank 0 hears from every rank on the
// group's control communicator (Isend/Irecv polled against the deadline), so
// it can name the ranks that did not arrive; then it releases them.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <thread>

#include "backends/mpi/backend.hpp"
#include "backends/mpi/runtime.hpp"
#include "tutti/errors.hpp"

namespace tutti::mpi_backend {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

void MpiBackend::monitored_barrier(const BarrierOptions& opts, bool wait_all_ranks) {
  const milliseconds timeout = resolve(opts.timeout);
  const auto deadline = Clock::now() + timeout;
  const std::string what = fmt::format("monitored_barrier #{} on group '{}' rank {}/{} (mpi)",
                                       ++monitored_barriers_, group_name_, rank(), size());
  if (size() == 1) return;
  constexpr int kArriveTag = 1, kReleaseTag = 2;
  // Tests `request` until it completes or the deadline passes; a late
  // request is cancelled (receives) or freed.
  auto wait_request = [&](MPI_Request* request) {
    for (;;) {
      int flag = 0;
      {
        CallLock call;
        check(MPI_Test(request, &flag, MPI_STATUS_IGNORE), what);
      }
      if (flag) return true;
      if (Clock::now() > deadline) {
        CallLock call;
        MPI_Cancel(request);
        MPI_Request_free(request);
        return false;
      }
      std::this_thread::yield();
    }
  };
  uint8_t token = 1;
  if (rank() != 0) {
    MPI_Request arrive = MPI_REQUEST_NULL, release = MPI_REQUEST_NULL;
    uint8_t released = 0;
    {
      CallLock call;
      check(MPI_Isend(&token, 1, MPI_BYTE, 0, kArriveTag, control_comm_, &arrive), what);
      check(MPI_Irecv(&released, 1, MPI_BYTE, 0, kReleaseTag, control_comm_, &release), what);
    }
    const bool sent = wait_request(&arrive);
    if (!sent || !wait_request(&release)) {
      if (sent == false) {
        CallLock call;
        MPI_Cancel(&release);
        MPI_Request_free(&release);
      }
      throw TimeoutError(fmt::format(
          "{}: rank 0 did not release the barrier within {} ms (rank 0 reports the ranks that "
          "did not arrive)",
          what, timeout.count()));
    }
    return;
  }
  std::vector<uint8_t> arrivals(static_cast<size_t>(size()), 0);
  std::vector<MPI_Request> inbound(static_cast<size_t>(size()), MPI_REQUEST_NULL);
  {
    CallLock call;
    for (int r = 1; r < size(); ++r) {
      check(MPI_Irecv(&arrivals[static_cast<size_t>(r)], 1, MPI_BYTE, r, kArriveTag, control_comm_,
                      &inbound[static_cast<size_t>(r)]),
            what);
    }
  }
  std::vector<int> missing;
  for (int r = 1; r < size(); ++r) {
    if (!missing.empty() && !wait_all_ranks) {
      CallLock call;
      MPI_Cancel(&inbound[static_cast<size_t>(r)]);
      MPI_Request_free(&inbound[static_cast<size_t>(r)]);
      continue;
    }
    if (!wait_request(&inbound[static_cast<size_t>(r)])) missing.push_back(r);
  }
  if (!missing.empty()) {
    throw DistBackendError(fmt::format(
        "{}: rank{} {} failed to pass monitored_barrier within {} ms{}", what,
        missing.size() > 1 ? "s" : "", fmt::join(missing, ", "), timeout.count(),
        wait_all_ranks ? "" : " (wait_all_ranks=false stops at the first missing rank)"));
  }
  std::vector<MPI_Request> outbound(static_cast<size_t>(size()), MPI_REQUEST_NULL);
  {
    CallLock call;
    for (int r = 1; r < size(); ++r) {
      check(MPI_Isend(&token, 1, MPI_BYTE, r, kReleaseTag, control_comm_,
                      &outbound[static_cast<size_t>(r)]),
            what);
    }
  }
  for (int r = 1; r < size(); ++r) {
    if (!wait_request(&outbound[static_cast<size_t>(r)])) {
      throw TimeoutError(fmt::format("{}: releasing rank {} did not finish within {} ms", what, r,
                                     timeout.count()));
    }
  }
}

}  // namespace tutti::mpi_backend
