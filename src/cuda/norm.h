// Normalisation kernels of the CUDA backend: LayerNorm and RMSNorm over the last dimension, one
// block per row, statistics in fp32. x and y are [rows, cols] device tensors of dtype dt (y may
// alias x); gamma and beta are F32 and may be null (gamma not for RMSNorm). Enqueued on `stream`. Internal to src/cuda/.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "common/dtype.h"

namespace strata::cuda {

void launch_layer_norm(DType dt, const void* x, const float* gamma, const float* beta, float eps,
                       void* y, int64_t rows, int64_t cols, cudaStream_t stream);
void launch_rms_norm(DType dt, const void* x, const float* gamma, float eps, void* y, int64_t rows,
                     int64_t cols, cudaStream_t stream);

// The residual add fused with the norm after it: sum = a + b (rounded to dt, written to `sum`,
// which may alias a or b), then y = norm(sum) exactly as the unfused pair computes it. y may alias
// sum.
void launch_add_layer_norm(DType dt, const void* a, const void* b, void* sum, const float* gamma,
                           const float* beta, float eps, void* y, int64_t rows, int64_t cols,
                           cudaStream_t stream);
void launch_add_rms_norm(DType dt, const void* a, const void* b, void* sum, const float* gamma,
                         float eps, void* y, int64_t rows, int64_t cols, cudaStream_t stream);

}  // namespace strata::cuda
