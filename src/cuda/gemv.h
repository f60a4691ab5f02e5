// Skinny matrix products for decode-sized batches: y[m, n] = x[m, k] · w[n, k]^T (+ bias[n]),
// reading each weight row once with streamed 16-byte loads, the next chunks in flight while the
// current ones are multiplied, and fusing the bias (and, on request, a ReLU): a CUDA-core kernel
// for m <= kGemvMaxRows (batch 1 by default) and a tensor-core one up to kGemvMmaMaxRows. Up to
// kGemvMaxSegments products that share x (the q, k and v projections; gate and up) run as one
// launch. Bound by the bytes of w, which they stream at close to the copy bandwidth; cuBLAS takes
// the larger batches. Device pointers; enqueued on `stream`. Internal to src/cuda/.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "common/dtype.h"

namespace strata::cuda {

inline constexpr int64_t kGemvMaxRows = 8;
// On a device with mma.sync (compute capability 8.0 on), batches of 2 to kGemvMmaMaxRows rows run
// on the tensor cores (gemv_mma.cu); above 16 rows cuBLAS reads the weights as fast.
inline constexpr int64_t kGemvMmaMaxRows = 16;
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
  // seg[0] and seg[1] are the gate and up products of a SiLU-gated MLP (same n; dense weights:
  // the tensor-core kernel; int4: the CUDA-core kernel at batch 1, else the tensor-core one):
  // silu(gate) * up is stored into seg[0].y, nothing into seg[1].y.
  bool gated = false;
};

// How a launch divides the work: the weight rows a warp owns (1, 2 or 4) and the 16-byte chunks a
// lane loads per row and pipeline step (1, 2 or 4; 1 or 2 for batches of 5-8 rows); a lane has
// up to twice rows x chunks loads in flight. Zero fields take the default for the batch size,
// chosen on an H100 with weights streamed from HBM (bench/gemv_sweep).
struct GemvVariant {
  int rows_per_warp = 0;
  int chunks_per_step = 0;
  // int4 only: the warps of a block that share its rows and take turns along k (1, 2 or 4),
  // so that a projection of few rows still spreads over enough warps; 0 picks by the shape.
  int split_k = 0;
};
// The default variant for m activation rows, dense or int4-g64 weights.
GemvVariant default_gemv_variant(int64_t m, bool int4);
// True when `v` (after defaults) is one of the built variants for m rows.
bool gemv_variant_built(int64_t m, GemvVariant v);

// True when the shapes and pointers suit the kernels (k a multiple of 8, 16-byte aligned rows,
// m <= kGemvMaxRows, or up to kGemvMmaMaxRows on a device with mma.sync).
bool gemv_supported(int64_t m, int64_t k, const void* x, const void* w);
// A default `variant` sends batches of 2 rows and more to launch_gemv_mma where the device has
// it; a given one runs that variant of the CUDA-core kernel. Gated batches always take
// launch_gemv_mma.
void launch_gemv(DType dt, const void* x, const GemvBatch& batch, int64_t m, int64_t k, bool relu,
                 cudaStream_t stream, GemvVariant variant = {});

// The tensor-core kernel for 1 <= m <= kGemvMmaMaxRows: 16 weight rows a block of 4 or 8 warps,
// 1 or 2 chunks of 16 bytes a lane, row and pipeline step. Zero fields take the default's
// (bench/gemv_sweep). gemv_mma_supported(m): m in range and the device has mma.sync.
struct GemvMmaVariant {
  int warps = 0;
  int chunks_per_step = 0;
};
inline constexpr GemvMmaVariant kGemvMmaDefault{8, 2};
// The current device has mma.sync (compute capability 8.0 on).
bool mma_sync_available();
bool gemv_mma_supported(int64_t m);
void launch_gemv_mma(DType dt, const void* x, const GemvBatch& batch, int64_t m, int64_t k,
                     bool relu, cudaStream_t stream, GemvMmaVariant variant = {});

// Where each segment's blocks start in a launch of `per_block` rows per block; start[count] is
// the grid size. Shared by the dense and the int4 kernels.
struct GemvGrid {
  const void* w[kGemvMaxSegments];
  const float* bias[kGemvMaxSegments];
  void* y[kGemvMaxSegments];
  int64_t n[kGemvMaxSegments];
  unsigned start[kGemvMaxSegments + 1];
  bool relu;
  bool gated;  // GemvBatch::gated: every block is in segment 0, half its rows from segment 1
};
GemvGrid gemv_grid(const GemvBatch& batch, int64_t per_block, bool relu);

}  // namespace strata::cuda
