// The collective suite shared by every backend: each function runs one
// family of operations over every dtype, reduce op and size that applies,
// on the calling rank's group, and checks every result against the
// independent reference (reference.hpp). Failures are GoogleTest failures
// that name the operation, dtype, op, size and rank.
//
// Every rank of the group calls the same function; the functions issue the
// same sequence of operations on every rank.
#pragma once

#include <cstdint>
#include <ostream>
#include <vector>

#include "tutti/process_group.hpp"

namespace tutti::testing {

// 0, 1, an odd count, and one of at least 4 MiB.
std::vector<int64_t> suite_counts(DType dtype);
std::vector<DType> all_dtypes();
// The reduce ops that apply to dtype (PREMUL_SUM with factor 0.5).
std::vector<ReduceOp> reduce_ops_for(DType dtype);

void check_broadcast(ProcessGroup& pg);
void check_allreduce(ProcessGroup& pg);
void check_allreduce_coalesced(ProcessGroup& pg);
void check_reduce(ProcessGroup& pg);
void check_allgather(ProcessGroup& pg);  // allgather and its three other forms
void check_gather_scatter(ProcessGroup& pg);
void check_reduce_scatter(ProcessGroup& pg);  // the list, tensor and coalesced forms
void check_alltoall(ProcessGroup& pg);        // alltoall, alltoall_base (equal and uneven)
void check_point_to_point(ProcessGroup& pg);  // send/recv in a ring, recv_anysource
void check_barrier(ProcessGroup& pg);
void check_allreduce_sparse(ProcessGroup& pg);

// Every check above, named, for suites parameterized over them.
struct SuiteFamily {
  const char* name;
  void (*check)(ProcessGroup&);
};
inline void PrintTo(const SuiteFamily& family, std::ostream* os) { *os << family.name; }
inline constexpr SuiteFamily kSuiteFamilies[] = {
    {"Broadcast", check_broadcast},
    {"Allreduce", check_allreduce},
    {"AllreduceCoalesced", check_allreduce_coalesced},
    {"Reduce", check_reduce},
    {"Allgather", check_allgather},
    {"GatherScatter", check_gather_scatter},
    {"ReduceScatter", check_reduce_scatter},
    {"Alltoall", check_alltoall},
    {"PointToPoint", check_point_to_point},
    {"Barrier", check_barrier},
    {"AllreduceSparse", check_allreduce_sparse},
};

}  // namespace tutti::testing
