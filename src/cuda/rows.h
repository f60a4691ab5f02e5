// Row gathers of the CUDA backend: y[i, :] = x[index[i], :] for embeddings (index = token ids)
// and for picking logit rows; and the weighted scatter-add of a mixture-of-experts expert's
// outputs, y[index[i], :] += weight[i] * x[i, :] (distinct indices). x, y and index are device memory; rows of `cols` elements of dtype
// dt. Enqueued on `stream`. Internal to src/cuda/.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "common/dtype.h"

namespace strata::cuda {

void launch_gather_rows(DType dt, const void* x, const int32_t* index, int64_t n, int64_t cols,
                        void* y, cudaStream_t stream);
// `bytes` from src to dst by a kernel's loads and stores (16 bytes at a time where both are
// aligned): src may be pinned host memory, which unified addressing maps, so the copy crosses
// PCIe as the kernel's reads instead of queueing on a copy engine behind other transfers.
void launch_copy_bytes(void* dst, const void* src, size_t bytes, cudaStream_t stream);
// dt is F16 or BF16; index and weight are device memory of n entries.
void launch_scatter_add_rows(DType dt, const void* x, const int32_t* index, const float* weight,
                             int64_t n, int64_t cols, void* y, cudaStream_t stream);

}  // namespace strata::cuda
