// The int4-g64 skinny GEMV (w4a16, decode-sized batches): y[m, n] = x[m, k] · dequant(w)^T for
// m <= kGemvMaxRows, streaming the 4.5-bit blob once at close to the copy bandwidth.
//
// Work: a warp owns R weight rows; each lane takes 16-byte chunks of codes (32 elements, half a
// group) spaced 32 chunks apart, and loads the next U chunks of its R rows while it computes on
// the current ones, so that 2 * U * R loads per lane are in flight. The activation rows are read
// through L1 (every warp of an SM reads the same x). The batch size M is a template parameter
// (1, 2, 4, 8; a batch of 3 runs as 4 with the last row read twice and not stored).
//
// Codes to numbers, two elements per instruction: in a 32-bit word of 8 codes (element e in bits
// [4e, 4e + 4)), (word & 0x000f000f) | 0x64006400 is the fp16 pair (1024 + q0, 1024 + q4) and
// (word & 0x00f000f0) | 0x64006400 is (1024 + 16 q1, 1024 + 16 q5); one subtraction, or one
// multiply-add by 1/16, leaves the exact codes; the word shifted by 8 gives elements 2, 6, 3, 7.
// F16: each code pair becomes the pair of weights q * scale + min (one fp16 multiply-add, exact
// but for its single rounding) and is multiplied into two half2 accumulators per chunk (8
// products a lane each), which are added in fp32 to the row's sums once per chunk; x's pairs
// (e, e + 4) are made with byte permutes. BF16 (whose 8-bit mantissa is too short to accumulate
// in): the same exact codes, widened to fp32, weights and products in fp32.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

#include <string>

#include "cuda/cuda_check.h"
#include "cuda/element.cuh"
#include "cuda/gemv.h"
#include "cuda/gemv_variants.cuh"
#include "cuda/int4_gemm.h"

namespace strata::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kGroup = 64;
constexpr int kChunk = 32;  // elements in 16 bytes of codes

__device__ __forceinline__ uint32_t word_of(const uint4& v, int j) {
  return j == 0 ? v.x : j == 1 ? v.y : j == 2 ? v.z : v.w;
}

__device__ __forceinline__ __half2 h2_bits(uint32_t bits) {
  __half2 h;
  static_assert(sizeof(h) == sizeof(bits));
  memcpy(&h, &bits, sizeof(bits));
  return h;
}

// The 8 codes of `w` as exact fp16 pairs: q[j] = (code j, code j + 4).
__device__ __forceinline__ void unpack_codes(uint32_t w, __half2 q[4]) {
  const __half2 k1024 = h2_bits(0x64006400u);       // (1024, 1024)
  const __half2 kSixteenth = h2_bits(0x2c002c00u);  // (1/16, 1/16)
  const __half2 kMinus64 = h2_bits(0xd400d400u);    // (-64, -64)
  const uint32_t w8 = w >> 8;
  q[0] = __hsub2(h2_bits((w & 0x000f000fu) | 0x64006400u), k1024);
  q[1] = __hfma2(h2_bits((w & 0x00f000f0u) | 0x64006400u), kSixteenth, kMinus64);
  q[2] = __hsub2(h2_bits((w8 & 0x000f000fu) | 0x64006400u), k1024);
  q[3] = __hfma2(h2_bits((w8 & 0x00f000f0u) | 0x64006400u), kSixteenth, kMinus64);
}

// One lane's share of a pipeline step: U chunks of R rows, with their groups' scale and min.
template <int R, int U>
struct Stage {
  uint4 code[U][R];
  uint32_t scale_min[U][R];  // fp16 scale in the low half, fp16 min in the high half
};

struct RowBlock {
  const uint4* codes;         // row row0's first chunk
  const uint16_t* scales;     // row row0's first group
  const uint16_t* mins;
  int64_t chunks_per_row, groups_per_row;
  int64_t last_row;           // rows past n - 1 read row n - 1 (their sums are not stored)
};

