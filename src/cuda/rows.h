// Row gathers of the CUDA backend: y[i, :] = x[index[i], :] for embeddings (index = token ids)
// and for picking logit rows; and the weighted scatter-add of a mixture-of-experts expert's
// outputs, y[index[i], :] += weight[i] * x[i, :] (distinct indices). x, y and index are device memory; rows of `cols` elements of dtype
// dt. Enqueued on `stream`. Internal to src/cuda/.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "common/dtype.h"

namespace strata::cuda {

void launch_gather_rows(DType dt, const void* x, const int32_t* index, int64_t n, int64_t cols,
                        void* y, cudaStream_t stream);
// dt is F16 or BF16; index and weight are device memory of n entries.
void launch_scatter_add_rows(DType dt, const void* x, const int32_t* index, const float* weight,
                             int64_t n, int64_t cols, void* y, cudaStream_t stream);

}  // namespace strata::cuda
