// The Work of one MPI operation.
#pragma once

#include "core/engine_work.hpp"

namespace tutti::mpi_backend {

using MpiWork = EngineWork;

}  // namespace tutti::mpi_backend
