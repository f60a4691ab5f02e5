// Pieces of the decode attention kernels (attention_decode.cu, attention_decode_mma.cu): the keys
// a block's split of a row attends to, and the end of a split block: each split of a (row, kv
// head) leaves its maximum (log2 units), probability sum and unnormalised output per query head
// in the workspace, and the split that arrives last merges them into the output. Internal to
// src/cuda/ .cu files.
#pragma once

#include <cmath>

#include "cuda/attention.h"
#include "cuda/element.cuh"

namespace strata::cuda {

// Row t's sequence and the cache positions [begin, end) that split `split` of `splits` covers: an
// equal share of [lo, p], p being the row's position and lo = max(0, p - window + 1) with a
// window (else 0).
struct DecodeSpan {
  SeqDesc seq;
  int64_t begin, end;
};
__device__ __forceinline__ DecodeSpan decode_span(const AttentionArgs& a, int64_t t, int splits,
                                                  int split) {
  DecodeSpan d;
  d.seq = a.seqs[a.token_seq[t]];
  const int64_t p = d.seq.past_len + (t - d.seq.offset);
  const int64_t lo = a.window > 0 ? (p - a.window + 1 > 0 ? p - a.window + 1 : 0) : 0;
  const int64_t chunk = (p - lo + 1 + splits - 1) / splits;
  d.begin = lo + split * chunk;
  d.end = d.begin + chunk < p + 1 ? d.begin + chunk : p + 1;
  return d;
}

// Where split `split` of query head qh leaves (max, sum, output[D]) in the workspace.
__device__ __forceinline__ float* split_partial(float* ws, int64_t qh, int splits, int split,
                                                int D) {
  return ws + (qh * splits + split) * (D + 2);
}

// Element d of query head qh once a block has its (max m, sum, unnormalised output o): the output
// itself without splits, else the split's partial.
template <typename T>
__device__ __forceinline__ void store_split_result(const AttentionArgs& a, float* ws, int64_t qh,
                                                   int splits, int split, int D, int d, float o,
                                                   float sum, float m) {
  if (splits == 1) {
    static_cast<T*>(a.out)[qh * D + d] = from_float<T>(o / sum);
    return;
  }
  float* part = split_partial(ws, qh, splits, split, D);
  part[2 + d] = o;
  if (d == 0) {
    part[0] = m;  // -inf for an empty split
    part[1] = sum;
  }
}

// Called by every thread of a split's block once its partials are stored: the split that
// finishes last for row t and kv head kvh (an arrival counter, which it resets) merges all
// splits of the G heads h0 .. h0 + G - 1 into a.out. Shared scratch: sm_pm and sm_pl hold
// G * kDecodeMaxSplits floats each, sm_inv G.
template <typename T>
__device__ void merge_splits_if_last(const AttentionArgs& a, int splits, float* ws, int64_t t,
                                     int kvh, int G, int D, float* sm_pm, float* sm_pl,
                                     float* sm_inv) {
  __shared__ bool last;
  const int h0 = kvh * G;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    unsigned* counter = a.counters + t * a.hkv + kvh;
    last = atomicAdd(counter, 1u) == static_cast<unsigned>(splits - 1);
    if (last) *counter = 0;
  }
  __syncthreads();
  if (!last) return;
  __threadfence();
  // Every split's maximum and sum per head (one load each, all in flight), then each head's
  // weights per split and 1 / total in shared memory, then the outputs.
  for (int i = threadIdx.x; i < G * splits; i += blockDim.x) {
    const int g = i / splits, sp = i % splits;
    const float* part = split_partial(ws, t * a.hq + h0 + g, splits, sp, D);
    sm_pm[g * kDecodeMaxSplits + sp] = __ldcg(part);
    sm_pl[g * kDecodeMaxSplits + sp] = __ldcg(part + 1);
  }
  __syncthreads();
  if (threadIdx.x < G) {
    float* w = sm_pm + threadIdx.x * kDecodeMaxSplits;
    const float* l = sm_pl + threadIdx.x * kDecodeMaxSplits;
    float mx = -INFINITY, sum = 0.0f;
    for (int sp = 0; sp < splits; ++sp) mx = fmaxf(mx, w[sp]);
    for (int sp = 0; sp < splits; ++sp) {
      w[sp] = w[sp] == -INFINITY ? 0.0f : exp2f(w[sp] - mx);
      sum += l[sp] * w[sp];
    }
    sm_inv[threadIdx.x] = 1.0f / sum;
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < G * D; idx += blockDim.x) {
    const int g = idx / D, d = idx % D;
    const int64_t qh = t * a.hq + h0 + g;
    const float* parts = split_partial(ws, qh, splits, 0, D) + 2 + d;
    float ov[kDecodeMaxSplits];
#pragma unroll
    for (int sp = 0; sp < kDecodeMaxSplits; ++sp)
      ov[sp] = sp < splits ? __ldcg(parts + sp * (D + 2)) : 0.0f;
    float o = 0.0f;
#pragma unroll
    for (int sp = 0; sp < kDecodeMaxSplits; ++sp)
      if (sp < splits) o = fmaf(sm_pm[g * kDecodeMaxSplits + sp], ov[sp], o);
    static_cast<T*>(a.out)[qh * D + d] = from_float<T>(o * sm_inv[g]);
  }
}

}  // namespace strata::cuda
