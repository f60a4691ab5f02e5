// Skinny GEMM: each warp owns kRowsPerWarp output columns (rows of w) and walks k in 16-byte
// chunks, two chunks per iteration so that several loads are in flight; the (small) x rows are
// read through L1. fp32 accumulation, a warp reduction, then bias, ReLU and rounding. A launch
// covers up to three weights that share x: each block finds its segment from the grid offsets.
#include "cuda/cuda_check.h"
#include "cuda/element.cuh"
#include "cuda/gemv.h"

namespace strata::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kRowsPerWarp = 2;
constexpr int kMaxM = static_cast<int>(kGemvMaxRows);

template <typename T>
__global__ void __launch_bounds__(kWarps * 32)
    gemv_kernel(const T* __restrict__ x, GemvGrid g, int m, int64_t k) {
  const int seg = blockIdx.x >= g.start[2] ? 2 : blockIdx.x >= g.start[1] ? 1 : 0;
  const T* __restrict__ w = static_cast<const T*>(g.w[seg]);
  const float* __restrict__ bias = g.bias[seg];
  T* __restrict__ y = static_cast<T*>(g.y[seg]);
  const int64_t n = g.n[seg];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t row0 = (int64_t{blockIdx.x - g.start[seg]} * kWarps + warp) * kRowsPerWarp;
  if (row0 >= n) return;
  const int64_t chunks = k / 8;
  float acc[kRowsPerWarp][kMaxM];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
    for (int i = 0; i < kMaxM; ++i) acc[r][i] = 0.0f;
  const T* wr[kRowsPerWarp];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) wr[r] = w + min(row0 + r, n - 1) * k;

  for (int64_t c0 = lane; c0 < chunks; c0 += 64) {
    const int64_t c1 = c0 + 32;
    const bool has1 = c1 < chunks;
    float wf[2][kRowsPerWarp][8];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      load8(wr[r] + c0 * 8, wf[0][r]);
      if (has1) {
        load8(wr[r] + c1 * 8, wf[1][r]);
      } else {
#pragma unroll
        for (int e = 0; e < 8; ++e) wf[1][r][e] = 0.0f;
      }
    }
#pragma unroll
    for (int i = 0; i < kMaxM; ++i) {
      if (i < m) {
        float xf[8];
        load8(x + i * k + c0 * 8, xf);
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
          for (int e = 0; e < 8; ++e) acc[r][i] = fmaf(xf[e], wf[0][r][e], acc[r][i]);
        if (has1) {
          load8(x + i * k + c1 * 8, xf);
#pragma unroll
          for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
            for (int e = 0; e < 8; ++e) acc[r][i] = fmaf(xf[e], wf[1][r][e], acc[r][i]);
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
#pragma unroll
    for (int i = 0; i < kMaxM; ++i) {
      if (i < m) {
        float v = warp_sum(acc[r][i]);
        const int64_t col = row0 + r;
        if (lane == 0 && col < n) {
          v += bias ? bias[col] : 0.0f;
          if (g.relu) v = fmaxf(v, 0.0f);
          y[i * n + col] = from_float<T>(v);
        }
      }
    }
  }
}

}  // namespace

GemvGrid gemv_grid(const GemvBatch& batch, int64_t per_block, bool relu) {
  STRATA_CHECK(batch.count >= 1 && batch.count <= kGemvMaxSegments, "gemv: 1 to 3 segments");
  GemvGrid g{};
  int64_t blocks = 0;
  for (int s = 0; s < kGemvMaxSegments; ++s) {
    g.start[s] = static_cast<unsigned>(blocks);
    if (s >= batch.count) continue;
    const GemvSegment& seg = batch.seg[s];
    g.w[s] = seg.w;
    g.bias[s] = seg.bias;
    g.y[s] = seg.y;
    g.n[s] = seg.n;
    blocks += (seg.n + per_block - 1) / per_block;
    STRATA_CHECK(blocks <= 0x7fffffff, "gemv: too many rows");
  }
  g.start[kGemvMaxSegments] = static_cast<unsigned>(blocks);
  // Unused segments start at the end of the grid, so no block maps to them.
  for (int s = batch.count; s < kGemvMaxSegments; ++s) g.start[s] = static_cast<unsigned>(blocks);
  g.relu = relu;
  return g;
}

bool gemv_supported(int64_t m, int64_t k, const void* x, const void* w) {
  return m >= 1 && m <= kGemvMaxRows && k % 8 == 0 && k > 0 &&
         (reinterpret_cast<uintptr_t>(x) & 15) == 0 && (reinterpret_cast<uintptr_t>(w) & 15) == 0;
}

void launch_gemv(DType dt, const void* x, const GemvBatch& batch, int64_t m, int64_t k, bool relu,
                 cudaStream_t stream) {
  for (int s = 0; s < batch.count; ++s)
    STRATA_CHECK(gemv_supported(m, k, x, batch.seg[s].w), "gemv: unsupported shape or alignment");
  const GemvGrid g = gemv_grid(batch, int64_t{kWarps} * kRowsPerWarp, relu);
  const unsigned blocks = g.start[kGemvMaxSegments];
  if (blocks == 0) return;
  STRATA_DISPATCH_ACT(dt, gemv_kernel<T><<<blocks, kWarps * 32, 0, stream>>>(
                              static_cast<const T*>(x), g, static_cast<int>(m), k));
  STRATA_CUDA_CHECK_LAUNCH();
}

}  // namespace strata::cuda
