// int4-g64 kernels: the dequantiser that feeds cuBLAS for larger batches and the reference
// quantiser on the GPU (the skinny GEMV is in int4_gemv.cu).
#include <cuda_fp16.h>

#include "cuda/chain.cuh"
#include "cuda/cuda_check.h"
#include "cuda/element.cuh"
#include "cuda/gemv.h"
#include "cuda/int4_gemm.h"
#include "cuda/int4_group.cuh"

namespace strata::cuda {

namespace {

// One thread per code word (8 elements): the reference value q * scale + min, rounded once.
template <typename T>
__global__ void dequantise_int4_kernel(Int4Device w, T* __restrict__ out) {
  const int64_t words_per_row = w.k / 8, words = w.n * words_per_row, groups = w.k / kInt4Group;
  const uint32_t* codes = reinterpret_cast<const uint32_t*>(w.codes);
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < words;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t row = i / words_per_row, col = (i % words_per_row) * 8;
    const int64_t g = row * groups + col / kInt4Group;
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
  const int64_t groups_per_row = k / kInt4Group, groups = n * groups_per_row;
  for (int64_t gi = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; gi < groups;
       gi += int64_t{gridDim.x} * blockDim.x) {
    const int64_t row = gi / groups_per_row, g = gi % groups_per_row;
    const S* src = w + row * k + g * kInt4Group;
    if (!quantise_int4_group(src, codes + row * (k / 2) + g * (kInt4Group / 2), &scales[gi],
                             &mins[gi]))
      atomicAdd(bad, 1u);
  }
}

}  // namespace

void launch_dequantise_int4(DType dt, const Int4Device& w, void* out, cudaStream_t stream) {
  if (w.n == 0 || w.k == 0) return;
  STRATA_CHECK(w.k % kInt4Group == 0 && (reinterpret_cast<uintptr_t>(out) & 15) == 0,
               "dequantise_int4: k must be a multiple of 64 and out 16-byte aligned");
  STRATA_DISPATCH_ACT(dt, dequantise_int4_kernel<T><<<int4_grid_for(w.n * w.k / 8, 256), 256, 0, stream>>>(
                              w, static_cast<T*>(out)));
  STRATA_CUDA_CHECK_LAUNCH();
  settle_weights(stream);
}

void launch_quantise_int4(DType src_dt, const void* w, int64_t n, int64_t k, void* blob,
                          unsigned* bad, cudaStream_t stream) {
  if (n == 0) return;
  STRATA_CHECK(k > 0 && k % kInt4Group == 0 && (reinterpret_cast<uintptr_t>(blob) & 15) == 0,
               "quantise_int4: k must be a multiple of 64 and the blob 16-byte aligned");
  auto* codes = static_cast<uint8_t*>(blob);
  auto* scales = reinterpret_cast<uint16_t*>(codes + n * k / 2);
  auto* mins = scales + n * (k / kInt4Group);
  const unsigned grid = int4_grid_for(n * (k / kInt4Group), 128);
  if (src_dt == DType::kF32) {
    quantise_int4_kernel<float><<<grid, 128, 0, stream>>>(static_cast<const float*>(w), n, k,
                                                          codes, scales, mins, bad);
  } else {
    STRATA_DISPATCH_ACT(src_dt, quantise_int4_kernel<T><<<grid, 128, 0, stream>>>(
                                    static_cast<const T*>(w), n, k, codes, scales, mins, bad));
  }
  STRATA_CUDA_CHECK_LAUNCH();
  settle_weights(stream);
}

}  // namespace strata::cuda
