// Prefill attention: a block of 4 warps owns 64 query rows of one sequence and one query head and
// walks the keys in tiles of 64 (flash-attention style). Q, K and V tiles sit in shared memory;
// each warp computes its 16 x 64 block of scores with tensor cores (WMMA, fp32 accumulate),
// applies the causal/window mask and an online softmax in fp32 (scores in log2 units), and
// accumulates P · V with tensor cores into a 16 x head_dim fp32 output kept in shared memory,
// rescaled whenever a row's running maximum grows. Only 64 x 64 scores exist at any time.
#include <mma.h>

#include <cmath>

#include "cuda/attention.h"
#include "cuda/cuda_check.h"
#include "cuda/element.cuh"

namespace strata::cuda {
namespace {

using namespace nvcuda;

constexpr int kWarps = 4;
constexpr int kRows = kPrefillTileRows;  // query rows per block: 16 per warp
constexpr int kKeys = 64;                // keys per tile
constexpr int kLdS = kKeys + 4;          // fp32 score row stride
constexpr int kLdP = kKeys + 8;          // probability row stride (elements)
constexpr float kLog2e = 1.4426950408889634f;

// Byte offsets of the shared-memory regions for a head_dim.
struct Layout {
  int ldh, ldo;  // element strides of the Q/K/V tiles and of the fp32 output
  size_t q, k, v, s, p, o, total;
};

__host__ __device__ inline Layout layout_for(int D) {
  Layout l{};
  l.ldh = D + 8;
  l.ldo = D + 4;
  auto r = [](size_t b) { return (b + 127) / 128 * 128; };
  const size_t tile = r(size_t{kRows} * l.ldh * 2);
  l.q = 0;
  l.k = l.q + tile;
  l.v = l.k + tile;
  l.s = l.v + tile;
  l.p = l.s + r(size_t{kWarps} * 16 * kLdS * 4);
  l.o = l.p + r(size_t{kWarps} * 16 * kLdP * 2);
  l.total = l.o + r(size_t{kWarps} * 16 * l.ldo * 4);
  return l;
}

template <typename T>
__device__ void load_tile(T* dst, int ldh, const T* src, int64_t src_stride, int rows_valid,
                          int D) {
  const int chunks = D / 8;
  for (int i = threadIdx.x; i < kRows * chunks; i += blockDim.x) {
    const int r = i / chunks, c = i % chunks;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (r < rows_valid) v = *reinterpret_cast<const uint4*>(src + r * src_stride + c * 8);
    *reinterpret_cast<uint4*>(dst + r * ldh + c * 8) = v;
  }
}

template <typename T>
__global__ void __launch_bounds__(kWarps * 32) prefill_kernel(AttentionArgs a, const int32_t* tiles) {
  extern __shared__ __align__(128) unsigned char smem[];
  const int D = static_cast<int>(a.head_dim);
  const Layout lay = layout_for(D);
  T* qs = reinterpret_cast<T*>(smem + lay.q);
  T* ks = reinterpret_cast<T*>(smem + lay.k);
  T* vs = reinterpret_cast<T*>(smem + lay.v);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float* ss = reinterpret_cast<float*>(smem + lay.s) + warp * 16 * kLdS;
  T* ps = reinterpret_cast<T*>(smem + lay.p) + warp * 16 * kLdP;
  float* os = reinterpret_cast<float*>(smem + lay.o) + warp * 16 * lay.ldo;

  const SeqDesc s = a.seqs[tiles[2 * blockIdx.x]];
  const int r0 = tiles[2 * blockIdx.x + 1];
  const int h = blockIdx.y;
  const int kvh = h / static_cast<int>(a.hq / a.hkv);
  const int rows_valid = min(kRows, s.num_tokens - r0);
  const int64_t row = a.hkv * D;  // elements per cache position

  // Q rows of this tile.
  load_tile(qs, lay.ldh, static_cast<const T*>(a.q) + (int64_t{s.offset} + r0) * a.hq * D + h * D,
            a.hq * D, rows_valid, D);
  for (int i = lane; i < 16 * lay.ldo; i += 32) os[i] = 0.0f;

  // Keys the tile needs: [k_lo, k_hi].
  const int64_t k_hi = int64_t{s.past_len} + r0 + rows_valid - 1;
  int64_t k_lo = 0;
  if (a.window > 0) k_lo = max(int64_t{0}, int64_t{s.past_len} + r0 - a.window + 1);

  // This lane's row of the warp's 16 and its half of the columns.
  const int rr = lane >> 1, half = lane & 1;
  const int r = r0 + warp * 16 + rr;  // row within the sequence
  const bool row_ok = r < s.num_tokens;
  const int64_t qp = int64_t{s.past_len} + r;
  const int64_t lo = a.window > 0 ? qp - a.window + 1 : 0;
  const int warp_rows = min(16, s.num_tokens - r0 - warp * 16);  // may be <= 0
  const int64_t warp_hi = int64_t{s.past_len} + r0 + warp * 16 + warp_rows - 1;
  float m = -INFINITY, l = 0.0f;
  const float sl2 = a.scale * kLog2e;

  const T* kc = static_cast<const T*>(a.k_cache) + int64_t{s.slot} * a.max_len * row + kvh * D;
  const T* vc = static_cast<const T*>(a.v_cache) + int64_t{s.slot} * a.max_len * row + kvh * D;

  for (int64_t kt = k_lo; kt <= k_hi; kt += kKeys) {
    const int keys_valid = static_cast<int>(min(int64_t{kKeys}, k_hi - kt + 1));
    __syncthreads();  // everyone is done with the previous K/V tiles (and Q is written)
    load_tile(ks, lay.ldh, kc + kt * row, row, keys_valid, D);
    load_tile(vs, lay.ldh, vc + kt * row, row, keys_valid, D);
    __syncthreads();
    if (warp_rows <= 0 || kt > warp_hi) continue;  // nothing of this tile is visible to the warp

    // S = Q_w · K^T  [16, 64]
    for (int n = 0; n < kKeys / 16; ++n) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> c;
      wmma::fill_fragment(c, 0.0f);
      for (int kk = 0; kk < D / 16; ++kk) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> fb;
        wmma::load_matrix_sync(fa, qs + warp * 16 * lay.ldh + kk * 16, lay.ldh);
        wmma::load_matrix_sync(fb, ks + n * 16 * lay.ldh + kk * 16, lay.ldh);
        wmma::mma_sync(c, fa, fb, c);
      }
      wmma::store_matrix_sync(ss + n * 16, c, kLdS, wmma::mem_row_major);
    }
    __syncwarp();

