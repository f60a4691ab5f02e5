// int4-g64 kernels: the skinny w4a16 GEMV, the dequantiser that feeds cuBLAS for larger batches,
// and the reference quantiser on the GPU.
//
// Codes to numbers: a 32-bit word holds 8 codes (element e in bits [4e, 4e + 4)). Masking
// (word >> 4j) & 0x000f000f and or-ing in 0x6400 per half gives the fp16 pair (1024 + q_j,
// 1024 + q_{j+4}), exact; subtracting 1024 leaves the codes as fp16, still exact. A group's
// contribution to a dot product is scale * sum(x * q) + min * sum(x), with both sums in fp32: the
// same number as sum(x * (q * scale + min)) up to fp32 rounding, at one multiply-add per element.
#include <cuda_fp16.h>

#include "cuda/cuda_check.h"
#include "cuda/element.cuh"
#include "cuda/gemv.h"
#include "cuda/int4_gemm.h"

namespace strata::cuda {

__host__ __device__ Int4Device int4_device_view(const void* blob, int64_t n, int64_t k) {
  Int4Device v;
  const auto* base = static_cast<const uint8_t*>(blob);
  const int64_t code_bytes = n * k / 2, groups = n * (k / 64);
  v.codes = base;
  v.scales = reinterpret_cast<const uint16_t*>(base + code_bytes);
  v.mins = reinterpret_cast<const uint16_t*>(base + code_bytes + groups * 2);
  v.n = n;
  v.k = k;
  return v;
}

namespace {

constexpr int kWarps = 8;
constexpr int kMaxM = static_cast<int>(kGemvMaxRows);
constexpr int kGroup = 64;

// The 8 codes of `w` as floats, q[e] for element e.
__device__ __forceinline__ void unpack8(uint32_t w, float q[8]) {
  const __half2 k1024 = __float2half2_rn(1024.0f);
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const uint32_t bits = ((w >> (4 * j)) & 0x000f000fu) | 0x64006400u;
    __half2 h;
    static_assert(sizeof(h) == sizeof(bits));
    memcpy(&h, &bits, sizeof(bits));
    const float2 f = __half22float2(__hsub2(h, k1024));
    q[j] = f.x;
    q[j + 4] = f.y;
  }
}

__device__ __forceinline__ float half_bits_to_float(uint16_t b) {
  return __half2float(__ushort_as_half(b));
}

// One warp owns kRows weight rows. Each lane takes 16-byte chunks of codes (32 elements, half a
// group), two chunks per iteration so that several loads are in flight.
template <typename T, int kRows, int kUnroll>
__global__ void __launch_bounds__(kWarps * 32)
    gemv_int4_kernel(const T* __restrict__ x, GemvGrid g, int m, int64_t k) {
  const int seg = blockIdx.x >= g.start[2] ? 2 : blockIdx.x >= g.start[1] ? 1 : 0;
  const Int4Device w = int4_device_view(g.w[seg], g.n[seg], k);
  const float* __restrict__ bias = g.bias[seg];
  T* __restrict__ y = static_cast<T*>(g.y[seg]);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t n = w.n;
  const int64_t row0 = (int64_t{blockIdx.x - g.start[seg]} * kWarps + warp) * kRows;
  if (row0 >= n) return;
  const int64_t chunks = k / 32, groups = k / kGroup;

  const uint4* codes[kRows];
  const uint16_t* scales[kRows];
  const uint16_t* mins[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int64_t row = min(row0 + r, n - 1);
    codes[r] = reinterpret_cast<const uint4*>(w.codes + row * (k / 2));
    scales[r] = w.scales + row * groups;
    mins[r] = w.mins + row * groups;
  }
  float acc[kRows][kMaxM];
#pragma unroll
  for (int r = 0; r < kRows; ++r)
#pragma unroll
    for (int i = 0; i < kMaxM; ++i) acc[r][i] = 0.0f;

  // kUnroll chunks per lane and iteration: all their loads are issued before any is used.
  for (int64_t c0 = lane; c0 < chunks; c0 += 32 * kUnroll) {
    int64_t cs[kUnroll];
    uint4 code[kUnroll][kRows];
    float sc[kUnroll][kRows], mn[kUnroll][kRows];
#pragma unroll
    for (int h = 0; h < kUnroll; ++h) {
      cs[h] = c0 + 32 * h;
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        if (cs[h] < chunks) {
          code[h][r] = __ldcs(codes[r] + cs[h]);
          sc[h][r] = half_bits_to_float(scales[r][cs[h] / 2]);
          mn[h][r] = half_bits_to_float(mins[r][cs[h] / 2]);
        } else {
          code[h][r] = make_uint4(0, 0, 0, 0);
          sc[h][r] = mn[h][r] = 0.0f;
        }
      }
    }
#pragma unroll
    for (int h = 0; h < kUnroll; ++h) {
      if (cs[h] >= chunks) break;
      float dot[kRows][kMaxM], xsum[kMaxM];
#pragma unroll
      for (int i = 0; i < kMaxM; ++i) {
        xsum[i] = 0.0f;
#pragma unroll
        for (int r = 0; r < kRows; ++r) dot[r][i] = 0.0f;
      }
#pragma unroll
      for (int word = 0; word < 4; ++word) {
        float q[kRows][8];
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
          const uint32_t wd = word == 0 ? code[h][r].x
                              : word == 1 ? code[h][r].y
                              : word == 2 ? code[h][r].z
                                          : code[h][r].w;
          unpack8(wd, q[r]);
        }
#pragma unroll
        for (int i = 0; i < kMaxM; ++i) {
          if (i < m) {
            float xf[8];
            load8(x + i * k + cs[h] * 32 + word * 8, xf);
#pragma unroll
            for (int e = 0; e < 8; ++e) {
              xsum[i] += xf[e];
#pragma unroll
              for (int r = 0; r < kRows; ++r) dot[r][i] = fmaf(xf[e], q[r][e], dot[r][i]);
            }
          }
        }
      }
#pragma unroll
      for (int r = 0; r < kRows; ++r)
#pragma unroll
        for (int i = 0; i < kMaxM; ++i)
          acc[r][i] += fmaf(sc[h][r], dot[r][i], mn[h][r] * xsum[i]);
    }
  }
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
#pragma unroll
    for (int i = 0; i < kMaxM; ++i) {
      if (i < m) {
        float v = warp_sum(acc[r][i]);
        const int64_t col = row0 + r;
        if (lane == 0 && col < n) {
          v += bias ? bias[col] : 0.0f;
          if (g.relu) v = fmaxf(v, 0.0f);
          y[i * n + col] = from_float<T>(v);
        }
      }
    }
  }
}

