// The int4-g64 skinny GEMV on the CUDA cores (w4a16, decode-sized batches): y[m, n] = x[m, k] ·
// dequant(w)^T for m <= kGemvMaxRows, streaming the 4.5-bit blob once. It serves BF16, devices
// without mma.sync, batch 1 and explicitly chosen variants; F16 batches of 2 to kGemvMmaMaxRows
// rows take the tensor-core kernel (int4_gemv_mma.cu) by default.
//
// Work: a warp owns R weight rows (with split-k, `split` warps own them and take turns along k);
// each lane takes 16-byte chunks of codes (32 elements, half a group) spaced 32 chunks apart, and
// loads the next U chunks of its R rows while it computes on the current ones, so that 2 * U * R
// loads per lane are in flight. The activation rows are read through L1 (every warp of an SM reads
// the same x). The batch size M is a template parameter (1, 2, 4, 8; a batch of 3 runs as 4 with
// the last row read twice and not stored).
//
// Codes to numbers: unpack_codes (cuda/int4_group.cuh), two exact codes per instruction.
// F16: each code pair becomes the pair of weights q * scale + min (one fp16 multiply-add, exact
// but for its single rounding) and is multiplied into two half2 accumulators per chunk (8
// products a lane each), which are added in fp32 to the row's sums once per chunk; x's pairs
// (e, e + 4) are made with byte permutes. BF16 (whose 8-bit mantissa is too short to accumulate
// in): the same exact codes, widened to fp32, weights and products in fp32.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <string>
#include <type_traits>

#include "cuda/chain.cuh"
#include "cuda/cuda_check.h"
#include "cuda/element.cuh"
#include "cuda/gemv.h"
#include "cuda/gemv_variants.cuh"
#include "cuda/int4_gemm.h"
#include "cuda/int4_group.cuh"

namespace strata::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kChunk = 32;  // elements in 16 bytes of codes

// One lane's share of a pipeline step: U chunks of R rows, with their groups' scale and min.
template <int R, int U>
struct Stage {
  uint4 code[U][R];
  uint32_t scale_min[U][R];  // fp16 scale in the low half, fp16 min in the high half
};

struct RowBlock {
  Int4Row w;  // row row0 of the segment's blob
  int64_t chunks_per_row, groups_per_row;
  int64_t last_row;  // rows past n - 1 read row n - 1 (their sums are not stored)
  // A gated batch (R = 2): row 1 is row row0 of the up blob, `up`.
  bool gated;
  Int4Row up;
};

template <int R, int U>
__device__ __forceinline__ void load_stage(const RowBlock& b, int c0, int chunks, Stage<R, U>& s) {
#pragma unroll
  for (int u = 0; u < U; ++u) {
    const int c = c0 + kChunk * u;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const bool up = r == 1 && b.gated;
      const int64_t rr = up ? 0 : min(int64_t{r}, b.last_row);
      if (c < chunks) {
        const Int4Row src = up ? b.up : b.w;
        s.code[u][r] = load_stream(src.codes + rr * b.chunks_per_row + c);
        const int64_t gi = rr * b.groups_per_row + c / 2;
        s.scale_min[u][r] =
            uint32_t{__ldg(src.scales + gi)} | (uint32_t{__ldg(src.mins + gi)} << 16);
      } else {
        s.code[u][r] = make_uint4(0, 0, 0, 0);
        s.scale_min[u][r] = 0;
      }
    }
  }
}

// F16: chunk c of R rows against the M activation rows, added into acc.
template <int M, int R>
__device__ __forceinline__ void chunk_dot(const __half* __restrict__ x, int64_t k, int m, int c,
                                          const uint4 (&code)[R], const uint32_t (&scale_min)[R],
                                          float (&acc)[R][M]) {
  __half2 sum[R][M][2];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int i = 0; i < M; ++i) sum[r][i][0] = sum[r][i][1] = __float2half2_rn(0.0f);
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    // x's elements (e, e + 4) of this word for every activation row.
    __half2 xp[M][4];
#pragma unroll
    for (int i = 0; i < M; ++i) {
      const int row = M == 1 ? 0 : min(i, m - 1);
      x_pairs(__ldg(reinterpret_cast<const uint4*>(x + row * k + c * kChunk + j * 8)), xp[i]);
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const __half2 sm = h2_bits(scale_min[r]);
      const __half2 s2 = __low2half2(sm), m2 = __high2half2(sm);
      __half2 q[4];
      unpack_codes(word_of(code[r], j), q);
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const __half2 wv = __hfma2(q[e], s2, m2);
#pragma unroll
        for (int i = 0; i < M; ++i) sum[r][i][j / 2] = __hfma2(xp[i][e], wv, sum[r][i][j / 2]);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int i = 0; i < M; ++i) {
      const float2 a = __half22float2(sum[r][i][0]), b = __half22float2(sum[r][i][1]);
      acc[r][i] += (a.x + a.y) + (b.x + b.y);
    }
}

