#include "backends/mpi/runtime.hpp"

#include <fmt/format.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <thread>
#include <vector>

#include "core/logging.hpp"
#include "core/reduce.hpp"
#include "tutti/errors.hpp"

namespace tutti::mpi_backend {
namespace {

std::once_flag g_init_once;
bool g_thread_multiple = false;
std::mutex g_call_mutex;

// tutti's own datatypes, committed once after MPI_Init.
MPI_Datatype g_float16 = MPI_DATATYPE_NULL;
MPI_Datatype g_bfloat16 = MPI_DATATYPE_NULL;
MPI_Datatype g_bool = MPI_DATATYPE_NULL;
// One user-defined operation per reduce kind, on tutti's kernels.
std::array<MPI_Op, 9> g_user_ops;

std::atomic<int> g_stuck_calls{0};
std::atomic<bool> g_silent_peer{false};

struct Abandoned {
  MPI_Request request;
  std::vector<Tensor> buffers;
};
std::mutex g_abandoned_mutex;
std::vector<Abandoned> g_abandoned;  // GUARDED_BY(g_abandoned_mutex)

// How many abandoned requests are still active after testing them for up
// to `limit` (a missing rank that turned up late lets them finish).
size_t active_abandoned(std::chrono::milliseconds limit) {
  std::lock_guard<std::mutex> lock(g_abandoned_mutex);
  const auto until = std::chrono::steady_clock::now() + limit;
  for (;;) {
    std::erase_if(g_abandoned, [](Abandoned& a) {
      int flag = 0;
      return MPI_Test(&a.request, &flag, MPI_STATUS_IGNORE) == MPI_SUCCESS && flag != 0;
    });
    if (g_abandoned.empty() || std::chrono::steady_clock::now() > until) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return g_abandoned.size();
}

void finalize_at_exit() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  if (g_silent_peer.load()) {
    // Seen in mpi.faults.sendrecv: after a receive from a stopped rank timed
    // out, nothing was left in MPI, yet MPI_Finalize hung in its fence.
    TUTTI_LOG(LogLevel::WARNING, -1, "",
              "mpi: MPI_Finalize not called at exit: a peer stopped answering (see the "
              "TimeoutError) and would never join its fence");
    return;
  }
  const int stuck =
      g_stuck_calls.load() + static_cast<int>(active_abandoned(std::chrono::milliseconds(100)));
  if (stuck > 0) {
    // MPI_Finalize would free what a stuck call uses (shared memory
    // segments) under it: the process crashed in opal_progress that way.
    // And its fence waits for every rank: it hung for good when a peer
    // had exited without finalizing.
    TUTTI_LOG(LogLevel::WARNING, -1, "",
              "mpi: MPI_Finalize not called at exit: {} timed-out collective{} still in MPI "
              "(the launcher may report that this process exited without finalizing)",
              stuck, stuck > 1 ? "s are" : " is");
    return;
  }
  MPI_Finalize();
}

DType dtype_of(MPI_Datatype type) {
  if (type == g_float16) return DType::Float16;
  if (type == g_bfloat16) return DType::BFloat16;
  if (type == g_bool) return DType::Bool;
  if (type == MPI_FLOAT) return DType::Float32;
  if (type == MPI_DOUBLE) return DType::Float64;
  if (type == MPI_UINT8_T) return DType::UInt8;
  if (type == MPI_INT8_T) return DType::Int8;
  if (type == MPI_INT16_T) return DType::Int16;
  if (type == MPI_INT32_T) return DType::Int32;
  return DType::Int64;
}

template <ReduceOp::Kind kKind>
void combine_user(void* in, void* inout, int* len, MPI_Datatype* type) {
  kernels::combine_into(inout, in, static_cast<size_t>(*len), dtype_of(*type), kKind);
}

MPI_Datatype commit_bytes(int bytes) {
  MPI_Datatype type = MPI_DATATYPE_NULL;
  check(MPI_Type_contiguous(bytes, MPI_BYTE, &type), "MPI_Type_contiguous");
  check(MPI_Type_commit(&type), "MPI_Type_commit");
  return type;
}

void create_types_and_ops() {
  g_float16 = commit_bytes(2);
  g_bfloat16 = commit_bytes(2);
  g_bool = commit_bytes(1);
  g_user_ops.fill(MPI_OP_NULL);
  auto make = [](ReduceOp::Kind kind, MPI_User_function* fn) {
    check(MPI_Op_create(fn, /*commute=*/1, &g_user_ops[kind]), "MPI_Op_create");
  };
  make(ReduceOp::SUM, combine_user<ReduceOp::SUM>);
  make(ReduceOp::PRODUCT, combine_user<ReduceOp::PRODUCT>);
  make(ReduceOp::MIN, combine_user<ReduceOp::MIN>);
  make(ReduceOp::MAX, combine_user<ReduceOp::MAX>);
  make(ReduceOp::BAND, combine_user<ReduceOp::BAND>);
  make(ReduceOp::BOR, combine_user<ReduceOp::BOR>);
  make(ReduceOp::BXOR, combine_user<ReduceOp::BXOR>);
}

void initialize() {
  int initialized = 0;
  check(MPI_Initialized(&initialized), "MPI_Initialized");
  int provided = 0;
  if (initialized) {
    check(MPI_Query_thread(&provided), "MPI_Query_thread");
    TUTTI_LOG(LogLevel::INFO, -1, "",
              "mpi: using the MPI the program initialised (thread level {})", provided);
  } else {
    check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided), "MPI_Init_thread");
    std::atexit(finalize_at_exit);
  }
  if (provided < MPI_THREAD_SERIALIZED) {
    throw DistBackendError(
        fmt::format("mpi: the MPI library grants thread level {}, but tutti needs at least "
                    "MPI_THREAD_SERIALIZED ({}); rebuild or configure MPI with thread support",
                    provided, MPI_THREAD_SERIALIZED));
  }
  g_thread_multiple = provided >= MPI_THREAD_MULTIPLE;
  // Errors come back as return codes, which become tutti errors.
  check(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  create_types_and_ops();
}

}  // namespace

