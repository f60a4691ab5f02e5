// Decode attention on the tensor cores, for head_dim 64 or 128 and up to 8 query heads per kv
// head. As the CUDA-core kernel (attention_decode.cu), a block owns one query row, one kv head and
// one split of the row's context; here its W warps take steps of 16 keys in turn, and a step is
//   1. scores S [heads, 16 keys] = Q · K^T: m16n8k16 products with the group's query heads as the
//      rows of A (heads past the group are zero rows) and two tiles of 8 keys as B. Lane (g, t)
//      loads 16-byte chunks t, t + 4, ... of keys g and 8 + g: a dot product may take the head
//      dimension in any order as long as both operands take the same one, so a chunk's 8
//      elements stand for the fragment positions (2t, 2t + 1, 2t + 8, 2t + 9) of two products,
//      and q's chunks are loaded once in the same order;
//   2. an online softmax in log2 units: the accumulators of lane (g, t) are the scores of head
//      g and keys 2t, 2t + 1, 8 + 2t, 9 + 2t, so the row maxima take two shuffles, and the
//      probabilities, rounded to the cache's dtype, are already the B fragment of step 3;
//   3. O^T [dims, heads] += V^T [dims, 16 keys] · P^T: lane (g, t) loads chunks g, g + 8 of the
//      four value rows its probabilities belong to, and byte permutes pair two keys' elements of
//      one dimension into the A fragment, dimension 8 c + e of chunk c standing for the rows
//      g (e even) and g + 8 (e odd) of tile e / 2 + 4 (c / 8).
// A step's key and value loads are all issued before its products; where the grid is small, more
// warps a block stand in for a deeper pipeline (loading a step ahead measured no faster). The
// warps' (max, sum, output) are merged in shared memory, then across splits as the CUDA-core
// kernel, or (attention_cluster_merge(), cuda/device.h) with the splits of a (row, kv head) as
// one thread-block cluster: each block leaves its (max, sum, output) in its shared memory, and
// after a cluster barrier every block merges a share of the outputs from all of them
// (distributed shared memory), with no global workspace, counter or second pass.
#include <cooperative_groups.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <type_traits>

#include "cuda/attention.h"
#include "cuda/attention_decode.cuh"
#include "cuda/chain.cuh"
#include "cuda/cuda_check.h"
#include "cuda/element.cuh"
#include "cuda/mma.cuh"

namespace strata::cuda {
namespace {

constexpr int kStepKeys = 16;
constexpr int kHeads = 8;  // query heads per kv head, at most (the B columns of step 3)
constexpr float kLog2e = 1.4426950408889634f;
constexpr int kDecodeClusterMax = 8;  // splits a cluster (the portable cluster size)

// One lane's loads of a step of keys [base, base + 16).
template <int D>
struct KvStep {
  uint4 k[2][D / 32];  // keys base + g and base + 8 + g: chunks t + 4 u
  uint4 v[4][D / 64];  // keys base + 2t, + 1, base + 8 + 2t, + 1: chunks g + 8 h
};

template <typename T, int D>
__device__ __forceinline__ void load_step(const T* kbase, const T* vbase, int64_t row, int64_t base,
                                          int64_t end, int g, int t, KvStep<D>& s) {
#pragma unroll
  for (int nt = 0; nt < 2; ++nt) {
    const int64_t key = base + 8 * nt + g;
    const uint4* kr = reinterpret_cast<const uint4*>(kbase + key * row);
#pragma unroll
    for (int u = 0; u < D / 32; ++u)
      s.k[nt][u] = key < end ? kr[t + 4 * u] : make_uint4(0, 0, 0, 0);
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t key = base + 8 * (i / 2) + 2 * t + (i % 2);
    const uint4* vr = reinterpret_cast<const uint4*>(vbase + key * row);
#pragma unroll
    for (int h = 0; h < D / 64; ++h) s.v[i][h] = key < end ? vr[g + 8 * h] : make_uint4(0, 0, 0, 0);
  }
}

template <typename T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  if constexpr (std::is_same_v<T, __half>) {
    const __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&h);
  } else {
    const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&h);
  }
}

