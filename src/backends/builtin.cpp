#include "backends/builtin.hpp"

#ifdef TUTTI_HAVE_GLOO
#include "backends/gloo/backend.hpp"
#endif
#ifdef TUTTI_HAVE_MPI
#include "backends/mpi/backend.hpp"
#endif

namespace tutti {

std::vector<BackendInfo> builtin_backends() {
  std::vector<BackendInfo> backends;
#ifdef TUTTI_HAVE_GLOO
  backends.push_back(gloo_backend::backend_info());
#endif
#ifdef TUTTI_HAVE_MPI
  backends.push_back(mpi_backend::backend_info());
#endif
  return backends;
}

}  // namespace tutti
