// Skinny GEMM: each warp owns R output columns (rows of w); each lane takes 16-byte chunks of
// them spaced 32 chunks apart, U chunks of every row per pipeline step, and loads the next step's
// chunks while it multiplies the current ones, so that up to 2 * R * U streamed loads a lane are
// in flight. The (small) x rows are read through L1, once per chunk for all R rows. fp32
// accumulation, a warp reduction, then bias, ReLU and rounding. A launch covers up to three
// weights that share x: each block finds its segment from the grid offsets.
#include <string>

#include "cuda/chain.cuh"
#include "cuda/cuda_check.h"
#include "cuda/element.cuh"
#include "cuda/gemv.h"
#include "cuda/gemv_variants.cuh"

namespace strata::cuda {
namespace {

constexpr int kWarps = 4;

template <int R, int U>
struct DenseStage {
  uint4 w[U][R];
};

template <int R, int U>
__device__ __forceinline__ void load_dense(const uint4* const (&rows)[R], int c0, int chunks,
                                           DenseStage<R, U>& s) {
#pragma unroll
  for (int u = 0; u < U; ++u) {
    const int c = c0 + 32 * u;
#pragma unroll
    for (int r = 0; r < R; ++r)
      s.w[u][r] = c < chunks ? load_stream(rows[r] + c) : make_uint4(0, 0, 0, 0);
  }
}

template <typename T>
__device__ __forceinline__ void unpack8(const uint4& v, float out[8]) {
  const Vec8<T>& x = reinterpret_cast<const Vec8<T>&>(v);
#pragma unroll
  for (int i = 0; i < 8; ++i) out[i] = to_float(x.v[i]);
}

template <typename T, int M, int R, int U>
__global__ void __launch_bounds__(kWarps * 32)
    gemv_kernel(const T* __restrict__ x, GemvGrid g, int m, int64_t k) {
  const int seg = blockIdx.x >= g.start[2] ? 2 : blockIdx.x >= g.start[1] ? 1 : 0;
  const unsigned start = seg == 2 ? g.start[2] : seg == 1 ? g.start[1] : g.start[0];
  const int64_t n = pick(g.n, seg);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t row0 = (int64_t{blockIdx.x - start} * kWarps + warp) * R;
  if (row0 >= n) return;  // warp 0 of every block has rows, and waits for the kernel before
  const int chunks = static_cast<int>(k / 8);
  const auto* w = static_cast<const uint4*>(pick(g.w, seg));
  const uint4* rows[R];
#pragma unroll
  for (int r = 0; r < R; ++r) rows[r] = w + min(row0 + r, n - 1) * chunks;

  float acc[R][M];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int i = 0; i < M; ++i) acc[r][i] = 0.0f;

  constexpr int kStep = 32 * U;
  DenseStage<R, U> cur;  // the first weights load while the kernel before finishes (chain.cuh)
  load_dense<R, U>(rows, lane, chunks, cur);
  wait_for_prior_kernels();
  release_next_kernel();
  for (int c0 = lane; c0 < chunks; c0 += kStep) {
    DenseStage<R, U> next;
    if (c0 + kStep < chunks) load_dense<R, U>(rows, c0 + kStep, chunks, next);
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int c = c0 + 32 * u;
      if (c >= chunks) continue;
      float wf[R][8];
#pragma unroll
      for (int r = 0; r < R; ++r) unpack8<T>(cur.w[u][r], wf[r]);
#pragma unroll
      for (int i = 0; i < M; ++i) {
        const int row = M == 1 ? 0 : min(i, m - 1);
        float xf[8];
        unpack8<T>(__ldg(reinterpret_cast<const uint4*>(x + row * k) + c), xf);
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
          for (int e = 0; e < 8; ++e) acc[r][i] = fmaf(xf[e], wf[r][e], acc[r][i]);
      }
    }
    cur = next;
  }

  store_rows<T, R, M>(acc, g, seg, row0, n, m, lane);
}

}  // namespace

GemvGrid gemv_grid(const GemvBatch& batch, int64_t per_block, bool relu) {
  STRATA_CHECK(batch.count >= 1 && batch.count <= kGemvMaxSegments, "gemv: 1 to 3 segments");
  STRATA_CHECK(!batch.gated || (batch.count == 2 && batch.seg[0].n == batch.seg[1].n),
               "gemv: a gated batch is two products of the same rows");
  // A gated batch's blocks are all in segment 0, each per_block / 2 rows of gate and the same
  // rows of up.
  const int64_t rows_per_block = batch.gated ? per_block / 2 : per_block;
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
    if (batch.gated && s > 0) continue;
    blocks += (seg.n + rows_per_block - 1) / rows_per_block;
    STRATA_CHECK(blocks <= 0x7fffffff, "gemv: too many rows");
  }
  g.start[kGemvMaxSegments] = static_cast<unsigned>(blocks);
  // Unused segments start at the end of the grid, so no block maps to them.
  for (int s = batch.count; s < kGemvMaxSegments; ++s) g.start[s] = static_cast<unsigned>(blocks);
  g.relu = relu;
  g.gated = batch.gated;
  return g;
}

GemvVariant default_gemv_variant(int64_t m, bool int4) {
  // The fastest on the sum of llama-3-8b's and opt-6.7b's projection times (strata_gemv_sweep).
  const int kr = gemv_kernel_rows(m);
  if (int4) return kr == 1 ? GemvVariant{2, 1} : GemvVariant{4, 1};
  switch (kr) {
    case 1:
    case 2:
      return {1, 2};
    case 4:
      return {1, 1};
    default:
      return {4, 2};
  }
}

bool gemv_variant_built(int64_t m, GemvVariant v) {
  return m >= 1 && m <= kGemvMaxRows && dispatch_gemv_variant(m, v, [](auto, auto, auto) {});
}

bool gemv_supported(int64_t m, int64_t k, const void* x, const void* w) {
  return m >= 1 && (m <= kGemvMaxRows || gemv_mma_supported(m)) && k % 8 == 0 && k > 0 &&
         k / 8 <= 0x7fffffff && (reinterpret_cast<uintptr_t>(x) & 15) == 0 &&
         (reinterpret_cast<uintptr_t>(w) & 15) == 0;
}

void launch_gemv(DType dt, const void* x, const GemvBatch& batch, int64_t m, int64_t k, bool relu,
                 cudaStream_t stream, GemvVariant variant) {
  for (int s = 0; s < batch.count; ++s)
    STRATA_CHECK(gemv_supported(m, k, x, batch.seg[s].w), "gemv: unsupported shape or alignment");
  STRATA_CHECK(variant.split_k <= 1, "gemv: split_k is for int4 weights");
  const bool given = variant.rows_per_warp != 0 || variant.chunks_per_step != 0;
  if (batch.gated || m > kGemvMaxRows || (m >= 2 && !given && gemv_mma_supported(m))) {
    launch_gemv_mma(dt, x, batch, m, k, relu, stream);
    return;
  }
  STRATA_DISPATCH_ACT(
      dt, launch_gemv_variant(
              "gemv", false, batch, m, relu, kWarps, variant,
              [&](auto M, auto R, auto U, const GemvGrid& g) {
                launch_chained(
                    gemv_kernel<T, decltype(M)::value, decltype(R)::value, decltype(U)::value>,
                    g.start[kGemvMaxSegments], kWarps * 32, 0, stream, static_cast<const T*>(x), g,
                    static_cast<int>(m), k);
              }));
}

}  // namespace strata::cuda