// BF16: the same chunk in fp32.
template <int M, int R>
__device__ __forceinline__ void chunk_dot(const __nv_bfloat16* __restrict__ x, int64_t k, int m,
                                          int c, const uint4 (&code)[R],
                                          const uint32_t (&scale_min)[R], float (&acc)[R][M]) {
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    float xf[M][8];
#pragma unroll
    for (int i = 0; i < M; ++i) {
      const int row = M == 1 ? 0 : min(i, m - 1);
      const uint4 v = __ldg(reinterpret_cast<const uint4*>(x + row * k + c * kChunk + j * 8));
#pragma unroll
      for (int h = 0; h < 4; ++h) {
        const uint32_t pair = word_of(v, h);
        xf[i][2 * h] = __uint_as_float(pair << 16);
        xf[i][2 * h + 1] = __uint_as_float(pair & 0xffff0000u);
      }
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const float s = __half2float(__ushort_as_half(static_cast<uint16_t>(scale_min[r])));
      const float mn = __half2float(__ushort_as_half(static_cast<uint16_t>(scale_min[r] >> 16)));
      __half2 q[4];
      unpack_codes(word_of(code[r], j), q);
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float2 qf = __half22float2(q[e]);
        const float w0 = fmaf(qf.x, s, mn), w1 = fmaf(qf.y, s, mn);  // elements e and e + 4
#pragma unroll
        for (int i = 0; i < M; ++i) {
          acc[r][i] = fmaf(xf[i][e], w0, acc[r][i]);
          acc[r][i] = fmaf(xf[i][e + 4], w1, acc[r][i]);
        }
      }
    }
  }
}

// A warp's place in the launch: its segment, its rows and its turn along k. `split` warps of a
// block (1, 2 or 4) share R rows and take turns along k.
struct WarpRows {
  int seg, lane, warp;
  int wk;  // this warp's turn along k
  int64_t n, row0;
  bool active;
  int chunks;
  int first, stride;  // the lane's first chunk (chunks when it has none) and its step
  RowBlock b;
};
template <int R, int U>
__device__ __forceinline__ WarpRows warp_rows(const GemvGrid& g, int64_t k, int split) {
  WarpRows w;
  w.seg = blockIdx.x >= g.start[2] ? 2 : blockIdx.x >= g.start[1] ? 1 : 0;
  const unsigned start = w.seg == 2 ? g.start[2] : w.seg == 1 ? g.start[1] : g.start[0];
  w.n = pick(g.n, w.seg);
  w.lane = threadIdx.x % 32;
  w.warp = threadIdx.x / 32;
  w.wk = w.warp % split;
  const bool gated = R == 2 && g.gated;  // a row group's one output: gate and up rows row0
  w.row0 = (int64_t{blockIdx.x - start} * (kWarps / split) + w.warp / split) * (gated ? 1 : R);
  w.active = w.row0 < w.n;
  w.chunks = static_cast<int>(k / kChunk);
  constexpr int kStep = kChunk * U;  // chunks a warp covers per step
  w.first = w.active ? w.lane + kStep * w.wk : w.chunks;
  w.stride = kStep * split;
  w.b.w = int4_row(pick(g.w, w.seg), w.n, k, w.row0);
  w.b.chunks_per_row = w.chunks;
  w.b.groups_per_row = k / kInt4Group;
  w.b.last_row = w.n - 1 - w.row0;
  w.b.gated = gated;
  if (gated) w.b.up = int4_row(g.w[1], w.n, k, w.row0);
  return w;
}

// The lane's first stage of weights loads while the kernel before finishes (chain.cuh).
template <int R, int U>
__device__ __forceinline__ void load_first_then_wait(const WarpRows& w, Stage<R, U>& cur) {
  if (w.first < w.chunks) load_stage(w.b, w.first, w.chunks, cur);
  wait_for_prior_kernels();
  release_next_kernel();
}

// The pipeline over a lane's chunks: the next stage loads while dot(c, codes, scale_min) takes
// each chunk c of the current one (`cur`, from load_first_then_wait).
template <int R, int U, typename Dot>
__device__ __forceinline__ void stream_chunks(const WarpRows& w, Stage<R, U>& cur, Dot&& dot) {
  const int chunks = w.chunks, stride = w.stride;
  for (int c0 = w.first; c0 < chunks; c0 += stride) {
    Stage<R, U> next;
    if (c0 + stride < chunks) load_stage(w.b, c0 + stride, chunks, next);
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int c = c0 + kChunk * u;
      if (c < chunks) dot(c, cur.code[u], cur.scale_min[u]);
    }
    cur = next;
  }
}