    // Online softmax over this lane's 32 columns of row rr.
    float sc[32];
    float mx = -INFINITY;
#pragma unroll
    for (int c = 0; c < 32; ++c) {
      const int64_t kp = kt + half * 32 + c;
      const bool vis = row_ok && kp <= qp && kp >= lo;
      sc[c] = vis ? ss[rr * kLdS + half * 32 + c] * sl2 : -INFINITY;
      mx = fmaxf(mx, sc[c]);
    }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    const float m_new = fmaxf(m, mx);
    float alpha = 1.0f, sum = 0.0f;
    if (m_new != -INFINITY) {
      alpha = exp2f(m - m_new);
#pragma unroll
      for (int c = 0; c < 32; ++c) {
        sc[c] = exp2f(sc[c] - m_new);
        sum += sc[c];
      }
    } else {
#pragma unroll
      for (int c = 0; c < 32; ++c) sc[c] = 0.0f;
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    l = l * alpha + sum;
    m = m_new;
#pragma unroll
    for (int c = 0; c < 32; ++c) ps[rr * kLdP + half * 32 + c] = from_float<T>(sc[c]);
    for (int d = half * (D / 2); d < (half + 1) * (D / 2); ++d) os[rr * lay.ldo + d] *= alpha;
    __syncwarp();

    // O_w += P · V  [16, D]
    for (int n = 0; n < D / 16; ++n) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> c;
      wmma::load_matrix_sync(c, os + n * 16, lay.ldo, wmma::mem_row_major);
      for (int kk = 0; kk < kKeys / 16; ++kk) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> fb;
        wmma::load_matrix_sync(fa, ps + kk * 16, kLdP);
        wmma::load_matrix_sync(fb, vs + kk * 16 * lay.ldh + n * 16, lay.ldh);
        wmma::mma_sync(c, fa, fb, c);
      }
      wmma::store_matrix_sync(os + n * 16, c, lay.ldo, wmma::mem_row_major);
    }
    __syncwarp();
  }

  __syncwarp();
  if (row_ok) {
    T* out = static_cast<T*>(a.out) + (int64_t{s.offset} + r) * a.hq * D + h * D;
    const float inv = 1.0f / l;
    for (int d = half * (D / 2); d < (half + 1) * (D / 2); ++d)
      out[d] = from_float<T>(os[rr * lay.ldo + d] * inv);
  }
}

}  // namespace

bool prefill_supported(int64_t head_dim) {
  return head_dim > 0 && head_dim % 16 == 0 && head_dim <= 256;
}

void launch_attention_prefill(const AttentionArgs& a, const int32_t* tiles, int64_t num_tiles,
                              cudaStream_t stream) {
  if (num_tiles == 0) return;
  STRATA_CHECK(prefill_supported(a.head_dim), "attention_prefill: unsupported head_dim");
  STRATA_CHECK(a.hq <= 65535 && num_tiles <= 0x7fffffff, "attention_prefill: grid too large");
  const Layout lay = layout_for(static_cast<int>(a.head_dim));
  const dim3 grid(static_cast<unsigned>(num_tiles), static_cast<unsigned>(a.hq));
  STRATA_DISPATCH_ACT(a.dtype, {
    STRATA_CUDA_CHECK(cudaFuncSetAttribute(prefill_kernel<T>,
                                           cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(lay.total)));
    prefill_kernel<T><<<grid, kWarps * 32, lay.total, stream>>>(a, tiles);
  });
  STRATA_CUDA_CHECK_LAUNCH();
}

}  // namespace strata::cuda
