// LayerNorm (mean, then biased variance of the deviations, eps inside the root) and RMSNorm
// (LlamaRMSNorm: x * rsqrt(mean(x^2) + eps) * gamma), one block per row, fp32 arithmetic.
#include "cuda/cuda_check.h"
#include "cuda/element.cuh"
#include "cuda/norm.h"

namespace strata::cuda {
namespace {

int threads_for(int64_t cols) {
  int t = 32;
  while (t < 1024 && t < cols) t *= 2;
  return t;
}

template <typename T>
__global__ void layer_norm_kernel(const T* x, const float* gamma, const float* beta, float eps,
                                  T* y, int64_t cols) {
  __shared__ float scratch[32];
  const T* xr = x + blockIdx.x * cols;
  T* yr = y + blockIdx.x * cols;
  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) sum += to_float(xr[i]);
  const float mean = block_sum(sum, scratch) / static_cast<float>(cols);
  float sq = 0.0f;
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
    const float d = to_float(xr[i]) - mean;
    sq += d * d;
  }
  const float rstd = rsqrtf(block_sum(sq, scratch) / static_cast<float>(cols) + eps);
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
    float v = (to_float(xr[i]) - mean) * rstd;
    if (gamma) v *= gamma[i];
    if (beta) v += beta[i];
    yr[i] = from_float<T>(v);
  }
}

template <typename T>
__global__ void rms_norm_kernel(const T* x, const float* gamma, float eps, T* y, int64_t cols) {
  __shared__ float scratch[32];
  const T* xr = x + blockIdx.x * cols;
  T* yr = y + blockIdx.x * cols;
  float sq = 0.0f;
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
    const float v = to_float(xr[i]);
    sq += v * v;
  }
  const float inv = rsqrtf(block_sum(sq, scratch) / static_cast<float>(cols) + eps);
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x)
    yr[i] = from_float<T>(gamma[i] * (to_float(xr[i]) * inv));
}

}  // namespace

void launch_layer_norm(DType dt, const void* x, const float* gamma, const float* beta, float eps,
                       void* y, int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  STRATA_CHECK(rows <= 0x7fffffff, "layer_norm: too many rows");
  STRATA_DISPATCH_ACT(dt, layer_norm_kernel<<<static_cast<unsigned>(rows), threads_for(cols), 0,
                                              stream>>>(static_cast<const T*>(x), gamma, beta,
                                                        eps, static_cast<T*>(y), cols));
  STRATA_CUDA_CHECK_LAUNCH();
}

void launch_rms_norm(DType dt, const void* x, const float* gamma, float eps, void* y, int64_t rows,
                     int64_t cols, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  STRATA_CHECK(rows <= 0x7fffffff, "rms_norm: too many rows");
  STRATA_DISPATCH_ACT(dt, rms_norm_kernel<<<static_cast<unsigned>(rows), threads_for(cols), 0,
                                            stream>>>(static_cast<const T*>(x), gamma, eps,
                                                      static_cast<T*>(y), cols));
  STRATA_CUDA_CHECK_LAUNCH();
}

}  // namespace strata::cuda
