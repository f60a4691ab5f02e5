// int4-g64 kernel pieces shared by the weight quantiser (int4_gemm.cu), the int4 KV cache's
// append (int4_kv_attention.cu) and the int4 GEMVs (int4_gemv.cu, int4_gemv_mma.cu): codes to
// exact fp16 pairs, one group of 64 values quantised by compute::quantise_int4's rule step for
// step, fp16 bits to fp32, and the grid of their grid-stride loops. Internal to src/cuda/ .cu
// files.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "cuda/element.cuh"
#include "cuda/int4_gemm.h"

namespace strata::cuda {

inline constexpr int kInt4Group = 64;

// Row `row` of an int4-g64 blob [n, k] (int4_gemm.h): its first 16 bytes of codes, first scale
// and first min.
struct Int4Row {
  const uint4* codes;
  const uint16_t* scales;
  const uint16_t* mins;
};
__device__ __forceinline__ Int4Row int4_row(const void* blob, int64_t n, int64_t k, int64_t row) {
  const Int4Device w = int4_device_view(blob, n, k);
  return {reinterpret_cast<const uint4*>(w.codes) + row * (k / 32), w.scales + row * (k / 64),
          w.mins + row * (k / 64)};
}

// fp16 bits as a pair.
__device__ __forceinline__ __half2 h2_bits(uint32_t bits) {
  __half2 h;
  static_assert(sizeof(h) == sizeof(bits));
  memcpy(&h, &bits, sizeof(bits));
  return h;
}

// The 8 codes of a 32-bit word (element e in bits [4e, 4e + 4)) as exact fp16 pairs:
// q[j] = (code j, code j + 4). (word & 0x000f000f) | 0x64006400 is the pair (1024 + q0, 1024 + q4),
// (word & 0x00f000f0) | 0x64006400 is (1024 + 16 q1, 1024 + 16 q5); one subtraction, or one
// multiply-add by 1/16, leaves the exact codes; the word shifted by 8 gives elements 2, 6, 3, 7.
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

// 8 consecutive fp16 values as the pairs (e, e + 4) that match unpack_codes' order.
__device__ __forceinline__ void x_pairs(const uint4& v, __half2 xp[4]) {
  xp[0] = h2_bits(__byte_perm(v.x, v.z, 0x5410));
  xp[1] = h2_bits(__byte_perm(v.x, v.z, 0x7632));
  xp[2] = h2_bits(__byte_perm(v.y, v.w, 0x5410));
  xp[3] = h2_bits(__byte_perm(v.y, v.w, 0x7632));
}

// Blocks for a grid-stride loop over `items` with `threads` a block (at least 1, at most 524280).
inline unsigned int4_grid_for(int64_t items, int threads) {
  const int64_t b = (items + threads - 1) / threads;
  return static_cast<unsigned>(b < 1 ? 1 : (b > 65535 * 8 ? 65535 * 8 : b));
}

__device__ __forceinline__ float half_bits_to_float(uint16_t b) {
  return __half2float(__ushort_as_half(b));
}

// Quantises src[0, 64): the 32 code bytes to `codes` (16-byte aligned; byte j holds element 2j in
// its low nibble), the fp16 scale and min bits to *scale and *min. The first of equal minima and
// maxima is kept (as std::min / std::max: 0 and -0 stay apart), the division is IEEE, rounding
// to nearest even, as compute::quantise_int4. Returns false when a value is not finite (the
// codes are then meaningless).
template <typename T>
__device__ __forceinline__ bool quantise_int4_group(const T* src, uint8_t* codes, uint16_t* scale,
                                                    uint16_t* min) {
  float lo = to_float(src[0]), hi = lo;
  bool finite = true;
  for (int i = 0; i < kInt4Group; ++i) {
    const float v = to_float(src[i]);
    finite = finite && isfinite(v);
    lo = v < lo ? v : lo;
    hi = hi < v ? v : hi;
  }
  const __half min_h = __float2half_rn(lo);
  const __half scale_h = __float2half_rn(__fdiv_rn(__fsub_rn(hi, lo), 15.0f));
  const float mn = __half2float(min_h), s = __half2float(scale_h);
  *scale = __half_as_ushort(scale_h);
  *min = __half_as_ushort(min_h);
  uint32_t packed[8];
#pragma unroll
  for (int word = 0; word < 8; ++word) {
    uint32_t bits = 0;
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      const float v = to_float(src[word * 8 + e]);
      float q = s > 0.0f ? rintf(__fdiv_rn(__fsub_rn(v, mn), s)) : 0.0f;
      q = fminf(fmaxf(q, 0.0f), 15.0f);
      bits |= static_cast<uint32_t>(q) << (4 * e);
    }
    packed[word] = bits;
  }
  uint4* dst = reinterpret_cast<uint4*>(codes);
  dst[0] = make_uint4(packed[0], packed[1], packed[2], packed[3]);
  dst[1] = make_uint4(packed[4], packed[5], packed[6], packed[7]);
  return finite;
}

}  // namespace strata::cuda
