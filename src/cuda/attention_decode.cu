// Decode attention and the KV cache write. Each block owns one query row, one kv head and one
// split of that row's context, and reads each key and value row once for all query heads of the
// group (GQA). Scores are kept in log2 units (scale * log2(e) folded into q).
#include <algorithm>
#include <cmath>

#include "cuda/attention.h"
#include "cuda/attention_decode.cuh"
#include "cuda/chain.cuh"
#include "cuda/cuda_check.h"
#include "cuda/element.cuh"

namespace strata::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kMaxGroup = 8;  // query heads per kv head handled in registers, at most
constexpr float kLog2e = 1.4426950408889634f;

__host__ __device__ inline int lanes_per_key(int64_t head_dim) {
  int l = 1;
  while (l * 8 < head_dim) l *= 2;
  return l;
}

template <typename T>
__global__ void kv_write_kernel(const T* k, const T* v, T* kc, T* vc, const SeqDesc* seqs,
                                const int32_t* token_seq, int64_t row, int64_t max_len) {
  wait_for_prior_kernels();
  release_next_kernel();
  const int64_t t = blockIdx.x;
  const SeqDesc s = seqs[token_seq[t]];
  const int64_t pos = s.past_len + (t - s.offset);
  const int64_t dst = (int64_t{s.slot} * max_len + pos) * row;
  const uint4* ks = reinterpret_cast<const uint4*>(k + t * row);
  const uint4* vs = reinterpret_cast<const uint4*>(v + t * row);
  uint4* kd = reinterpret_cast<uint4*>(kc + dst);
  uint4* vd = reinterpret_cast<uint4*>(vc + dst);
  for (int64_t i = int64_t{blockIdx.y} * blockDim.x + threadIdx.x; i < row / 8;
       i += int64_t{gridDim.y} * blockDim.x) {
    kd[i] = ks[i];
    vd[i] = vs[i];
  }
}

// A lane's 16 bytes of value rows j0, j0 + stride, j0 + 2 stride, j0 + 3 stride of a tile (zeros
// past its end).
template <typename T>
__device__ __forceinline__ void load_values(const T* vbase, int64_t base, int j0, int stride,
                                            int tile, int64_t row, uint4 (&out)[4]) {
#pragma unroll
  for (int u = 0; u < 4; ++u) {
    const int j = j0 + u * stride;
    out[u] = j < tile ? *reinterpret_cast<const uint4*>(vbase + (base + j) * row)
                      : make_uint4(0, 0, 0, 0);
  }
}