// One thread per code word (8 elements): the reference value q * scale + min, rounded once.
template <typename T>
__global__ void dequantise_int4_kernel(Int4Device w, T* __restrict__ out) {
  const int64_t words_per_row = w.k / 8, words = w.n * words_per_row, groups = w.k / kGroup;
  const uint32_t* codes = reinterpret_cast<const uint32_t*>(w.codes);
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < words;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t row = i / words_per_row, col = (i % words_per_row) * 8;
    const int64_t g = row * groups + col / kGroup;
    const float s = half_bits_to_float(w.scales[g]), mn = half_bits_to_float(w.mins[g]);
    const uint32_t word = codes[i];
    float v[8];
#pragma unroll
    for (int e = 0; e < 8; ++e)
      v[e] = __fadd_rn(__fmul_rn(static_cast<float>((word >> (4 * e)) & 0xfu), s), mn);
    store8(out + row * w.k + col, v);
  }
}

// One thread per group of 64, the arithmetic of compute::quantise_int4 step for step.
template <typename S>
__global__ void quantise_int4_kernel(const S* __restrict__ w, int64_t n, int64_t k,
                                     uint8_t* __restrict__ codes, uint16_t* __restrict__ scales,
                                     uint16_t* __restrict__ mins, unsigned* bad) {
  const int64_t groups_per_row = k / kGroup, groups = n * groups_per_row;
  for (int64_t gi = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; gi < groups;
       gi += int64_t{gridDim.x} * blockDim.x) {
    const int64_t row = gi / groups_per_row, g = gi % groups_per_row;
    const S* src = w + row * k + g * kGroup;
    float lo = to_float(src[0]), hi = lo;
    bool finite = true;
    for (int i = 0; i < kGroup; ++i) {
      const float v = to_float(src[i]);
      finite = finite && isfinite(v);
      lo = v < lo ? v : lo;  // as std::min / std::max: the first of equal values (0 vs -0) stays
      hi = hi < v ? v : hi;
    }
    if (!finite) atomicAdd(bad, 1u);
    const __half min_h = __float2half_rn(lo);
    const __half scale_h = __float2half_rn(__fdiv_rn(__fsub_rn(hi, lo), 15.0f));
    const float mn = __half2float(min_h), scale = __half2float(scale_h);
    scales[gi] = __half_as_ushort(scale_h);
    mins[gi] = __half_as_ushort(min_h);
    uint32_t packed[8];
#pragma unroll
    for (int word = 0; word < 8; ++word) {
      uint32_t bits = 0;
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        const float v = to_float(src[word * 8 + e]);
        float q = scale > 0.0f ? rintf(__fdiv_rn(__fsub_rn(v, mn), scale)) : 0.0f;
        q = fminf(fmaxf(q, 0.0f), 15.0f);
        bits |= static_cast<uint32_t>(q) << (4 * e);
      }
      packed[word] = bits;
    }
    uint4* dst = reinterpret_cast<uint4*>(codes + row * (k / 2) + g * (kGroup / 2));
    dst[0] = make_uint4(packed[0], packed[1], packed[2], packed[3]);
    dst[1] = make_uint4(packed[4], packed[5], packed[6], packed[7]);
  }
}