// The end of a cluster of `splits` blocks (one per split of row t and the kv head of query heads
// h0 .. h0 + G - 1), each of which has left its (max m, sum l, output o [G][D]) per query head in
// its shared memory: block `rank` merges outputs rank * threads + i, then the cluster waits until
// every block has read what it needs from the others.
template <typename T>
__device__ void merge_splits_in_cluster(const AttentionArgs& a, int splits, int64_t t, int h0,
                                        int G, int D, float* own_m, float* own_l, float* own_o) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  namespace cg = cooperative_groups;
  cg::cluster_group cluster = cg::this_cluster();
  cluster.sync();  // every block's partials are in its shared memory
  const int rank = static_cast<int>(cluster.block_rank());
  const int threads = static_cast<int>(blockDim.x);
  for (int idx = rank * threads + static_cast<int>(threadIdx.x); idx < G * D;
       idx += splits * threads) {
    const int hg = idx / D;
    float pm[kDecodeClusterMax], pl[kDecodeClusterMax], po[kDecodeClusterMax];
#pragma unroll
    for (int p = 0; p < kDecodeClusterMax; ++p) {
      if (p < splits) {
        pm[p] = *cluster.map_shared_rank(own_m + hg, p);
        pl[p] = *cluster.map_shared_rank(own_l + hg, p);
        po[p] = *cluster.map_shared_rank(own_o + idx, p);
      } else {
        pm[p] = -INFINITY;
        pl[p] = po[p] = 0.0f;
      }
    }
    float mx = -INFINITY;
#pragma unroll
    for (int p = 0; p < kDecodeClusterMax; ++p) mx = fmaxf(mx, pm[p]);
    float sum = 0.0f, o = 0.0f;
#pragma unroll
    for (int p = 0; p < kDecodeClusterMax; ++p) {
      const float f = pm[p] == -INFINITY ? 0.0f : exp2f(pm[p] - mx);
      sum = fmaf(f, pl[p], sum);
      o = fmaf(f, po[p], o);
    }
    static_cast<T*>(a.out)[(t * a.hq + h0 + hg) * D + idx % D] = from_float<T>(o / sum);
  }
  cluster.sync();  // no block leaves while another reads its shared memory
#endif
}