// kGroup: a compile-time bound on the query heads per kv head (1, 2, 4 or 8), so that the
// per-head registers of small groups are not reserved for eight.
//
// A block walks its split in tiles of kThreads keys:
//   1. scores: thread i takes key i of the tile and dots it with every query head of the group
//      (q scaled into log2 units in shared memory, read as broadcasts), no shuffles;
//   2. the tile's maximum per head (a warp maximum, then the block's), which rescales the running
//      sums once per tile; the probabilities go to shared memory;
//   3. values: subgroups of L = pow2ceil(head_dim / 8) lanes take the tile's keys in turn, a lane
//      8 elements of the value row, accumulating every head's sum and probability mass.
// The subgroups' sums are then added (they share the block's maxima). With several splits each
// block leaves its (max, sum, output) in the workspace and the split that finishes last merges
// them (a per-(row, kv head) arrival counter, reset by that split), so no second kernel runs.
template <typename T, int kGroup>
__global__ void __launch_bounds__(kThreads) decode_kernel(AttentionArgs a, int splits, float* ws) {
  extern __shared__ float smem[];
  const int D = static_cast<int>(a.head_dim);
  const int L = lanes_per_key(D);
  const int subgroups = kThreads / L;
  const int sub = threadIdx.x / L, li = threadIdx.x % L;
  const bool lane_on = li * 8 < D;
  const int G = static_cast<int>(a.hq / a.hkv);
  const int64_t t = blockIdx.x;
  const int kvh = blockIdx.y, split = blockIdx.z;
  const int h0 = kvh * G;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  constexpr int kWarpsPerBlock = kThreads / 32;

  float* sm_q = smem;                               // [G][D], scaled
  float* sm_p = sm_q + G * D;                       // [kThreads][kGroup] scores, then probabilities
  float* sm_wmax = sm_p + kThreads * kGroup;        // [warps][kGroup]
  float* sm_o = sm_wmax + kWarpsPerBlock * kGroup;  // [subgroups][G][D] at the end
  float* sm_l = sm_o + subgroups * G * D;           // [subgroups][G]

  const DecodeSpan span = decode_span(a, t, splits, split);
  const SeqDesc s = span.seq;
  const int64_t begin = span.begin, end = span.end;

  const float qscale = a.scale * kLog2e;
  const T* q = static_cast<const T*>(a.q) + (t * a.hq + h0) * D;
  for (int i = threadIdx.x; i < G * D; i += kThreads) sm_q[i] = to_float(q[i]) * qscale;

  const int64_t row = a.hkv * D;
  const T* kbase = static_cast<const T*>(a.k_cache) + int64_t{s.slot} * a.max_len * row + kvh * D;
  const T* vbase =
      static_cast<const T*>(a.v_cache) + int64_t{s.slot} * a.max_len * row + kvh * D + li * 8;

  float m[kGroup], acc[kGroup][8], lsum[kGroup];
#pragma unroll
  for (int g = 0; g < kGroup; ++g) {
    m[g] = -INFINITY;
    lsum[g] = 0.0f;
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[g][e] = 0.0f;
  }
  __syncthreads();  // sm_q

  for (int64_t base = begin; base < end; base += kThreads) {
    const int tile = static_cast<int>(end - base < kThreads ? end - base : kThreads);
    // 1. Scores of key base + threadIdx.x.
    float sc[kGroup];
#pragma unroll
    for (int g = 0; g < kGroup; ++g) sc[g] = 0.0f;
    if (threadIdx.x < tile) {
      const uint4* krow = reinterpret_cast<const uint4*>(kbase + (base + threadIdx.x) * row);
      const int chunks = D / 8;
      for (int c0 = 0; c0 < chunks; c0 += 8) {  // 8 loads in flight, then their products
        uint4 kr[8];
#pragma unroll
        for (int u = 0; u < 8; ++u) kr[u] = c0 + u < chunks ? krow[c0 + u] : make_uint4(0, 0, 0, 0);
#pragma unroll
        for (int u = 0; u < 8; ++u) {
          if (c0 + u >= chunks) break;
          const Vec8<T>& kv = reinterpret_cast<const Vec8<T>&>(kr[u]);
          float kf[8];
#pragma unroll
          for (int e = 0; e < 8; ++e) kf[e] = to_float(kv.v[e]);
#pragma unroll
          for (int g = 0; g < kGroup; ++g) {
            if (g < G) {
              const float4* qv = reinterpret_cast<const float4*>(sm_q + g * D + 8 * (c0 + u));
              const float4 qa = qv[0], qb = qv[1];
              sc[g] = fmaf(qa.x, kf[0], sc[g]);
              sc[g] = fmaf(qa.y, kf[1], sc[g]);
              sc[g] = fmaf(qa.z, kf[2], sc[g]);
              sc[g] = fmaf(qa.w, kf[3], sc[g]);
              sc[g] = fmaf(qb.x, kf[4], sc[g]);
              sc[g] = fmaf(qb.y, kf[5], sc[g]);
              sc[g] = fmaf(qb.z, kf[6], sc[g]);
              sc[g] = fmaf(qb.w, kf[7], sc[g]);
            }
          }
        }
      }
    } else {
#pragma unroll
      for (int g = 0; g < kGroup; ++g) sc[g] = -INFINITY;
    }
    // 2. The tile's maxima, the rescale of what came before, the probabilities.
#pragma unroll
    for (int g = 0; g < kGroup; ++g) {
      const float wm = warp_max(sc[g]);
      if (lane == 0) sm_wmax[warp * kGroup + g] = wm;
    }
    __syncthreads();
#pragma unroll
    for (int g = 0; g < kGroup; ++g) {
      float tm = sm_wmax[g];
#pragma unroll
      for (int w = 1; w < kWarpsPerBlock; ++w) tm = fmaxf(tm, sm_wmax[w * kGroup + g]);
      const float m_new = fmaxf(m[g], tm);  // finite: the tile has at least one key
      const float alpha = m[g] == -INFINITY ? 0.0f : exp2f(m[g] - m_new);
      m[g] = m_new;
      lsum[g] *= alpha;
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[g][e] *= alpha;
      sm_p[threadIdx.x * kGroup + g] = threadIdx.x < tile ? exp2f(sc[g] - m_new) : 0.0f;
    }
    __syncthreads();
    // 3. Values: key j of the tile for subgroup j % subgroups, 4 rows in flight at a time.
    if (lane_on) {
      for (int j0 = sub; j0 < tile; j0 += 4 * subgroups) {
        uint4 vcur[4];
        load_values(vbase, base, j0, subgroups, tile, row, vcur);
#pragma unroll
        for (int u = 0; u < 4; ++u) {
          const int j = j0 + u * subgroups;
          if (j >= tile) break;
          const Vec8<T>& vv = reinterpret_cast<const Vec8<T>&>(vcur[u]);
          float vf[8];
#pragma unroll
          for (int e = 0; e < 8; ++e) vf[e] = to_float(vv.v[e]);
#pragma unroll
          for (int g = 0; g < kGroup; ++g) {
            const float pg = sm_p[j * kGroup + g];
            lsum[g] += pg;
#pragma unroll
            for (int e = 0; e < 8; ++e) acc[g][e] = fmaf(pg, vf[e], acc[g][e]);
          }
        }
      }
    }
    __syncthreads();  // sm_p and sm_wmax are rewritten by the next tile
  }

  // Add the subgroups' sums (same maxima everywhere in the block).
#pragma unroll
  for (int g = 0; g < kGroup; ++g) {
    if (threadIdx.x == 0) sm_wmax[g] = m[g];  // -inf for an empty split
    if (g < G) {
      if (li == 0) sm_l[sub * G + g] = lsum[g];
      if (lane_on) {
#pragma unroll
        for (int e = 0; e < 8; ++e) sm_o[(sub * G + g) * D + li * 8 + e] = acc[g][e];
      }
    }
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < G * D; idx += kThreads) {
    const int g = idx / D, d = idx % D;
    float sum = 0.0f, o = 0.0f;
    for (int u = 0; u < subgroups; ++u) {
      sum += sm_l[u * G + g];
      o += sm_o[(u * G + g) * D + d];
    }
    store_split_result<T>(a, ws, t * a.hq + h0 + g, splits, split, D, d, o, sum, sm_wmax[g]);
  }
  if (splits == 1) return;
  merge_splits_if_last<T>(a, splits, ws, t, kvh, G, D, sm_o, sm_o + G * kDecodeMaxSplits, sm_wmax);
}

}  // namespace

