// Device-side helpers shared by the kernels of src/cuda/: conversions between fp32 and the two
// activation types (__half, __nv_bfloat16), 16-byte vectors of 8 elements, warp reductions, and
// the dtype dispatch used by every launcher. Internal to src/cuda/ .cu files.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/check.h"
#include "common/dtype.h"

namespace strata::cuda {

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// Eight 16-bit elements moved as one 16-byte access.
template <typename T>
struct alignas(16) Vec8 {
  T v[8];
};

template <typename T>
__device__ __forceinline__ void load8(const T* p, float out[8]) {
  const Vec8<T> x = *reinterpret_cast<const Vec8<T>*>(p);
#pragma unroll
  for (int i = 0; i < 8; ++i) out[i] = to_float(x.v[i]);
}

template <typename T>
__device__ __forceinline__ void store8(T* p, const float in[8]) {
  Vec8<T> x;
#pragma unroll
  for (int i = 0; i < 8; ++i) x.v[i] = from_float<T>(in[i]);
  *reinterpret_cast<Vec8<T>*>(p) = x;
}

// 32-bit word j (0-3) of a 16-byte vector.
__device__ __forceinline__ uint32_t word_of(const uint4& v, int j) {
  return j == 0 ? v.x : j == 1 ? v.y : j == 2 ? v.z : v.w;
}

// A streamed 16-byte load of data read once (weights): kept out of L1, with a 256-byte L2 prefetch.
__device__ __forceinline__ uint4 load_stream(const uint4* p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p));
  return v;
#else
  return __ldcs(p);
#endif
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over a block of up to 1024 threads; every thread gets the result. `scratch` holds 32
// floats of shared memory; the call contains barriers, so every thread of the block must make it.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = (blockDim.x + 31) / 32;
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float total = lane < warps ? scratch[lane] : 0.0f;
  return warp_sum(total);
}

}  // namespace strata::cuda

// Runs `body` with `T` bound to the element type of activation dtype `dt` (F16 or BF16).
#define STRATA_DISPATCH_ACT(dt, ...)                                                    \
  do {                                                                                  \
    if ((dt) == ::strata::DType::kF16) {                                                \
      using T = __half;                                                                 \
      __VA_ARGS__;                                                                       \
    } else {                                                                            \
      STRATA_CHECK((dt) == ::strata::DType::kBF16, "cuda: activations are F16 or BF16"); \
      using T = __nv_bfloat16;                                                          \
      __VA_ARGS__;                                                                       \
    }                                                                                   \
  } while (0)
