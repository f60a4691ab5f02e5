// Skinny matrix products for decode-sized batches: y[m, n] = x[m, k] · w[n, k]^T (+ bias[n]) for
// m <= kGemvMaxRows, reading each weight row once with 16-byte loads and fusing the bias (and,
// on request, a ReLU). Up to kGemvMaxSegments products that share x (the q, k and v projections;
// gate and up) run as one launch. Bound by the bytes of w, which it streams at close to the copy
// bandwidth; cuBLAS takes the larger batches. Device pointers; enqueued on `stream`. Internal to
// src/cuda/.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "common/dtype.h"

namespace strata::cuda {

inline constexpr int64_t kGemvMaxRows = 8;
inline constexpr int kGemvMaxSegments = 3;

// One product of a batch: w [n, k] (dense in the activation dtype, or an int4-g64 blob), an
// optional F32 bias [n] and y [m, n].
struct GemvSegment {
  const void* w = nullptr;
  const float* bias = nullptr;
  void* y = nullptr;
  int64_t n = 0;
};

struct GemvBatch {
  GemvSegment seg[kGemvMaxSegments];
  int count = 0;
};

// True when the shapes and pointers suit the kernel (k a multiple of 8, 16-byte aligned rows).
bool gemv_supported(int64_t m, int64_t k, const void* x, const void* w);
void launch_gemv(DType dt, const void* x, const GemvBatch& batch, int64_t m, int64_t k, bool relu,
                 cudaStream_t stream);

// Where each segment's blocks start in a launch of `per_block` rows per block; start[count] is
// the grid size. Shared by the dense and the int4 kernels.
struct GemvGrid {
  const void* w[kGemvMaxSegments];
  const float* bias[kGemvMaxSegments];
  void* y[kGemvMaxSegments];
  int64_t n[kGemvMaxSegments];
  unsigned start[kGemvMaxSegments + 1];
  bool relu;
};
GemvGrid gemv_grid(const GemvBatch& batch, int64_t per_block, bool relu);

}  // namespace strata::cuda
