// Skinny GEMM: each warp owns kRowsPerWarp output columns (rows of w) and walks k in 16-byte
// chunks, two chunks per iteration so that several loads are in flight; the (small) x rows are
// read through L1. fp32 accumulation, a warp reduction, then bias and rounding.
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
    gemv_kernel(const T* __restrict__ x, const T* __restrict__ w, const float* __restrict__ bias,
                T* __restrict__ y, int m, int64_t n, int64_t k) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t row0 = (int64_t{blockIdx.x} * kWarps + warp) * kRowsPerWarp;
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
        const float v = warp_sum(acc[r][i]);
        const int64_t col = row0 + r;
        if (lane == 0 && col < n) y[i * n + col] = from_float<T>(v + (bias ? bias[col] : 0.0f));
      }
    }
  }
}

}  // namespace

bool gemv_supported(int64_t m, int64_t k, const void* x, const void* w) {
  return m >= 1 && m <= kGemvMaxRows && k % 8 == 0 && k > 0 &&
         (reinterpret_cast<uintptr_t>(x) & 15) == 0 && (reinterpret_cast<uintptr_t>(w) & 15) == 0;
}

void launch_gemv(DType dt, const void* x, const void* w, const float* bias, void* y, int64_t m,
                 int64_t n, int64_t k, cudaStream_t stream) {
  if (n == 0) return;
  STRATA_CHECK(gemv_supported(m, k, x, w), "gemv: unsupported shape or alignment");
  const int64_t per_block = int64_t{kWarps} * kRowsPerWarp;
  const int64_t blocks = (n + per_block - 1) / per_block;
  STRATA_CHECK(blocks <= 0x7fffffff, "gemv: too many rows");
  STRATA_DISPATCH_ACT(dt, gemv_kernel<T><<<static_cast<unsigned>(blocks), kWarps * 32, 0, stream>>>(
                              static_cast<const T*>(x), static_cast<const T*>(w), bias,
                              static_cast<T*>(y), static_cast<int>(m), n, k));
  STRATA_CUDA_CHECK_LAUNCH();
}

}  // namespace strata::cuda
