// The int4-g64 KV cache kernels (see int4_kv_kernels.h): the quantising append and the decode
// attention that dequantises codes in registers. The decode kernel follows attention_decode.cu's
// layout: each block owns one query row, one kv head and one split of that row's context; its 128
// threads form subgroups of L = pow2ceil(head_dim / 8) lanes, a subgroup reads one key (and value)
// row, each lane one 32-bit word of 8 codes plus its group's fp16 scale and min, scores every query
// head of the group and keeps an online softmax per head in registers. Scores are in log2 units
// (scale * log2(e) folded into q).
#include <cuda_fp16.h>

#include <cmath>

#include "cuda/cuda_check.h"
#include "cuda/element.cuh"
#include "cuda/int4_group.cuh"
#include "cuda/int4_kv_kernels.h"

namespace strata::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kMaxGroup = 8;  // query heads per kv head handled in registers, at most
constexpr int kGroupSize = 64;
constexpr float kLog2e = 1.4426950408889634f;

__host__ __device__ inline int lanes_per_key(int64_t head_dim) {
  int l = 1;
  while (l * 8 < head_dim) l *= 2;
  return l;
}

// The 8 values of one code word: code * scale + min, one rounded product and one rounded sum
// (compute::dequantise_int4's arithmetic; no fused multiply-add).
__device__ __forceinline__ void dequant8(uint32_t word, float scale, float mn, float out[8]) {
#pragma unroll
  for (int e = 0; e < 8; ++e)
    out[e] = __fadd_rn(__fmul_rn(static_cast<float>((word >> (4 * e)) & 0xfu), scale), mn);
}

// One thread per (plane, new row, group of 64): compute::quantise_int4 step for step (the first
// of equal minima/maxima kept, as std::min/std::max; IEEE division; round to nearest even).
template <typename T>
__global__ void append_kernel(const T* __restrict__ k, const T* __restrict__ v,
                              uint8_t* __restrict__ k_blob, uint8_t* __restrict__ v_blob,
                              const SeqDesc* seqs, const int32_t* token_seq, int64_t tokens,
                              int64_t e, int64_t max_len, int64_t cache_rows) {
  const int64_t groups_per_row = e / kGroupSize, per_plane = tokens * groups_per_row;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < 2 * per_plane;
       i += int64_t{gridDim.x} * blockDim.x) {
    const bool is_v = i >= per_plane;
    const int64_t j = is_v ? i - per_plane : i;
    const int64_t t = j / groups_per_row, g = j % groups_per_row;
    const SeqDesc s = seqs[token_seq[t]];
    const int64_t row = int64_t{s.slot} * max_len + s.past_len + (t - s.offset);
    const T* src = (is_v ? v : k) + t * e + g * kGroupSize;
    uint8_t* blob = is_v ? v_blob : k_blob;
    uint16_t* scales = reinterpret_cast<uint16_t*>(blob + cache_rows * e / 2);
    uint16_t* mins = scales + cache_rows * groups_per_row;
    quantise_int4_group(src, blob + row * (e / 2) + g * (kGroupSize / 2), &scales[row * groups_per_row + g],
                        &mins[row * groups_per_row + g]);
  }
}

// Pointers to one blob's parts.
struct Plane {
  const uint32_t* words;  // 8 codes each
  const uint16_t* scales;
  const uint16_t* mins;
};

__device__ __forceinline__ Plane plane_of(const void* blob, int64_t cache_rows, int64_t e) {
  const auto* base = static_cast<const uint8_t*>(blob);
  Plane p;
  p.words = reinterpret_cast<const uint32_t*>(base);
  p.scales = reinterpret_cast<const uint16_t*>(base + cache_rows * e / 2);
  p.mins = p.scales + cache_rows * (e / kGroupSize);
  return p;
}

