// Skinny GEMM on the tensor cores for batches of 2 to kGemvMmaMaxRows rows: y[m, n] = x[m, k] ·
// w[n, k]^T, bound by streaming w once, where the CUDA-core GEMV (gemv.cu) becomes bound by its
// fp32 multiply-adds and cuBLAS by its tile shapes and split-k reductions (bench/gemv_sweep).
//
// Work: a block of W warps owns 16 weight rows; its warps take turns along k, a warp step being U
// chunks of 16 bytes (8 elements) of every row a lane. Lane (g, t) = (lane / 4, lane % 4) streams
// rows g and g + 8 and reads the same chunks of activation rows g, g + 8, ... through L1; the
// next step's chunks (weights and activations) are in flight while the current ones are
// multiplied. One chunk
// feeds two m16n8k16 products per 8 activation rows: a dot product may take k in any order as
// long as both operands take the same one, so a lane's 8 contiguous elements stand for the
// fragment positions (2t, 2t + 1, 2t + 8, 2t + 9) of two consecutive products, for the weight (A)
// and the activations (B) alike. fp32 accumulation; the warps' partial sums are added through
// shared memory, then bias, ReLU and rounding (cuda/mma.cuh).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <string>

#include "cuda/chain.cuh"
#include "cuda/cuda_check.h"
#include "cuda/element.cuh"
#include "cuda/gemv.h"
#include "cuda/gemv_variants.cuh"
#include "cuda/mma.cuh"

namespace strata::cuda {
namespace {

// One lane's chunks of a warp step: weight rows g and g + 8 and activation rows 8 j + g, U chunks
// each, loaded a step ahead of their products.
template <int NT, int U>
struct MmaStage {
  uint4 lo[U], hi[U], x[U][NT];
};

// kWeights, kX: which of the stage's loads to issue (the first stage loads its weights before
// the kernel waits for the one before, chain.cuh).
template <int NT, int U, bool kWeights = true, bool kX = true>
__device__ __forceinline__ void load_mma_stage(const uint4* lo, const uint4* hi,
                                               const uint4* const (&xr)[NT], int c0, int tail,
                                               MmaStage<NT, U>& s) {
#pragma unroll
  for (int u = 0; u < U; ++u) {
    const int c = c0 + 4 * u;
    const bool in = c < tail;
    if constexpr (kWeights) {
      s.lo[u] = in ? load_stream(lo + c) : make_uint4(0, 0, 0, 0);
      s.hi[u] = in ? load_stream(hi + c) : make_uint4(0, 0, 0, 0);
    }
    if constexpr (kX) {
#pragma unroll
      for (int j = 0; j < NT; ++j) s.x[u][j] = in ? __ldg(xr[j] + c) : make_uint4(0, 0, 0, 0);
    }
  }
}

// NT tiles of 8 activation rows (m <= 8 NT), U chunks a lane and step, W warps a block.
template <typename T, int NT, int U, int W>
__global__ void __launch_bounds__(W * 32)
    gemv_mma_kernel(const T* __restrict__ x, GemvGrid g, int m, int64_t k) {
  __shared__ float partial[W][NT * 4][32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, gq = lane / 4, t = lane % 4;
  const MmaRows rows = mma_rows(g, gq);
  const int64_t n = rows.n;
  const int chunks = static_cast<int>(k / 8);
  const uint4* lo = static_cast<const uint4*>(rows.w_lo) + rows.lo * chunks + t;
  const uint4* hi = static_cast<const uint4*>(rows.w_hi) + rows.hi * chunks + t;
  const uint4* xr[NT];
#pragma unroll
  for (int j = 0; j < NT; ++j)
    xr[j] = reinterpret_cast<const uint4*>(x + int64_t{min(8 * j + gq, m - 1)} * k) + t;

  float acc[NT][4];
#pragma unroll
  for (int j = 0; j < NT; ++j)
#pragma unroll
    for (int q = 0; q < 4; ++q) acc[j][q] = 0.0f;

  // A warp step covers 4 U chunks of each row (lane t takes every fourth); the warps interleave.
  constexpr int kWarpStep = 4 * U, kBlockStep = W * kWarpStep;
  const int tail = chunks - t;  // chunk c0 + 4u of this lane exists while c0 + 4u < tail
  int c0 = warp * kWarpStep;
  MmaStage<NT, U> cur;
  load_mma_stage<NT, U, true, false>(lo, hi, xr, c0, tail, cur);
  wait_for_prior_kernels();
  release_next_kernel();
  load_mma_stage<NT, U, false, true>(lo, hi, xr, c0, tail, cur);
  for (; c0 < chunks; c0 += kBlockStep) {
    MmaStage<NT, U> next;
    if (c0 + kBlockStep < chunks) load_mma_stage<NT, U>(lo, hi, xr, c0 + kBlockStep, tail, next);
#pragma unroll
    for (int u = 0; u < U; ++u) {
      if (c0 + 4 * u >= chunks) break;  // uniform over the warp: the rest is past the row's end
#pragma unroll
      for (int j = 0; j < NT; ++j) {
        const uint4& xv = cur.x[u][j];
        mma_16816<T>(acc[j], cur.lo[u].x, cur.hi[u].x, cur.lo[u].y, cur.hi[u].y, xv.x, xv.y);
        mma_16816<T>(acc[j], cur.lo[u].z, cur.hi[u].z, cur.lo[u].w, cur.hi[u].w, xv.z, xv.w);
      }
    }
    cur = next;
  }

  store_mma_tiles<T, NT, W>(partial, acc, g, rows.seg, rows.row0, n, m);
}

}  // namespace

bool mma_sync_available() {
  static const bool capable = [] {
    int dev = 0, major = 0;
    return cudaGetDevice(&dev) == cudaSuccess &&
           cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
           major >= 8;
  }();
  return capable;
}

bool gemv_mma_supported(int64_t m) {
  return m >= 1 && m <= kGemvMmaMaxRows && mma_sync_available();
}

void launch_gemv_mma(DType dt, const void* x, const GemvBatch& batch, int64_t m, int64_t k,
                     bool relu, cudaStream_t stream, GemvMmaVariant v) {
  STRATA_CHECK(m >= 1 && m <= kGemvMmaMaxRows && mma_sync_available(),
               "gemv_mma: " + std::to_string(m) + " rows (at most " +
                   std::to_string(kGemvMmaMaxRows) + ", compute capability 8.0 or later)");
  STRATA_DISPATCH_ACT(
      dt, launch_mma_variant("gemv_mma", batch, m, relu, v, kGemvMmaDefault,
                             [&](auto NT, auto U, auto W, const GemvGrid& g) {
                               constexpr int kW = decltype(W)::value;
                               launch_chained(
                                   gemv_mma_kernel<T, decltype(NT)::value, decltype(U)::value, kW>,
                                   g.start[kGemvMaxSegments], kW * 32, 0, stream,
                                   static_cast<const T*>(x), g, static_cast<int>(m), k);
                             }));
}

}  // namespace strata::cuda
