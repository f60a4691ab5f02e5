// Rotary position embedding on the GPU (rotate-half convention, as transformers' Llama): rotates
// x [tokens, heads, head_dim] in place; positions [tokens] (int32) and inv_freq [head_dim / 2]
// (fp32, see compute::make_rope_table) are device memory. Enqueued on `stream`. Internal.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "common/dtype.h"

namespace strata::cuda {

void launch_rope(DType dt, void* x, const int32_t* positions, const float* inv_freq,
                 int64_t tokens, int64_t heads, int64_t head_dim, cudaStream_t stream);

}  // namespace strata::cuda