// kGroup: a compile-time bound on the query heads per kv head (1, 2, 4 or 8).
template <typename T, int kGroup>
__global__ void __launch_bounds__(kThreads)
    decode_kernel(Int4KvDecodeArgs a, int splits, float* ws) {
  extern __shared__ float smem[];
  const int D = static_cast<int>(a.head_dim);
  const int L = lanes_per_key(D);
  const int subgroups = kThreads / L;
  const int sub = threadIdx.x / L, li = threadIdx.x % L;
  const bool lane_on = li * 8 < D;
  const int G = static_cast<int>(a.hq / a.hkv);
  const int64_t t = a.rows[blockIdx.x];
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

  const int64_t E = a.hkv * D, words_per_row = E / 8, groups_per_row = E / kGroupSize;
  const Plane kp = plane_of(a.k_blob, a.cache_rows, E);
  const Plane vp = plane_of(a.v_blob, a.cache_rows, E);
  const int64_t row0 = int64_t{s.slot} * a.max_len;
  const int64_t col = int64_t{kvh} * D + li * 8;  // this lane's first element in a row
  const int64_t word_col = col / 8, group_col = col / kGroupSize;

  // Every subgroup runs the same number of iterations (the shuffles need the whole warp); a
  // subgroup past the end of its range skips the update. Two keys per iteration are loaded before
  // either is used, to keep more loads in flight.
  for (int64_t base = begin; base < end; base += 2 * subgroups) {
    const int64_t j0 = base + sub, j1 = j0 + subgroups;
    const bool ok0 = j0 < end, ok1 = j1 < end;
    float kf[2][8], vf[2][8];
    uint32_t kw[2] = {0, 0}, vw[2] = {0, 0};
    uint16_t ks[2] = {0, 0}, km[2] = {0, 0}, vs[2] = {0, 0}, vm[2] = {0, 0};
#pragma unroll
    for (int u = 0; u < 2; ++u) {
      const bool ok = u == 0 ? ok0 : ok1;
      if (lane_on && ok) {
        const int64_t r = row0 + (u == 0 ? j0 : j1);
        kw[u] = kp.words[r * words_per_row + word_col];
        vw[u] = vp.words[r * words_per_row + word_col];
        ks[u] = kp.scales[r * groups_per_row + group_col];
        km[u] = kp.mins[r * groups_per_row + group_col];
        vs[u] = vp.scales[r * groups_per_row + group_col];
        vm[u] = vp.mins[r * groups_per_row + group_col];
      }
    }
#pragma unroll
    for (int u = 0; u < 2; ++u) {
      dequant8(kw[u], half_bits_to_float(ks[u]), half_bits_to_float(km[u]), kf[u]);
      dequant8(vw[u], half_bits_to_float(vs[u]), half_bits_to_float(vm[u]), vf[u]);
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

// One block per (listed row, query head): merges the splits' partial softmaxes.
template <typename T>
__global__ void combine_kernel(const float* ws, const int32_t* rows, int64_t hq, int splits, int D,
                               T* out) {
  const int64_t qh = int64_t{rows[blockIdx.x / hq]} * hq + blockIdx.x % hq;
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

void launch_int4_kv_append(DType dt, const void* k, const void* v, void* k_blob, void* v_blob,
                           const SeqDesc* seqs, const int32_t* token_seq, int64_t tokens,
                           int64_t row_elems, int64_t max_len, int64_t cache_rows,
                           cudaStream_t stream) {
  if (tokens == 0) return;
  STRATA_CHECK(row_elems > 0 && row_elems % kGroupSize == 0 &&
                   (reinterpret_cast<uintptr_t>(k_blob) & 15) == 0 &&
                   (reinterpret_cast<uintptr_t>(v_blob) & 15) == 0,
               "int4 KV append: rows must be a multiple of 64 elements and the blobs 16-byte aligned");
  const unsigned grid = int4_grid_for(2 * tokens * (row_elems / kGroupSize), 128);
  STRATA_DISPATCH_ACT(dt, append_kernel<T><<<grid, 128, 0, stream>>>(
                              static_cast<const T*>(k), static_cast<const T*>(v),
                              static_cast<uint8_t*>(k_blob), static_cast<uint8_t*>(v_blob), seqs,
                              token_seq, tokens, row_elems, max_len, cache_rows));
  STRATA_CUDA_CHECK_LAUNCH();
}

bool int4_kv_decode_supported(int64_t hq, int64_t hkv, int64_t head_dim) {
  return hkv > 0 && hq % hkv == 0 && hq / hkv <= kMaxGroup && head_dim > 0 &&
         head_dim % kGroupSize == 0 && head_dim <= 256;
}

void launch_int4_kv_decode(const Int4KvDecodeArgs& a, int splits, float* workspace,
                           cudaStream_t stream) {
  if (a.num_rows == 0) return;
  STRATA_CHECK(int4_kv_decode_supported(a.hq, a.hkv, a.head_dim),
               "int4 KV decode: unsupported head layout");
  STRATA_CHECK(a.hkv <= 65535 && splits <= 65535 && a.num_rows <= 0x7fffffff,
               "int4 KV decode: grid too large");
  STRATA_CHECK(splits == 1 || workspace != nullptr, "int4 KV decode: split without a workspace");
  const int G = static_cast<int>(a.hq / a.hkv), D = static_cast<int>(a.head_dim);
  const int subgroups = kThreads / lanes_per_key(D);
  const size_t smem = sizeof(float) * static_cast<size_t>(subgroups) * G * (D + 2);
  const dim3 grid(static_cast<unsigned>(a.num_rows), static_cast<unsigned>(a.hkv),
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
      combine_kernel<T><<<static_cast<unsigned>(a.num_rows * a.hq), D < 128 ? 64 : 128, 0,
                          stream>>>(workspace, a.rows, a.hq, splits, D, static_cast<T*>(a.out));
      STRATA_CUDA_CHECK_LAUNCH();
    }
  });
}

}  // namespace strata::cuda
