// The process group most multi-process tests need: rank 0 hosts a TCPStore
// on the run's port, every rank joins it, and the group runs `backend` with
// the given operation timeout.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "harness/multiproc.hpp"
#include "tutti/process_group.hpp"
#include "tutti/tcp_store.hpp"

namespace tutti::testing {

inline std::shared_ptr<ProcessGroup> make_group(
    const RankContext& ctx, const std::string& backend,
    std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
  auto store =
      std::make_shared<TCPStore>("127.0.0.1", TCPStoreOptions{.port = ctx.port,
                                                              .is_server = ctx.rank == 0,
                                                              .num_workers = ctx.world_size,
                                                              .timeout = std::chrono::seconds(60)});
  return std::make_shared<ProcessGroup>(
      store, ctx.rank, ctx.world_size,
      ProcessGroup::Options{.backend = backend, .timeout = timeout});
}

inline std::shared_ptr<ProcessGroup> make_gloo_group(
    const RankContext& ctx, std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
  return make_group(ctx, "gloo", timeout);
}

}  // namespace tutti::testing
