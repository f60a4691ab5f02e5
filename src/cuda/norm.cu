// LayerNorm (mean, then biased variance of the deviations, eps inside the root) and RMSNorm
// (LlamaRMSNorm: x * rsqrt(mean(x^2) + eps) * gamma), one block per row, fp32 arithmetic.
#include <algorithm>
#include <cstdint>

#include "cuda/chain.cuh"
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

// add_rms_norm and add_layer_norm for rows of a multiple of 8 elements up to kVecThreads * 8 *
// kVecChunks: 16-byte accesses, and each thread keeps its sums (and gamma, beta) in registers for
// the later passes, so a row is read once (one round trip to memory before the reductions
// instead of one per pass). kLayer: LayerNorm (mean, then the deviations' variance from the
// registers); else RMSNorm. gamma may be null for LayerNorm, beta is.
constexpr int kVecThreads = 512;
constexpr int kVecChunks = 4;

template <typename T, bool kLayer>
__global__ void __launch_bounds__(kVecThreads)
    add_norm_vec_kernel(const T* a, const T* b, T* sum, const float* gamma, const float* beta,
                        float eps, T* y, int64_t cols) {
  __shared__ float scratch[32];
  wait_for_prior_kernels();
  release_next_kernel();
  const int64_t off = blockIdx.x * cols;
  const int chunks = static_cast<int>(cols / 8);
  Vec8<T> s[kVecChunks];
  float4 g[kVecChunks][2], bt[kLayer ? kVecChunks : 1][2];
  float total = 0.0f, sq = 0.0f;
#pragma unroll
  for (int u = 0; u < kVecChunks; ++u) {
    const int c = threadIdx.x + u * blockDim.x;
    if (c >= chunks) break;
    float av[8], bv[8];
    load8(a + off + 8 * c, av);
    load8(b + off + 8 * c, bv);
    const float4 one = make_float4(1.0f, 1.0f, 1.0f, 1.0f), zero = make_float4(0, 0, 0, 0);
    g[u][0] = gamma ? reinterpret_cast<const float4*>(gamma + 8 * c)[0] : one;
    g[u][1] = gamma ? reinterpret_cast<const float4*>(gamma + 8 * c)[1] : one;
    if constexpr (kLayer) {
      bt[u][0] = beta ? reinterpret_cast<const float4*>(beta + 8 * c)[0] : zero;
      bt[u][1] = beta ? reinterpret_cast<const float4*>(beta + 8 * c)[1] : zero;
    }
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      s[u].v[e] = from_float<T>(av[e] + bv[e]);
      const float v = to_float(s[u].v[e]);
      total += v;
      sq += v * v;
    }
    *reinterpret_cast<Vec8<T>*>(sum + off + 8 * c) = s[u];
  }
  float shift = 0.0f, scale;
  if constexpr (kLayer) {
    shift = block_sum(total, scratch) / static_cast<float>(cols);  // the mean
    sq = 0.0f;
#pragma unroll
    for (int u = 0; u < kVecChunks; ++u) {
      const int c = threadIdx.x + u * blockDim.x;
      if (c >= chunks) break;
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        const float d = to_float(s[u].v[e]) - shift;
        sq += d * d;
      }
    }
  }
  scale = rsqrtf(block_sum(sq, scratch) / static_cast<float>(cols) + eps);
#pragma unroll
  for (int u = 0; u < kVecChunks; ++u) {
    const int c = threadIdx.x + u * blockDim.x;
    if (c >= chunks) break;
    const float gv[8] = {g[u][0].x, g[u][0].y, g[u][0].z, g[u][0].w,
                         g[u][1].x, g[u][1].y, g[u][1].z, g[u][1].w};
    float out[8];
    if constexpr (kLayer) {
      const float bv[8] = {bt[u][0].x, bt[u][0].y, bt[u][0].z, bt[u][0].w,
                           bt[u][1].x, bt[u][1].y, bt[u][1].z, bt[u][1].w};
#pragma unroll
      for (int e = 0; e < 8; ++e) out[e] = (to_float(s[u].v[e]) - shift) * scale * gv[e] + bv[e];
    } else {
#pragma unroll
      for (int e = 0; e < 8; ++e) out[e] = gv[e] * (to_float(s[u].v[e]) * scale);
    }
    store8(y + off + 8 * c, out);
  }
}

