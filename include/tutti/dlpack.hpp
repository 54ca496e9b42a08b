// Zero-copy exchange with other frameworks through DLPack
// (https://dmlc.github.io/dlpack/). Include <dlpack/dlpack.h> to look inside
// the DLManagedTensor.
#pragma once

#include "tutti/tensor.hpp"

struct DLManagedTensor;

namespace tutti {

// Returns a DLManagedTensor viewing t's memory; it keeps t's storage alive
// until the consumer calls its deleter. Bool is exported as DLPack's kDLBool
// (code 6, DLPack >= 0.8). Throws InvalidArgument for an undefined tensor.
DLManagedTensor* to_dlpack(const Tensor& t);

// Takes ownership of `managed`: the returned tensor views its memory, and the
// deleter runs when the last copy of the tensor goes away. Throws
// InvalidArgument (after calling the deleter) for a dtype or device tutti
// does not know; a null pointer is rejected without side effects.
Tensor from_dlpack(DLManagedTensor* managed);

}  // namespace tutti