void launch_kv_write(DType dt, const void* k, const void* v, void* k_cache, void* v_cache,
                     const SeqDesc* seqs, const int32_t* token_seq, int64_t tokens, int64_t hkv,
                     int64_t head_dim, int64_t max_len, cudaStream_t stream) {
  if (tokens == 0) return;
  STRATA_CHECK(head_dim % 8 == 0, "kv_write: head_dim must be a multiple of 8");
  STRATA_CHECK(tokens <= 0x7fffffff, "kv_write: too many tokens");
  // A 16-byte piece of k and of v a thread: a decode row spreads over several blocks.
  const int64_t pieces = hkv * head_dim / 8;
  const dim3 grid(static_cast<unsigned>(tokens),
                  static_cast<unsigned>(std::min<int64_t>((pieces + 127) / 128, 65535)));
  STRATA_DISPATCH_ACT(
      dt, launch_chained(kv_write_kernel<T>, grid, 128, 0, stream, static_cast<const T*>(k),
                         static_cast<const T*>(v), static_cast<T*>(k_cache),
                         static_cast<T*>(v_cache), seqs, token_seq, hkv * head_dim, max_len));
}

bool decode_supported(int64_t hq, int64_t hkv, int64_t head_dim) {
  return hkv > 0 && hq % hkv == 0 && hq / hkv <= kMaxGroup && head_dim % 8 == 0 && head_dim <= 256;
}

