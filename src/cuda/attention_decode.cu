// Decode attention and the KV cache write. Each block owns one query row, one kv head and one
// split of that row's context. Its 128 threads form subgroups of L = pow2ceil(head_dim / 8)
// lanes; a subgroup reads one key (and value) row as 16-byte vectors, computes the scores of every
// query head of the group (GQA: the row is read once for all of them) and keeps an online softmax
// per head in registers. Subgroups then merge through shared memory; with several splits a second
// kernel merges the splits. Scores are kept in log2 units (scale * log2(e) folded into q).
#include <cmath>

#include "cuda/attention.h"
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
  const int64_t t = blockIdx.x;
  const SeqDesc s = seqs[token_seq[t]];
  const int64_t pos = s.past_len + (t - s.offset);
  const int64_t dst = (int64_t{s.slot} * max_len + pos) * row;
  const uint4* ks = reinterpret_cast<const uint4*>(k + t * row);
  const uint4* vs = reinterpret_cast<const uint4*>(v + t * row);
  uint4* kd = reinterpret_cast<uint4*>(kc + dst);
  uint4* vd = reinterpret_cast<uint4*>(vc + dst);
  for (int64_t i = threadIdx.x; i < row / 8; i += blockDim.x) {
    kd[i] = ks[i];
    vd[i] = vs[i];
  }
}

// kGroup: a compile-time bound on the query heads per kv head (1, 2, 4 or 8), so that the
// per-head registers of small groups are not reserved for eight.
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

  const SeqDesc s = a.seqs[a.token_seq[t]];
  const int64_t p = s.past_len + (t - s.offset);
  const int64_t lo = a.window > 0 ? (p - a.window + 1 > 0 ? p - a.window + 1 : 0) : 0;
  const int64_t n = p - lo + 1;
  const int64_t chunk = (n + splits - 1) / splits;
  const int64_t begin = lo + split * chunk;
  const int64_t end = begin + chunk < p + 1 ? begin + chunk : p + 1;

  const T* q = static_cast<const T*>(a.q);
  float qf[kGroup][8];
  float acc[kGroup][8];
  float m[kGroup], l[kGroup];
  const float qscale = a.scale * kLog2e;
#pragma unroll
  for (int g = 0; g < kGroup; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.0f;
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      qf[g][e] = 0.0f;
      acc[g][e] = 0.0f;
    }
    if (g < G && lane_on) {
      load8(q + (t * a.hq + h0 + g) * D + li * 8, qf[g]);
#pragma unroll
      for (int e = 0; e < 8; ++e) qf[g][e] *= qscale;
    }
  }

  const int64_t row = a.hkv * D;
  const T* kbase = static_cast<const T*>(a.k_cache) + int64_t{s.slot} * a.max_len * row + kvh * D + li * 8;
  const T* vbase = static_cast<const T*>(a.v_cache) + int64_t{s.slot} * a.max_len * row + kvh * D + li * 8;

  // Every subgroup runs the same number of iterations (the shuffles need the whole warp); a
  // subgroup past the end of its range skips the update. Two keys per iteration are loaded before
  // either is used, to keep more loads in flight.
  for (int64_t base = begin; base < end; base += 2 * subgroups) {
    const int64_t j0 = base + sub, j1 = j0 + subgroups;
    const bool ok0 = j0 < end, ok1 = j1 < end;
    float kf[2][8], vf[2][8];
#pragma unroll
    for (int e = 0; e < 8; ++e) kf[0][e] = kf[1][e] = vf[0][e] = vf[1][e] = 0.0f;
    if (lane_on && ok0) {
      load8(kbase + j0 * row, kf[0]);
      load8(vbase + j0 * row, vf[0]);
    }
    if (lane_on && ok1) {
      load8(kbase + j1 * row, kf[1]);
      load8(vbase + j1 * row, vf[1]);
    }
#pragma unroll
    for (int u = 0; u < 2; ++u) {
      const bool ok = u == 0 ? ok0 : ok1;
#pragma unroll
      for (int g = 0; g < kGroup; ++g) {
        if (g < G) {
          float d = 0.0f;
#pragma unroll
          for (int e = 0; e < 8; ++e) d = fmaf(qf[g][e], kf[u][e], d);
          for (int o = L / 2; o > 0; o >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
          if (ok) {
            const float m_new = fmaxf(m[g], d);
            const float alpha = exp2f(m[g] - m_new);
            const float pe = exp2f(d - m_new);
            l[g] = l[g] * alpha + pe;
#pragma unroll
            for (int e = 0; e < 8; ++e) acc[g][e] = fmaf(pe, vf[u][e], acc[g][e] * alpha);
            m[g] = m_new;
          }
        }
      }
    }
  }

  // Merge the subgroups: shared [subgroups][G] maxima and sums, then [subgroups][G][D] partials.
  float* sm_m = smem;
  float* sm_l = sm_m + subgroups * G;
  float* sm_o = sm_l + subgroups * G;
#pragma unroll
  for (int g = 0; g < kGroup; ++g) {
    if (g < G) {
      if (li == 0) {
        sm_m[sub * G + g] = m[g];
        sm_l[sub * G + g] = l[g];
      }
      if (lane_on) {
#pragma unroll
        for (int e = 0; e < 8; ++e) sm_o[(sub * G + g) * D + li * 8 + e] = acc[g][e];
      }
    }
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < G * D; idx += blockDim.x) {
    const int g = idx / D, d = idx % D;
    float mx = -INFINITY;
    for (int u = 0; u < subgroups; ++u) mx = fmaxf(mx, sm_m[u * G + g]);
    float sum = 0.0f, o = 0.0f;
    if (mx != -INFINITY) {
      for (int u = 0; u < subgroups; ++u) {
        const float w = exp2f(sm_m[u * G + g] - mx);
        sum += sm_l[u * G + g] * w;
        o += sm_o[(u * G + g) * D + d] * w;
      }
    }
    const int64_t qh = t * a.hq + h0 + g;
    if (splits == 1) {
      static_cast<T*>(a.out)[qh * D + d] = from_float<T>(o / sum);
    } else {
      float* part = ws + (qh * splits + split) * (D + 2);
      part[2 + d] = o;
      if (d == 0) {
        part[0] = mx;
        part[1] = sum;
      }
    }
  }
}