// With split > 1, the first warp of each row group takes the others' sums (in its lane 0) through
// `red`; false for the other warps, which are done.
template <int R, int M>
__device__ __forceinline__ bool merge_split_sums(float (&acc)[R][M], float (&red)[kWarps][R][M],
                                                 const WarpRows& w, int split) {
  if (split == 1) return true;
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int i = 0; i < M; ++i) {
      const float v = warp_sum(acc[r][i]);
      if (w.lane == 0) red[w.warp][r][i] = v;
    }
  __syncthreads();
  if (w.wk != 0) return false;
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int i = 0; i < M; ++i) {
      float v = 0.0f;
      if (w.lane == 0)
        for (int s = 0; s < split; ++s) v += red[w.warp + s][r][i];
      acc[r][i] = v;
    }
  return true;
}

template <typename T, int M, int R, int U>
__global__ void __launch_bounds__(kWarps * 32)
    gemv_int4_kernel(const T* __restrict__ x, GemvGrid g, int m, int64_t k, int split) {
  __shared__ float red[kWarps][R][M];
  const WarpRows w = warp_rows<R, U>(g, k, split);
  float acc[R][M];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int i = 0; i < M; ++i) acc[r][i] = 0.0f;
  Stage<R, U> cur;
  load_first_then_wait(w, cur);
  stream_chunks<R, U>(w, cur, [&](int c, const uint4(&code)[R], const uint32_t(&scale_min)[R]) {
    chunk_dot<M, R>(x, k, m, c, code, scale_min, acc);
  });
  if (!merge_split_sums<R, M>(acc, red, w, split)) return;
  if (w.active) store_rows<T, R, M>(acc, g, w.seg, w.row0, w.n, m, w.lane);
}

}  // namespace

int gemv_int4_split_k(int64_t rows, int rows_per_warp) {
  // Two warps a row group when one a group would leave fewer than ~3K warps in all (23 an SM of
  // an H100): llama-3-8b's o and down projections and opt-6.7b's fc2 at batch 1 gain 1-8% (down
  // 18.5 to 17.8 us, and 2x over one warp with R = 2), while more warps slow every projection
  // and qkv (3072 warps) is fastest with one (bench/gemv_sweep).
  return rows / rows_per_warp < 3072 ? 2 : 1;
}

bool gemv_int4_supported(DType dt, int64_t m, int64_t k, const void* x) {
  const bool rows = m >= 1 && (m <= kGemvMaxRows || (dt == DType::kF16 && gemv_mma_supported(m)));
  return rows && k > 0 && k % kInt4Group == 0 && k / kChunk <= 0x7fffffff &&
         (reinterpret_cast<uintptr_t>(x) & 15) == 0;
}

void launch_gemv_int4(DType dt, const void* x, const GemvBatch& batch, int64_t m, int64_t k,
                      bool relu, cudaStream_t stream, GemvVariant variant) {
  STRATA_CHECK(gemv_int4_supported(dt, m, k, x), "gemv_int4: unsupported shape or alignment");
  for (int s = 0; s < batch.count; ++s)
    STRATA_CHECK((reinterpret_cast<uintptr_t>(batch.seg[s].w) & 15) == 0,
                 "gemv_int4: codes not 16-byte aligned");
  const bool given =
      variant.rows_per_warp != 0 || variant.chunks_per_step != 0 || variant.split_k != 0;
  STRATA_CHECK(!batch.gated || m == 1 || dt == DType::kF16,
               "gemv_int4: gated products of several rows need F16");
  if (dt == DType::kF16 && gemv_mma_supported(m) &&
      ((batch.gated && m > 1) || m > kGemvMaxRows || (m >= 2 && !given))) {
    launch_gemv_int4_mma(x, batch, m, k, relu, stream);
    return;
  }
  if (batch.gated) variant.rows_per_warp = 2;  // a gate row and an up row a row group
  if (variant.rows_per_warp == 0)
    variant.rows_per_warp = default_gemv_variant(m, true).rows_per_warp;
  int64_t rows = 0;
  for (int s = 0; s < batch.count; ++s) rows += batch.seg[s].n;
  const int split =
      variant.split_k != 0 ? variant.split_k : gemv_int4_split_k(rows, variant.rows_per_warp);
  STRATA_CHECK(split == 1 || split == 2 || split == 4, "gemv_int4: split_k must be 1, 2 or 4");
  STRATA_DISPATCH_ACT(
      dt, launch_gemv_variant(
              "gemv_int4", true, batch, m, relu, kWarps / split, variant,
              [&](auto M, auto R, auto U, const GemvGrid& g) {
                launch_chained(
                    gemv_int4_kernel<T, decltype(M)::value, decltype(R)::value, decltype(U)::value>,
                    g.start[kGemvMaxSegments], kWarps * 32, 0, stream, static_cast<const T*>(x), g,
                    static_cast<int>(m), k, split);
              }));
}

}  // namespace strata::cuda