int decode_splits(int64_t tokens, int64_t hkv, int64_t max_context, int sm_count) {
  // Enough blocks for two waves of the GPU, but every split keeps at least 32 keys: a short
  // context over few rows runs faster cut into more, shorter blocks (measured on an H100,
  // llama-3-8b over 512 keys: one row, 16 splits, 20.6 us; 16 rows, 4 splits 36.3 us against
  // 41.5 with 8 and 66.9 with 16, which more than double the merging).
  const int64_t blocks = tokens * hkv;
  int splits = 1;
  while (splits < kDecodeMaxSplits && blocks * splits < 2 * int64_t{sm_count} &&
         max_context / (splits * 2) >= 32)
    splits *= 2;
  return splits;
}

int64_t decode_workspace_floats(int64_t tokens, int64_t hq, int64_t head_dim, int splits) {
  return splits == 1 ? 0 : tokens * hq * splits * (head_dim + 2);
}

void launch_attention_decode(const AttentionArgs& a, int splits, float* workspace,
                             cudaStream_t stream) {
  if (a.tokens == 0) return;
  STRATA_CHECK(decode_supported(a.hq, a.hkv, a.head_dim),
               "attention_decode: unsupported head layout");
  STRATA_CHECK(a.hkv <= 65535 && splits <= 65535, "attention_decode: grid too large");
  STRATA_CHECK(splits == 1 || (workspace != nullptr && a.counters != nullptr),
               "attention_decode: several splits need the workspace and the arrival counters");
  if (decode_mma_supported(a.hq, a.hkv, a.head_dim)) {
    launch_attention_decode_mma(a, splits, workspace, stream);
    return;
  }
  const int G = static_cast<int>(a.hq / a.hkv), D = static_cast<int>(a.head_dim);
  const int group = G == 1 ? 1 : G == 2 ? 2 : G <= 4 ? 4 : 8;  // the kernel's kGroup
  const int subgroups = kThreads / lanes_per_key(D);
  // q, probabilities, warp maxima, then the subgroups' sums (decode_kernel's layout).
  const size_t smem =
      sizeof(float) * (static_cast<size_t>(G) * D + kThreads * group + (kThreads / 32) * group +
                       size_t{1} * subgroups * G * D + size_t{1} * subgroups * G);
  const dim3 grid(static_cast<unsigned>(a.tokens), static_cast<unsigned>(a.hkv),
                  static_cast<unsigned>(splits));
  STRATA_DISPATCH_ACT(a.dtype, {
    if (group == 1)
      decode_kernel<T, 1><<<grid, kThreads, smem, stream>>>(a, splits, workspace);
    else if (group == 2)
      decode_kernel<T, 2><<<grid, kThreads, smem, stream>>>(a, splits, workspace);
    else if (group == 4)
      decode_kernel<T, 4><<<grid, kThreads, smem, stream>>>(a, splits, workspace);
    else
      decode_kernel<T, 8><<<grid, kThreads, smem, stream>>>(a, splits, workspace);
    STRATA_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace strata::cuda
