// Skinny matrix products for decode-sized batches: y[m, n] = x[m, k] · w[n, k]^T (+ bias[n]) for
// m <= kGemvMaxRows, reading each weight row once with 16-byte loads and fusing the bias. It is
// bound by the bytes of w, which it streams at close to the copy bandwidth; cuBLAS takes the
// larger batches. Device pointers; enqueued on `stream`. Internal to src/cuda/.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "common/dtype.h"

namespace strata::cuda {

inline constexpr int64_t kGemvMaxRows = 8;

// True when the shapes and pointers suit the kernel (k a multiple of 8, 16-byte aligned rows).
bool gemv_supported(int64_t m, int64_t k, const void* x, const void* w);
void launch_gemv(DType dt, const void* x, const void* w, const float* bias, void* y, int64_t m,
                 int64_t n, int64_t k, cudaStream_t stream);

}  // namespace strata::cuda
