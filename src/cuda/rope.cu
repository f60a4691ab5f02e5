// RoPE: blockIdx.x is the token, blockIdx.y a range of blockDim.x pairs (i, i + half) of its
// heads, one pair a thread (a decode step of one token still spreads over several SMs). The angle is the
// fp32 product position * inv_freq, then accurate (not fast-math) cosf/sinf, as transformers does.
#include <algorithm>

#include "cuda/cuda_check.h"
#include "cuda/element.cuh"
#include "cuda/rope.h"

namespace strata::cuda {
namespace {

template <typename T>
__global__ void rope_kernel(T* x, const int32_t* positions, const float* inv_freq, int64_t heads,
                            int64_t head_dim) {
  const int64_t half = head_dim / 2;
  const float pos = static_cast<float>(positions[blockIdx.x]);
  T* row = x + int64_t{blockIdx.x} * heads * head_dim;
  for (int64_t k = int64_t{blockIdx.y} * blockDim.x + threadIdx.x; k < heads * half;
       k += int64_t{gridDim.y} * blockDim.x) {
    const int64_t h = k / half, i = k % half;
    const float angle = __fmul_rn(pos, inv_freq[i]);
    float s, c;
    sincosf(angle, &s, &c);
    T* x1 = row + h * head_dim + i;
    T* x2 = x1 + half;
    const float a = to_float(*x1), b = to_float(*x2);
    *x1 = from_float<T>(a * c - b * s);
    *x2 = from_float<T>(b * c + a * s);
  }
}

}  // namespace

void launch_rope(DType dt, void* x, const int32_t* positions, const float* inv_freq,
                 int64_t tokens, int64_t heads, int64_t head_dim, cudaStream_t stream) {
  if (tokens == 0) return;
  STRATA_CHECK(tokens <= 0x7fffffff, "rope: too many tokens");
  const int64_t pairs = heads * (head_dim / 2);
  const int threads = pairs >= 256 ? 256 : (pairs >= 128 ? 128 : 64);
  const dim3 grid(static_cast<unsigned>(tokens),
                  static_cast<unsigned>(std::min<int64_t>((pairs + threads - 1) / threads, 65535)));
  STRATA_DISPATCH_ACT(dt, rope_kernel<<<grid, threads, 0, stream>>>(
                              static_cast<T*>(x), positions, inv_freq, heads, head_dim));
  STRATA_CUDA_CHECK_LAUNCH();
}

}  // namespace strata::cuda