template <int R, int U>
__device__ __forceinline__ void load_stage(const RowBlock& b, int c0, int chunks, Stage<R, U>& s) {
#pragma unroll
  for (int u = 0; u < U; ++u) {
    const int c = c0 + kChunk * u;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int64_t rr = min(int64_t{r}, b.last_row);
      if (c < chunks) {
        s.code[u][r] = load_stream(b.codes + rr * b.chunks_per_row + c);
        const int64_t gi = rr * b.groups_per_row + c / 2;
        s.scale_min[u][r] = uint32_t{__ldg(b.scales + gi)} | (uint32_t{__ldg(b.mins + gi)} << 16);
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
      const uint4 v = __ldg(reinterpret_cast<const uint4*>(x + row * k + c * kChunk + j * 8));
      xp[i][0] = h2_bits(__byte_perm(v.x, v.z, 0x5410));
      xp[i][1] = h2_bits(__byte_perm(v.x, v.z, 0x7632));
      xp[i][2] = h2_bits(__byte_perm(v.y, v.w, 0x5410));
      xp[i][3] = h2_bits(__byte_perm(v.y, v.w, 0x7632));
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

template <typename T, int M, int R, int U>
__global__ void __launch_bounds__(kWarps * 32)
    gemv_int4_kernel(const T* __restrict__ x, GemvGrid g, int m, int64_t k) {
  const int seg = blockIdx.x >= g.start[2] ? 2 : blockIdx.x >= g.start[1] ? 1 : 0;
  const unsigned start = seg == 2 ? g.start[2] : seg == 1 ? g.start[1] : g.start[0];
  const int64_t n = pick(g.n, seg);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t row0 = (int64_t{blockIdx.x - start} * kWarps + warp) * R;
  if (row0 >= n) return;
  const int chunks = static_cast<int>(k / kChunk);
  const int64_t groups = k / kGroup;
  const auto* base = static_cast<const uint8_t*>(pick(g.w, seg));
  const auto* scales = reinterpret_cast<const uint16_t*>(base + n * k / 2);
  RowBlock b;
  b.codes = reinterpret_cast<const uint4*>(base) + row0 * chunks;
  b.scales = scales + row0 * groups;
  b.mins = scales + n * groups + row0 * groups;
  b.chunks_per_row = chunks;
  b.groups_per_row = groups;
  b.last_row = n - 1 - row0;

  float acc[R][M];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int i = 0; i < M; ++i) acc[r][i] = 0.0f;

  constexpr int kStep = kChunk * U;  // chunks a warp covers per step
  Stage<R, U> cur;
  load_stage(b, lane, chunks, cur);
  for (int c0 = lane; c0 < chunks; c0 += kStep) {
    Stage<R, U> next;
    if (c0 + kStep < chunks) load_stage(b, c0 + kStep, chunks, next);
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int c = c0 + kChunk * u;
      if (c < chunks) chunk_dot<M, R>(x, k, m, c, cur.code[u], cur.scale_min[u], acc);
    }
    cur = next;
  }

  store_rows<T, R, M>(acc, g, seg, row0, n, m, lane);
}

}  // namespace

bool gemv_int4_supported(int64_t m, int64_t k, const void* x) {
  return m >= 1 && m <= kGemvMaxRows && k > 0 && k % kGroup == 0 &&
         k / kChunk <= 0x7fffffff && (reinterpret_cast<uintptr_t>(x) & 15) == 0;
}

void launch_gemv_int4(DType dt, const void* x, const GemvBatch& batch, int64_t m, int64_t k,
                      bool relu, cudaStream_t stream, GemvVariant variant) {
  STRATA_CHECK(gemv_int4_supported(m, k, x), "gemv_int4: unsupported shape or alignment");
  for (int s = 0; s < batch.count; ++s)
    STRATA_CHECK((reinterpret_cast<uintptr_t>(batch.seg[s].w) & 15) == 0,
                 "gemv_int4: codes not 16-byte aligned");
  STRATA_DISPATCH_ACT(dt, launch_gemv_variant(
                              "gemv_int4", true, batch, m, relu, kWarps, variant,
                              [&](auto M, auto R, auto U, const GemvGrid& g) {
                                gemv_int4_kernel<T, decltype(M)::value, decltype(R)::value,
                                                 decltype(U)::value>
                                    <<<g.start[kGemvMaxSegments], kWarps * 32, 0, stream>>>(
                                        static_cast<const T*>(x), g, static_cast<int>(m), k);
                              }));
  STRATA_CUDA_CHECK_LAUNCH();
}

}  // namespace strata::cuda
