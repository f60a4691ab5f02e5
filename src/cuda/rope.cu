// RoPE: blockIdx.x is the token, blockIdx.y a range of blockDim.x pairs (i, i + half) of its
// heads, one pair a thread (a decode step of one token still spreads over several SMs). The angle
// is the fp32 product position * inv_freq, then accurate (not fast-math) cosf/sinf, as transformers
// does. rope_kv_write_kernel lays out the same way over a token's q pairs, then its k pairs (each
// also stored to the cache), then the 16-byte pieces of its v row; both rotate through rotate_pair.
#include <algorithm>

#include "cuda/attention.h"
#include "cuda/chain.cuh"
#include "cuda/cuda_check.h"
#include "cuda/element.cuh"
#include "cuda/rope.h"

namespace strata::cuda {
namespace {

template <typename T>
struct Rotated {
  T lo, hi;
};

// Elements i and i + half of one head (at x) rotated by the angle pos * inv_freq.
template <typename T>
__device__ __forceinline__ Rotated<T> rotate_pair(const T* x, int64_t i, int64_t half, float pos,
                                                  float inv_freq) {
  const float angle = __fmul_rn(pos, inv_freq);
  float s, c;
  sincosf(angle, &s, &c);
  const float a = to_float(x[i]), b = to_float(x[i + half]);
  return {from_float<T>(a * c - b * s), from_float<T>(b * c + a * s)};
}

template <typename T>
__global__ void rope_kernel(T* x, const int32_t* positions, const float* inv_freq, int64_t heads,
                            int64_t head_dim) {
  const int64_t half = head_dim / 2;
  const float pos = static_cast<float>(positions[blockIdx.x]);
  T* row = x + int64_t{blockIdx.x} * heads * head_dim;
  for (int64_t k = int64_t{blockIdx.y} * blockDim.x + threadIdx.x; k < heads * half;
       k += int64_t{gridDim.y} * blockDim.x) {
    const int64_t h = k / half, i = k % half;
    T* head = row + h * head_dim;
    const Rotated<T> r = rotate_pair(head, i, half, pos, inv_freq[i]);
    head[i] = r.lo;
    head[i + half] = r.hi;
  }
}

// Work items of one token: hq * half q pairs, hkv * half k pairs, then hkv * head_dim / 8 pieces
// of v. The cache row is kv_write_kernel's (attention_decode.cu).
template <typename T>
__global__ void rope_kv_write_kernel(T* q, T* k, const T* v, T* kc, T* vc, const int32_t* positions,
                                     const float* inv_freq, const SeqDesc* seqs,
                                     const int32_t* token_seq, int64_t hq, int64_t hkv,
                                     int64_t head_dim, int64_t max_len) {
  wait_for_prior_kernels();
  release_next_kernel();
  const int64_t t = blockIdx.x, half = head_dim / 2, row = hkv * head_dim;
  const float pos = static_cast<float>(positions[t]);
  const SeqDesc s = seqs[token_seq[t]];
  const int64_t dst = (int64_t{s.slot} * max_len + s.past_len + (t - s.offset)) * row;
  const int64_t q_pairs = hq * half, qk_pairs = q_pairs + hkv * half, items = qk_pairs + row / 8;
  T* q_row = q + t * hq * head_dim;
  T* k_row = k + t * row;
  for (int64_t j = int64_t{blockIdx.y} * blockDim.x + threadIdx.x; j < items;
       j += int64_t{gridDim.y} * blockDim.x) {
    if (j < q_pairs) {
      const int64_t h = j / half, i = j % half;
      T* head = q_row + h * head_dim;
      const Rotated<T> r = rotate_pair(head, i, half, pos, inv_freq[i]);
      head[i] = r.lo;
      head[i + half] = r.hi;
    } else if (j < qk_pairs) {
      const int64_t h = (j - q_pairs) / half, i = (j - q_pairs) % half;
      const int64_t e = h * head_dim + i;  // element of the row
      const Rotated<T> r = rotate_pair(k_row + h * head_dim, i, half, pos, inv_freq[i]);
      k_row[e] = r.lo;
      k_row[e + half] = r.hi;
      kc[dst + e] = r.lo;
      kc[dst + e + half] = r.hi;
    } else {
      const int64_t p = j - qk_pairs;
      reinterpret_cast<uint4*>(vc + dst)[p] = reinterpret_cast<const uint4*>(v + t * row)[p];
    }
  }
}

// Threads a block and blocks a token (grid.y) for `items` work items of a token.
dim3 token_grid(int64_t tokens, int64_t items, int& threads) {
  threads = items >= 256 ? 256 : (items >= 128 ? 128 : 64);
  return dim3(static_cast<unsigned>(tokens),
              static_cast<unsigned>(std::min<int64_t>((items + threads - 1) / threads, 65535)));
}

}  // namespace

void launch_rope(DType dt, void* x, const int32_t* positions, const float* inv_freq, int64_t tokens,
                 int64_t heads, int64_t head_dim, cudaStream_t stream) {
  if (tokens == 0) return;
  STRATA_CHECK(tokens <= 0x7fffffff, "rope: too many tokens");
  int threads = 0;
  const dim3 grid = token_grid(tokens, heads * (head_dim / 2), threads);
  STRATA_DISPATCH_ACT(dt, rope_kernel<<<grid, threads, 0, stream>>>(static_cast<T*>(x), positions,
                                                                    inv_freq, heads, head_dim));
  STRATA_CUDA_CHECK_LAUNCH();
}

void launch_rope_kv_write(const RopeKvWrite& r, cudaStream_t stream) {
  const AttentionArgs& a = r.attn;
  if (a.tokens == 0) return;
  STRATA_CHECK(a.tokens <= 0x7fffffff, "rope_kv_write: too many tokens");
  STRATA_CHECK(a.head_dim % 8 == 0, "rope_kv_write: head_dim must be a multiple of 8");
  int threads = 0;
  const dim3 grid =
      token_grid(a.tokens, (a.hq + a.hkv) * (a.head_dim / 2) + a.hkv * a.head_dim / 8, threads);
  STRATA_DISPATCH_ACT(
      a.dtype,
      launch_chained(rope_kv_write_kernel<T>, grid, threads, 0, stream,
                     static_cast<T*>(const_cast<void*>(a.q)), static_cast<T*>(r.k),
                     static_cast<const T*>(r.v), static_cast<T*>(const_cast<void*>(a.k_cache)),
                     static_cast<T*>(const_cast<void*>(a.v_cache)), r.positions, r.inv_freq, a.seqs,
                     a.token_seq, a.hq, a.hkv, a.head_dim, a.max_len));
}

}  // namespace strata::cuda