// W warps a block: 8 where the grid is too small to fill the GPU with blocks of 4. kCluster: the
// splits of a (row, kv head) are one cluster (merge_splits_in_cluster).
template <typename T, int D, int W, bool kCluster>
__global__ void __launch_bounds__(W * 32)
    decode_mma_kernel(AttentionArgs a, int splits, float* ws) {
  constexpr int kTiles = D / 16;  // m16 tiles of the output's dimensions
  __shared__ float sm_o[W][kHeads][D];
  __shared__ float sm_m[W][kHeads], sm_l[W][kHeads];
  // kCluster: this split's (max, sum) per head and outputs, read by the cluster's blocks.
  __shared__ float cl_m[kCluster ? kHeads : 1], cl_l[kCluster ? kHeads : 1];
  __shared__ float cl_o[kCluster ? kHeads * D : 1];
  const int G = static_cast<int>(a.hq / a.hkv);
  const int64_t t_row = blockIdx.x;
  const int kvh = blockIdx.y, split = blockIdx.z;
  const int h0 = kvh * G;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, g = lane / 4, t = lane % 4;
  wait_for_prior_kernels();
  release_next_kernel();

  const DecodeSpan span = decode_span(a, t_row, splits, split);
  const SeqDesc s = span.seq;
  const int64_t begin = span.begin, end = span.end;

  // q of head g in the order of the key chunks: chunk t + 4 u (zero rows past the group).
  uint4 qv[D / 32];
  const T* q = static_cast<const T*>(a.q) + (t_row * a.hq + h0 + g) * D;
#pragma unroll
  for (int u = 0; u < D / 32; ++u)
    qv[u] = g < G ? reinterpret_cast<const uint4*>(q)[t + 4 * u] : make_uint4(0, 0, 0, 0);

  const int64_t row = a.hkv * D;
  const T* kbase = static_cast<const T*>(a.k_cache) + int64_t{s.slot} * a.max_len * row + kvh * D;
  const T* vbase = static_cast<const T*>(a.v_cache) + int64_t{s.slot} * a.max_len * row + kvh * D;
  const float qscale = a.scale * kLog2e;

  float acc[kTiles][4];
#pragma unroll
  for (int i = 0; i < kTiles; ++i) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.0f;
  float m = -INFINITY, l = 0.0f;  // head g: running maximum, this lane's share of the sum

  constexpr int kBlockKeys = W * kStepKeys;
  for (int64_t base = begin + warp * kStepKeys; base < end; base += kBlockKeys) {
    KvStep<D> cur;
    load_step<T, D>(kbase, vbase, row, base, end, g, t, cur);
    // 1. Scores.
    float sc[2][4];
#pragma unroll
    for (int nt = 0; nt < 2; ++nt) {
      sc[nt][0] = sc[nt][1] = sc[nt][2] = sc[nt][3] = 0.0f;
#pragma unroll
      for (int u = 0; u < D / 32; ++u) {
        const uint4& kv = cur.k[nt][u];
        mma_16816<T>(sc[nt], qv[u].x, 0u, qv[u].y, 0u, kv.x, kv.y);
        mma_16816<T>(sc[nt], qv[u].z, 0u, qv[u].w, 0u, kv.z, kv.w);
      }
    }
    // 2. Online softmax for head g over keys base + 8 nt + 2 t + e.
    float x[2][2];
    float mx = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const bool in = base + 8 * nt + 2 * t + e < end;
        x[nt][e] = in ? sc[nt][e] * qscale : -INFINITY;
        mx = fmaxf(mx, x[nt][e]);
      }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float m_new = fmaxf(m, mx);  // finite: the step has at least one key
    const float alpha = m == -INFINITY ? 0.0f : exp2f(m - m_new);
    m = m_new;
    float pr[2][2];
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int e = 0; e < 2; ++e) pr[nt][e] = exp2f(x[nt][e] - m_new);
    l = l * alpha + (pr[0][0] + pr[0][1]) + (pr[1][0] + pr[1][1]);
    // The accumulators of lane (g, t) belong to heads 2t and 2t + 1, whose alphas lanes 8t and
    // 8t + 4 hold.
    const float a0 = __shfl_sync(0xffffffffu, alpha, 8 * t);
    const float a1 = __shfl_sync(0xffffffffu, alpha, 8 * t + 4);
    if (a0 != 1.0f || a1 != 1.0f) {
#pragma unroll
      for (int i = 0; i < kTiles; ++i) {
        acc[i][0] *= a0;
        acc[i][2] *= a0;
        acc[i][1] *= a1;
        acc[i][3] *= a1;
      }
    }
    // 3. Values.
    const uint32_t b0 = pack2<T>(pr[0][0], pr[0][1]), b1 = pack2<T>(pr[1][0], pr[1][1]);
#pragma unroll
    for (int i = 0; i < kTiles; ++i) {
      const int h = i / 4, w = i % 4;
      const uint32_t v0 = word_of(cur.v[0][h], w), v1 = word_of(cur.v[1][h], w);
      const uint32_t v2 = word_of(cur.v[2][h], w), v3 = word_of(cur.v[3][h], w);
      mma_16816<T>(acc[i], __byte_perm(v0, v1, 0x5410), __byte_perm(v0, v1, 0x7632),
                   __byte_perm(v2, v3, 0x5410), __byte_perm(v2, v3, 0x7632), b0, b1);
    }
  }

  // The warps' results: head g's maximum and sum, and the outputs of heads 2t, 2t + 1 at the
  // dimensions of lane (g, t): tile i holds 8 (g + 8 (i / 4)) + 2 (i % 4) (+ 1 in accumulators
  // 2 and 3).
  l += __shfl_xor_sync(0xffffffffu, l, 1);
  l += __shfl_xor_sync(0xffffffffu, l, 2);
  if (t == 0) {
    sm_m[warp][g] = m;
    sm_l[warp][g] = l;
  }
