// The int4-g64 skinny GEMM on the tensor cores (w4a16, F16 activations, 2 to kGemvMmaMaxRows
// rows by default, any of 1 to 16 on request): y[m, n] = x[m, k] · dequant(w)^T.
//
// Work, as gemv_mma.cu: a block of W warps owns 16 weight rows and its warps take turns along k.
// Lane (g, t) streams 16-byte chunks of codes (32 elements) of rows g and g + 8, lane t taking
// every fourth chunk, U chunks a row per warp step, with their groups' scale and min; the next
// step's codes, scales and matching activations are in flight while the current ones are
// multiplied. Every 32-bit word of codes becomes four exact fp16 pairs (unpack_codes), then the
// pairs of weights q * scale + min (one fp16 multiply-add: exact but for its single rounding, as
// the CUDA-core kernel), which feed two m16n8k16 products as fragment positions
// (2t, 2t + 1, 2t + 8, 2t + 9) against the activations' pairs (e, e + 4) in the same order. fp32
// accumulation across groups; the warps' sums are added in shared memory (cuda/mma.cuh).
//
// Against the CUDA-core kernel (int4_gemv.cu), every batch of up to 16 rows costs the same
// unpacking (5.4 against 8.7 ms for a llama-3-8b step at batch 8); at batch 1 that kernel is the
// faster one (bench/gemv_sweep).
#include <cuda_fp16.h>

#include <string>

#include "cuda/cuda_check.h"
#include "cuda/element.cuh"
#include "cuda/gemv.h"
#include "cuda/gemv_variants.cuh"
#include "cuda/int4_gemm.h"
#include "cuda/int4_group.cuh"
#include "cuda/mma.cuh"