bool vec_row_ok(int64_t cols, const void* a, const void* b, const void* sum, const float* gamma,
                const float* beta, const void* y) {
  const auto aligned = [](const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; };
  return cols % 8 == 0 && cols <= int64_t{kVecThreads} * 8 * kVecChunks && aligned(a) &&
         aligned(b) && aligned(sum) && aligned(gamma) && aligned(beta) && aligned(y);
}

// Threads for add_norm_vec_kernel over rows of `cols` (rows are 16-byte aligned too: cols * 2
// bytes is a multiple of 16).
int vec_threads(int64_t cols) {
  const int chunks = static_cast<int>(cols / 8);
  return std::min(kVecThreads, (chunks + 31) / 32 * 32);
}

}  // namespace

void launch_add_layer_norm(DType dt, const void* a, const void* b, void* sum, const float* gamma,
                           const float* beta, float eps, void* y, int64_t rows, int64_t cols,
                           cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  STRATA_CHECK(rows <= 0x7fffffff, "add_layer_norm: too many rows");
  if (vec_row_ok(cols, a, b, sum, gamma, beta, y)) {
    STRATA_DISPATCH_ACT(
        dt,
        launch_chained(add_norm_vec_kernel<T, true>, static_cast<unsigned>(rows), vec_threads(cols),
                       0, stream, static_cast<const T*>(a), static_cast<const T*>(b),
                       static_cast<T*>(sum), gamma, beta, eps, static_cast<T*>(y), cols));
    return;
  }
  STRATA_DISPATCH_ACT(
      dt, add_layer_norm_kernel<<<static_cast<unsigned>(rows), threads_for(cols), 0, stream>>>(
              static_cast<const T*>(a), static_cast<const T*>(b), static_cast<T*>(sum), gamma, beta,
              eps, static_cast<T*>(y), cols));
  STRATA_CUDA_CHECK_LAUNCH();
}

void launch_add_rms_norm(DType dt, const void* a, const void* b, void* sum, const float* gamma,
                         float eps, void* y, int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  STRATA_CHECK(rows <= 0x7fffffff, "add_rms_norm: too many rows");
  if (vec_row_ok(cols, a, b, sum, gamma, nullptr, y)) {
    STRATA_DISPATCH_ACT(
        dt, launch_chained(add_norm_vec_kernel<T, false>, static_cast<unsigned>(rows),
                           vec_threads(cols), 0, stream, static_cast<const T*>(a),
                           static_cast<const T*>(b), static_cast<T*>(sum), gamma, nullptr, eps,
                           static_cast<T*>(y), cols));
    return;
  }
  STRATA_DISPATCH_ACT(
      dt, add_rms_norm_kernel<<<static_cast<unsigned>(rows), threads_for(cols), 0, stream>>>(
              static_cast<const T*>(a), static_cast<const T*>(b), static_cast<T*>(sum), gamma, eps,
              static_cast<T*>(y), cols));
  STRATA_CUDA_CHECK_LAUNCH();
}

void launch_layer_norm(DType dt, const void* x, const float* gamma, const float* beta, float eps,
                       void* y, int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  STRATA_CHECK(rows <= 0x7fffffff, "layer_norm: too many rows");
  STRATA_DISPATCH_ACT(
      dt, layer_norm_kernel<<<static_cast<unsigned>(rows), threads_for(cols), 0, stream>>>(
              static_cast<const T*>(x), gamma, beta, eps, static_cast<T*>(y), cols));
  STRATA_CUDA_CHECK_LAUNCH();
}

void launch_rms_norm(DType dt, const void* x, const float* gamma, float eps, void* y, int64_t rows,
                     int64_t cols, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  STRATA_CHECK(rows <= 0x7fffffff, "rms_norm: too many rows");
  STRATA_DISPATCH_ACT(
      dt, rms_norm_kernel<<<static_cast<unsigned>(rows), threads_for(cols), 0, stream>>>(
              static_cast<const T*>(x), gamma, eps, static_cast<T*>(y), cols));
  STRATA_CUDA_CHECK_LAUNCH();
}

}  // namespace strata::cuda