void ensure_initialized() { std::call_once(g_init_once, initialize); }

bool thread_multiple() { return g_thread_multiple; }

CallLock::CallLock() : locked_(!g_thread_multiple) {
  if (locked_) g_call_mutex.lock();
}

CallLock::CallLock(std::try_to_lock_t) : locked_(!g_thread_multiple) {
  if (locked_) owned_ = locked_ = g_call_mutex.try_lock();
}

CallLock::~CallLock() {
  if (locked_) g_call_mutex.unlock();
}

void abandon_request(MPI_Request request, std::vector<Tensor> buffers) {
  std::lock_guard<std::mutex> lock(g_abandoned_mutex);
  g_abandoned.push_back({request, std::move(buffers)});
}

void peer_went_silent() { g_silent_peer.store(true); }

void stuck_call_began() { g_stuck_calls.fetch_add(1); }
void stuck_call_ended() { g_stuck_calls.fetch_sub(1); }

bool launched_by_mpi() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"}) {
    if (std::getenv(name) != nullptr) return true;
  }
  return false;
}

std::string error_string(int rc) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(rc, text, &length) != MPI_SUCCESS) return fmt::format("MPI error {}", rc);
  return std::string(text, static_cast<size_t>(length));
}

void check(int rc, const std::string& what) {
  if (rc != MPI_SUCCESS) {
    throw DistBackendError(fmt::format("{} failed: {} (MPI error {})", what, error_string(rc), rc));
  }
}

MPI_Datatype datatype(DType dtype) {
  switch (dtype) {
    case DType::Bool:
      return g_bool;
    case DType::UInt8:
      return MPI_UINT8_T;
    case DType::Int8:
      return MPI_INT8_T;
    case DType::Int16:
      return MPI_INT16_T;
    case DType::Int32:
      return MPI_INT32_T;
    case DType::Int64:
      return MPI_INT64_T;
    case DType::Float16:
      return g_float16;
    case DType::BFloat16:
      return g_bfloat16;
    case DType::Float32:
      return MPI_FLOAT;
    case DType::Float64:
      return MPI_DOUBLE;
  }
  return MPI_DATATYPE_NULL;
}

MPI_Op op(ReduceOp::Kind kind, DType dtype) {
  const bool own_type = dtype == DType::Float16 || dtype == DType::BFloat16 || dtype == DType::Bool;
  if (own_type) return g_user_ops[kind];
  switch (kind) {
    case ReduceOp::SUM:
      return MPI_SUM;
    case ReduceOp::PRODUCT:
      return MPI_PROD;
    case ReduceOp::MIN:
      return is_floating_point(dtype) ? g_user_ops[kind] : MPI_MIN;
    case ReduceOp::MAX:
      return is_floating_point(dtype) ? g_user_ops[kind] : MPI_MAX;
    case ReduceOp::BAND:
      return MPI_BAND;
    case ReduceOp::BOR:
      return MPI_BOR;
    case ReduceOp::BXOR:
      return MPI_BXOR;
    case ReduceOp::AVG:
    case ReduceOp::PREMUL_SUM:
      break;
  }
  return MPI_OP_NULL;
}

}  // namespace tutti::mpi_backend