namespace strata::cuda {
namespace {

constexpr int kChunkElems = 32;  // codes in 16 bytes

// A lane's loads of one warp step: U chunks of codes of rows g and g + 8, their groups' scale
// (low half) and min (high half), and the matching 4 x 16 bytes of activation rows 8 j + g.
template <int NT, int U>
struct Int4MmaStage {
  uint4 lo[U], hi[U];
  uint32_t sm_lo[U], sm_hi[U];
  uint4 x[U][NT][4];
};

// Rows g and g + 8 of a lane, their codes from the lane's first chunk t.
struct Int4Rows {
  Int4Row lo, hi;
};

template <int NT, int U>
__device__ __forceinline__ void load_int4_stage(const Int4Rows& r, const uint4* const (&xr)[NT],
                                                int c0, int t, int tail, Int4MmaStage<NT, U>& s) {
#pragma unroll
  for (int u = 0; u < U; ++u) {
    const int c = c0 + 4 * u;  // the lane's chunk is c + t
    const bool in = c < tail;
    const int gi = (c + t) / 2;
    s.lo[u] = in ? load_stream(r.lo.codes + c) : make_uint4(0, 0, 0, 0);
    s.hi[u] = in ? load_stream(r.hi.codes + c) : make_uint4(0, 0, 0, 0);
    s.sm_lo[u] =
        in ? uint32_t{__ldg(r.lo.scales + gi)} | (uint32_t{__ldg(r.lo.mins + gi)} << 16) : 0u;
    s.sm_hi[u] =
        in ? uint32_t{__ldg(r.hi.scales + gi)} | (uint32_t{__ldg(r.hi.mins + gi)} << 16) : 0u;
#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
      for (int q = 0; q < 4; ++q)
        s.x[u][j][q] = in ? __ldg(xr[j] + 4 * c + q) : make_uint4(0, 0, 0, 0);
  }
}

// The weight pairs of one word of codes: w[e] = q[e] * scale + min.
__device__ __forceinline__ void dequant_word(uint32_t word, uint32_t scale_min, uint32_t (&w)[4]) {
  const __half2 sm = h2_bits(scale_min);
  const __half2 s2 = __low2half2(sm), m2 = __high2half2(sm);
  __half2 q[4];
  unpack_codes(word, q);
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    const __half2 v = __hfma2(q[e], s2, m2);
    memcpy(&w[e], &v, sizeof(v));
  }
}

template <int NT, int U, int W>
__global__ void __launch_bounds__(W * 32)
    gemv_int4_mma_kernel(const __half* __restrict__ x, GemvGrid g, int m, int64_t k) {
  __shared__ float partial[W][NT * 4][32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, gq = lane / 4, t = lane % 4;
  const MmaRows rows = mma_rows(g, gq);
  const int64_t n = rows.n;
  const int chunks = static_cast<int>(k / kChunkElems);
  Int4Rows r{int4_row(rows.w_lo, n, k, rows.lo), int4_row(rows.w_hi, n, k, rows.hi)};
  r.lo.codes += t;
  r.hi.codes += t;
  const uint4* xr[NT];
#pragma unroll
  for (int j = 0; j < NT; ++j)
    xr[j] = reinterpret_cast<const uint4*>(x + int64_t{min(8 * j + gq, m - 1)} * k) + 4 * t;

  float acc[NT][4];
#pragma unroll
  for (int j = 0; j < NT; ++j)
#pragma unroll
    for (int q = 0; q < 4; ++q) acc[j][q] = 0.0f;

  constexpr int kWarpStep = 4 * U, kBlockStep = W * kWarpStep;
  const int tail = chunks - t;
  int c0 = warp * kWarpStep;
  Int4MmaStage<NT, U> cur;
  load_int4_stage<NT, U>(r, xr, c0, t, tail, cur);
  for (; c0 < chunks; c0 += kBlockStep) {
    Int4MmaStage<NT, U> next;
    if (c0 + kBlockStep < chunks) load_int4_stage<NT, U>(r, xr, c0 + kBlockStep, t, tail, next);
#pragma unroll
    for (int u = 0; u < U; ++u) {
      if (c0 + 4 * u >= chunks) break;  // uniform over the warp
#pragma unroll
      for (int wd = 0; wd < 4; ++wd) {
        uint32_t wl[4], wh[4];
        dequant_word(word_of(cur.lo[u], wd), cur.sm_lo[u], wl);
        dequant_word(word_of(cur.hi[u], wd), cur.sm_hi[u], wh);
#pragma unroll
        for (int j = 0; j < NT; ++j) {
          __half2 xp[4];
          x_pairs(cur.x[u][j][wd], xp);
          uint32_t xb[4];
          memcpy(xb, xp, sizeof(xb));
          mma_16816<__half>(acc[j], wl[0], wh[0], wl[1], wh[1], xb[0], xb[1]);
          mma_16816<__half>(acc[j], wl[2], wh[2], wl[3], wh[3], xb[2], xb[3]);
        }
      }
    }
    cur = next;
  }
  store_mma_tiles<__half, NT, W>(partial, acc, g, rows.seg, rows.row0, n, m);
}

}  // namespace

void launch_gemv_int4_mma(const void* x, const GemvBatch& batch, int64_t m, int64_t k, bool relu,
                          cudaStream_t stream, GemvMmaVariant v) {
  STRATA_CHECK(gemv_mma_supported(m) && k % kInt4Group == 0 && k / kChunkElems <= 0x7fffffff,
               "gemv_int4_mma: " + std::to_string(m) + " rows of " + std::to_string(k) +
                   " (at most " + std::to_string(kGemvMmaMaxRows) +
                   " rows, k a multiple of 64, compute capability 8.0 or later)");
  launch_mma_variant("gemv_int4_mma", batch, m, relu, v, kGemvInt4MmaDefault,
                     [&](auto NT, auto U, auto W, const GemvGrid& g) {
                       constexpr int kW = decltype(W)::value;
                       // An ordinary launch: chained (chain.cuh), the llama-3-8b batch-8 step
                       // took 4.20 ms against 4.00.
                       gemv_int4_mma_kernel<decltype(NT)::value, decltype(U)::value, kW>
                           <<<g.start[kGemvMaxSegments], kW * 32, 0, stream>>>(
                               static_cast<const __half*>(x), g, static_cast<int>(m), k);
                     });
  STRATA_CUDA_CHECK_LAUNCH();
}

}  // namespace strata::cuda