#pragma unroll
  for (int i = 0; i < kTiles; ++i) {
    const int d = 8 * (g + 8 * (i / 4)) + 2 * (i % 4);
    sm_o[warp][2 * t][d] = acc[i][0];
    sm_o[warp][2 * t + 1][d] = acc[i][1];
    sm_o[warp][2 * t][d + 1] = acc[i][2];
    sm_o[warp][2 * t + 1][d + 1] = acc[i][3];
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < G * D; idx += W * 32) {
    const int hg = idx / D, d = idx % D;
    float mb = -INFINITY;
#pragma unroll
    for (int w = 0; w < W; ++w) mb = fmaxf(mb, sm_m[w][hg]);
    float sum = 0.0f, o = 0.0f;
#pragma unroll
    for (int w = 0; w < W; ++w) {
      const float f = sm_m[w][hg] == -INFINITY ? 0.0f : exp2f(sm_m[w][hg] - mb);
      sum = fmaf(f, sm_l[w][hg], sum);
      o = fmaf(f, sm_o[w][hg][d], o);
    }
    if constexpr (kCluster) {
      cl_o[idx] = o;
      if (d == 0) {
        cl_m[hg] = mb;  // -inf for an empty split
        cl_l[hg] = sum;
      }
    } else {
      store_split_result<T>(a, ws, t_row * a.hq + h0 + hg, splits, split, D, d, o, sum, mb);
    }
  }
  if constexpr (kCluster) {
    merge_splits_in_cluster<T>(a, splits, t_row, h0, G, D, cl_m, cl_l, cl_o);
    return;
  }
  if (splits == 1) return;
  // sm_o is free again once every thread is past the loop above (the merge synchronises first).
  float* scratch = &sm_o[0][0][0];
  merge_splits_if_last<T>(a, splits, ws, t_row, kvh, G, D, scratch, scratch + G * kDecodeMaxSplits,
                          scratch + 2 * G * kDecodeMaxSplits);
}

}  // namespace

bool decode_mma_supported(int64_t hq, int64_t hkv, int64_t head_dim) {
  return hkv > 0 && hq % hkv == 0 && hq / hkv <= kHeads && (head_dim == 64 || head_dim == 128) &&
         mma_sync_available();
}

void launch_attention_decode_mma(const AttentionArgs& a, int splits, float* workspace,
                                 cudaStream_t stream) {
  STRATA_CHECK(decode_mma_supported(a.hq, a.hkv, a.head_dim),
               "attention_decode_mma: unsupported head layout or device");
  const dim3 grid(static_cast<unsigned>(a.tokens), static_cast<unsigned>(a.hkv),
                  static_cast<unsigned>(splits));
  // Blocks of 4 warps, or of 8 where that leaves the GPU short of warps (llama-3-8b over 512 keys
  // at batch 16: 128 blocks of 8 warps, ~2x faster than of 4).
  const int64_t blocks = a.tokens * a.hkv * splits;
  const bool wide = blocks < 2 * int64_t{a.sm_count};
  const bool cluster =
      splits > 1 && splits <= kDecodeClusterMax && attention_cluster_merge() && hopper_or_later();
  const dim3 cluster_dim(1, 1, cluster ? static_cast<unsigned>(splits) : 1);
  STRATA_DISPATCH_ACT(a.dtype, {
    auto go = [&](auto kernel, int warps) {
      launch_chained_in_clusters(kernel, grid, warps * 32, cluster_dim, 0, stream, a, splits,
                                 workspace);
    };
    if (a.head_dim == 64) {
      if (cluster)
        wide ? go(decode_mma_kernel<T, 64, 8, true>, 8) : go(decode_mma_kernel<T, 64, 4, true>, 4);
      else
        wide ? go(decode_mma_kernel<T, 64, 8, false>, 8)
             : go(decode_mma_kernel<T, 64, 4, false>, 4);
    } else {
      if (cluster)
        wide ? go(decode_mma_kernel<T, 128, 8, true>, 8)
             : go(decode_mma_kernel<T, 128, 4, true>, 4);
      else
        wide ? go(decode_mma_kernel<T, 128, 8, false>, 8)
             : go(decode_mma_kernel<T, 128, 4, false>, 4);
    }
  });
}

int decode_mma_splits(int64_t tokens, int64_t hkv, int64_t max_context, int sms) {
  // Splits cost a merge (partials through L2 and the last block's pass over them): on an H100,
  // llama-3-8b over 512 keys at batch 16 takes 19.4 us a layer unsplit against 26.0 in 4
  // splits. So split only while the grid is under a third of the SMs and every split keeps
  // 64 keys (batch 1: 8 splits, 10.5 us, against 10.9 in 4 or 16).
  const int64_t blocks = tokens * hkv;
  int splits = 1;
  while (splits < kDecodeMaxSplits && blocks * splits * 3 < sms && max_context / (splits * 2) >= 64)
    splits *= 2;
  return splits;
}

}  // namespace strata::cuda
