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

// Each thread touches the same elements in every pass, so y may alias sum (and sum a or b).
template <typename T>
__global__ void add_layer_norm_kernel(const T* a, const T* b, T* sum, const float* gamma,
                                      const float* beta, float eps, T* y, int64_t cols) {
  __shared__ float scratch[32];
  const int64_t off = blockIdx.x * cols;
  float total = 0.0f;
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
    const T s = from_float<T>(to_float(a[off + i]) + to_float(b[off + i]));
    sum[off + i] = s;
    total += to_float(s);
  }
  const float mean = block_sum(total, scratch) / static_cast<float>(cols);
  float sq = 0.0f;
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
    const float d = to_float(sum[off + i]) - mean;
    sq += d * d;
  }
  const float rstd = rsqrtf(block_sum(sq, scratch) / static_cast<float>(cols) + eps);
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
    float v = (to_float(sum[off + i]) - mean) * rstd;
    if (gamma) v *= gamma[i];
    if (beta) v += beta[i];
    y[off + i] = from_float<T>(v);
  }
}

template <typename T>
__global__ void add_rms_norm_kernel(const T* a, const T* b, T* sum, const float* gamma, float eps,
                                    T* y, int64_t cols) {
  __shared__ float scratch[32];
  const int64_t off = blockIdx.x * cols;
  float sq = 0.0f;
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
    const T s = from_float<T>(to_float(a[off + i]) + to_float(b[off + i]));
    sum[off + i] = s;
    const float v = to_float(s);
    sq += v * v;
  }
  const float inv = rsqrtf(block_sum(sq, scratch) / static_cast<float>(cols) + eps);
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x)
    y[off + i] = from_float<T>(gamma[i] * (to_float(sum[off + i]) * inv));
}

}  // namespace

void launch_add_layer_norm(DType dt, const void* a, const void* b, void* sum, const float* gamma,
                           const float* beta, float eps, void* y, int64_t rows, int64_t cols,
                           cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  STRATA_CHECK(rows <= 0x7fffffff, "add_layer_norm: too many rows");
  STRATA_DISPATCH_ACT(dt, add_layer_norm_kernel<<<static_cast<unsigned>(rows), threads_for(cols),
                                                  0, stream>>>(
                              static_cast<const T*>(a), static_cast<const T*>(b),
                              static_cast<T*>(sum), gamma, beta, eps, static_cast<T*>(y), cols));
  STRATA_CUDA_CHECK_LAUNCH();
}

void launch_add_rms_norm(DType dt, const void* a, const void* b, void* sum, const float* gamma,
                         float eps, void* y, int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  STRATA_CHECK(rows <= 0x7fffffff, "add_rms_norm: too many rows");
  STRATA_DISPATCH_ACT(dt, add_rms_norm_kernel<<<static_cast<unsigned>(rows), threads_for(cols), 0,
                                                stream>>>(
                              static_cast<const T*>(a), static_cast<const T*>(b),
                              static_cast<T*>(sum), gamma, eps, static_cast<T*>(y), cols));
  STRATA_CUDA_CHECK_LAUNCH();
}

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
