// The rotation of RoPE on the device, shared by the RoPE kernels (rope.cu) and the decode
// attention that rotates q and k itself (attention_decode_mma.cu): the angle is the fp32 product
// position * inv_freq, then accurate (not fast-math) sincosf, as transformers does, and the
// rotation is written out in explicit roundings so that every kernel gives the same bits.
// Internal to src/cuda/ .cu files.
#pragma once

#include <cuda_runtime.h>

namespace strata::cuda {

struct RopeTurn {
  float c, s;
};

__device__ __forceinline__ RopeTurn rope_turn(float pos, float inv_freq) {
  RopeTurn t;
  sincosf(__fmul_rn(pos, inv_freq), &t.s, &t.c);
  return t;
}

// Elements (a, b) = (x[i], x[i + head_dim / 2]) of a head, rotated.
__device__ __forceinline__ float2 rope_rotate(float a, float b, RopeTurn t) {
  return make_float2(__fmaf_rn(a, t.c, -__fmul_rn(b, t.s)), __fmaf_rn(b, t.c, __fmul_rn(a, t.s)));
}

}  // namespace strata::cuda