template <typename T>
__global__ void combine_kernel(const float* ws, int splits, int D, T* out) {
  const int64_t qh = blockIdx.x;
  const float* parts = ws + qh * splits * (D + 2);
  float mx = -INFINITY;
  for (int s = 0; s < splits; ++s) mx = fmaxf(mx, parts[s * (D + 2)]);
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float sum = 0.0f, o = 0.0f;
    for (int s = 0; s < splits; ++s) {
      const float* part = parts + s * (D + 2);
      if (part[0] == -INFINITY) continue;
      const float w = exp2f(part[0] - mx);
      sum += part[1] * w;
      o += part[2 + d] * w;
    }
    out[qh * D + d] = from_float<T>(o / sum);
  }
}

}  // namespace

void launch_kv_write(DType dt, const void* k, const void* v, void* k_cache, void* v_cache,
                     const SeqDesc* seqs, const int32_t* token_seq, int64_t tokens, int64_t hkv,
                     int64_t head_dim, int64_t max_len, cudaStream_t stream) {
  if (tokens == 0) return;
  STRATA_CHECK(head_dim % 8 == 0, "kv_write: head_dim must be a multiple of 8");
  STRATA_DISPATCH_ACT(dt, kv_write_kernel<<<static_cast<unsigned>(tokens), 128, 0, stream>>>(
                              static_cast<const T*>(k), static_cast<const T*>(v),
                              static_cast<T*>(k_cache), static_cast<T*>(v_cache), seqs, token_seq,
                              hkv * head_dim, max_len));
  STRATA_CUDA_CHECK_LAUNCH();
}

bool decode_supported(int64_t hq, int64_t hkv, int64_t head_dim) {
  return hkv > 0 && hq % hkv == 0 && hq / hkv <= kMaxGroup && head_dim % 8 == 0 &&
         head_dim <= 256;
}

int decode_splits(int64_t tokens, int64_t hkv, int64_t max_context, int sm_count) {
  // Enough blocks for two waves of the GPU, but every split keeps at least 32 keys: a block's
  // keys go through a chain of dependent steps (scores, shuffles, the online softmax), so a short
  // context over few rows runs faster cut into more, shorter chains (measured on an H100: one
  // row of llama-3-8b over 512 keys, 16 splits against 8, 17 against 23 us; 16 rows, 4 splits
  // against 8, 40 against 49 us).
  const int64_t blocks = tokens * hkv;
  int splits = 1;
  while (splits < 32 && blocks * splits < 2 * int64_t{sm_count} &&
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
  const int G = static_cast<int>(a.hq / a.hkv), D = static_cast<int>(a.head_dim);
  const int subgroups = kThreads / lanes_per_key(D);
  const size_t smem = sizeof(float) * static_cast<size_t>(subgroups) * G * (D + 2);
  const dim3 grid(static_cast<unsigned>(a.tokens), static_cast<unsigned>(a.hkv),
                  static_cast<unsigned>(splits));
  STRATA_DISPATCH_ACT(a.dtype, {
    if (G == 1)
      decode_kernel<T, 1><<<grid, kThreads, smem, stream>>>(a, splits, workspace);
    else if (G == 2)
      decode_kernel<T, 2><<<grid, kThreads, smem, stream>>>(a, splits, workspace);
    else if (G <= 4)
      decode_kernel<T, 4><<<grid, kThreads, smem, stream>>>(a, splits, workspace);
    else
      decode_kernel<T, 8><<<grid, kThreads, smem, stream>>>(a, splits, workspace);
    STRATA_CUDA_CHECK_LAUNCH();
    if (splits > 1) {
      combine_kernel<T><<<static_cast<unsigned>(a.tokens * a.hq), D < 128 ? 64 : 128, 0, stream>>>(
          workspace, splits, D, static_cast<T*>(a.out));
      STRATA_CUDA_CHECK_LAUNCH();
    }
  });
}

}  // namespace strata::cuda