unsigned grid_for(int64_t items, int threads) {
  const int64_t b = (items + threads - 1) / threads;
  return static_cast<unsigned>(b < 1 ? 1 : (b > 65535 * 8 ? 65535 * 8 : b));
}

}  // namespace

bool gemv_int4_supported(int64_t m, int64_t k, const void* x) {
  return m >= 1 && m <= kGemvMaxRows && k > 0 && k % kGroup == 0 &&
         (reinterpret_cast<uintptr_t>(x) & 15) == 0;
}

void launch_gemv_int4(DType dt, const void* x, const GemvBatch& batch, int64_t m, int64_t k,
                      bool relu, cudaStream_t stream) {
  STRATA_CHECK(gemv_int4_supported(m, k, x), "gemv_int4: unsupported shape or alignment");
  int64_t rows = 0;
  for (int s = 0; s < batch.count; ++s) {
    STRATA_CHECK((reinterpret_cast<uintptr_t>(batch.seg[s].w) & 15) == 0,
                 "gemv_int4: codes not 16-byte aligned");
    rows += batch.seg[s].n;
  }
  // Two rows per warp when that still gives every SM a couple of blocks, else one.
  const bool two = rows >= int64_t{kWarps} * 2 * 264;
  const GemvGrid g = gemv_grid(batch, int64_t{kWarps} * (two ? 2 : 1), relu);
  const unsigned grid = g.start[kGemvMaxSegments];
  if (grid == 0) return;
  if (two) {
    STRATA_DISPATCH_ACT(dt, gemv_int4_kernel<T, 2, 2><<<grid, kWarps * 32, 0, stream>>>(
                                static_cast<const T*>(x), g, static_cast<int>(m), k));
  } else {
    STRATA_DISPATCH_ACT(dt, gemv_int4_kernel<T, 1, 2><<<grid, kWarps * 32, 0, stream>>>(
                                static_cast<const T*>(x), g, static_cast<int>(m), k));
  }
  STRATA_CUDA_CHECK_LAUNCH();
}

void launch_dequantise_int4(DType dt, const Int4Device& w, void* out, cudaStream_t stream) {
  if (w.n == 0 || w.k == 0) return;
  STRATA_CHECK(w.k % kGroup == 0 && (reinterpret_cast<uintptr_t>(out) & 15) == 0,
               "dequantise_int4: k must be a multiple of 64 and out 16-byte aligned");
  STRATA_DISPATCH_ACT(dt, dequantise_int4_kernel<T><<<grid_for(w.n * w.k / 8, 256), 256, 0, stream>>>(
                              w, static_cast<T*>(out)));
  STRATA_CUDA_CHECK_LAUNCH();
}

void launch_quantise_int4(DType src_dt, const void* w, int64_t n, int64_t k, void* blob,
                          unsigned* bad, cudaStream_t stream) {
  if (n == 0) return;
  STRATA_CHECK(k > 0 && k % kGroup == 0 && (reinterpret_cast<uintptr_t>(blob) & 15) == 0,
               "quantise_int4: k must be a multiple of 64 and the blob 16-byte aligned");
  auto* codes = static_cast<uint8_t*>(blob);
  auto* scales = reinterpret_cast<uint16_t*>(codes + n * k / 2);
  auto* mins = scales + n * (k / kGroup);
  const unsigned grid = grid_for(n * (k / kGroup), 128);
  if (src_dt == DType::kF32) {
    quantise_int4_kernel<float><<<grid, 128, 0, stream>>>(static_cast<const float*>(w), n, k,
                                                          codes, scales, mins, bad);
  } else {
    STRATA_DISPATCH_ACT(src_dt, quantise_int4_kernel<T><<<grid, 128, 0, stream>>>(
                                    static_cast<const T*>(w), n, k, codes, scales, mins, bad));
  }
  STRATA_CUDA_CHECK_LAUNCH();
}

}  // namespace strata::cuda
