// The process-wide MPI state the MPI backend stands on: initialisation once
// per process (finalised at exit), the thread level MPI granted, error
// translation, and the mapping of tutti dtypes and reduce ops to MPI
// datatypes and operations.
//
// Only the standard MPI interface is used (no Open MPI extensions), so the
// backend builds against MPICH as well.
#pragma once

#include <mpi.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "tutti/reduce_op.hpp"
#include "tutti/store.hpp"
#include "tutti/tensor.hpp"
#include "tutti/types.hpp"

namespace tutti::mpi_backend {

// Initialises MPI on first use, asking for MPI_THREAD_MULTIPLE and accepting
// MPI_THREAD_SERIALIZED; throws DistBackendError if MPI grants less. When
// the program already initialised MPI itself, that is used as it is (and not
// finalised by tutti). Thread-safe.
void ensure_initialized();

// Whether MPI calls from different threads may overlap (MPI_THREAD_MULTIPLE).
// Otherwise every call holds the lock of call_lock().
bool thread_multiple();

// The lock every MPI call takes when MPI is not MPI_THREAD_MULTIPLE; a no-op
// lock otherwise.
class CallLock {
 public:
  CallLock();
  // Takes the lock only if it is free; owns() says whether it may call MPI.
  explicit CallLock(std::try_to_lock_t);
  ~CallLock();
  bool owns() const { return owned_; }
  CallLock(const CallLock&) = delete;
  CallLock& operator=(const CallLock&) = delete;

 private:
  bool locked_;
  bool owned_ = true;
};

// A blocking MPI call past its deadline (left running on its thread, since
// MPI cannot cancel it) began and, if its peers turn up after all, ended.
// While one is stuck, MPI is not finalised at exit.
void stuck_call_began();
void stuck_call_ended();

// A nonblocking collective past its deadline: MPI keeps the request (it
// cannot be cancelled) and `buffers` stay alive with it, since MPI may still
// write into them if the missing ranks turn up. At exit, MPI is finalised
// only if every such request has completed by then.
void abandon_request(MPI_Request request, std::vector<Tensor> buffers);

// A peer did not answer a status request after a deadline (dead, stopped or
// cut off, see Health::diagnose). It will not reach MPI_Finalize, whose fence
// would then wait for it for ever, so MPI is not finalised at exit.
void peer_went_silent();

// Whether this process was started by an MPI launcher (mpirun, mpiexec,
// srun with PMI): the environment carries its rank variables.
bool launched_by_mpi();

// Throws DistBackendError "<what> failed: <MPI_Error_string>" unless rc is
// MPI_SUCCESS.
void check(int rc, const std::string& what);
std::string error_string(int rc);

// The MPI datatype that carries `dtype`. Float16, BFloat16 and Bool are
// tutti's own committed types (2, 2 and 1 bytes), so a reduction can tell
// them apart.
MPI_Datatype datatype(DType dtype);

// The MPI operation that combines `kind` on `dtype` with tutti's semantics:
// MPI's built-in operation where it computes the same thing (SUM and PRODUCT
// on integers and float32/64, MIN/MAX on integers, bitwise ops), otherwise a
// user-defined operation on tutti's kernels (Float16, BFloat16, Bool, and
// MIN/MAX on floating point, where tutti propagates NaN).
// REQUIRES: kind is not AVG or PREMUL_SUM (callers apply those around SUM).
MPI_Op op(ReduceOp::Kind kind, DType dtype);

}  // namespace tutti::mpi_backend
