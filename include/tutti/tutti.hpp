// Everything public in tutti.
#pragma once

#include "tutti/backend.hpp"
#include "tutti/dlpack.hpp"
#include "tutti/errors.hpp"
#include "tutti/file_store.hpp"
#include "tutti/hash_store.hpp"
#include "tutti/init.hpp"
#include "tutti/logging.hpp"
#include "tutti/options.hpp"
#include "tutti/prefix_store.hpp"
#include "tutti/process_group.hpp"
#include "tutti/reduce_op.hpp"
#include "tutti/store.hpp"
#include "tutti/tcp_store.hpp"
#include "tutti/tensor.hpp"
#include "tutti/types.hpp"
#include "tutti/work.hpp"
