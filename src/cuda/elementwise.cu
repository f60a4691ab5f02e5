// Elementwise kernels: grid-stride loops, 16-byte vectors where the pointers and sizes allow.
#include "cuda/chain.cuh"
#include "cuda/cuda_check.h"
#include "cuda/element.cuh"
#include "cuda/elementwise.h"

namespace strata::cuda {
namespace {

constexpr int kThreads = 256;

// Blocks for n items: enough to fill the GPU, never more than the work.
unsigned blocks_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < 1 ? 1 : (b > 65535 * 8 ? 65535 * 8 : b));
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

struct AddOp {
  __device__ float operator()(float a, float b) const { return a + b; }
};
struct SiluMulOp {
  __device__ float operator()(float g, float u) const { return g / (1.0f + __expf(-g)) * u; }
};

template <typename T, typename Op>
__global__ void binary_vec8(const T* a, const T* b, T* y, int64_t n8, Op op) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n8;
       i += int64_t{gridDim.x} * blockDim.x) {
    float x[8], z[8];
    load8(a + i * 8, x);
    load8(b + i * 8, z);
#pragma unroll
    for (int e = 0; e < 8; ++e) x[e] = op(x[e], z[e]);
    store8(y + i * 8, x);
  }
}

template <typename T, typename Op>
__global__ void binary_scalar(const T* a, const T* b, T* y, int64_t n, Op op) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    y[i] = from_float<T>(op(to_float(a[i]), to_float(b[i])));
}

template <typename T, typename Op>
void binary(const void* a, const void* b, void* y, int64_t n, Op op, cudaStream_t stream) {
  if (n == 0) return;
  if (n % 8 == 0 && aligned16(a) && aligned16(b) && aligned16(y)) {
    binary_vec8<T><<<blocks_for(n / 8), kThreads, 0, stream>>>(
        static_cast<const T*>(a), static_cast<const T*>(b), static_cast<T*>(y), n / 8, op);
  } else {
    binary_scalar<T><<<blocks_for(n), kThreads, 0, stream>>>(
        static_cast<const T*>(a), static_cast<const T*>(b), static_cast<T*>(y), n, op);
  }
  STRATA_CUDA_CHECK_LAUNCH();
}

template <typename T>
__global__ void relu_kernel(T* x, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const float v = to_float(x[i]);
    x[i] = from_float<T>(v > 0.0f ? v : 0.0f);
  }
}

template <typename T>
__global__ void add_bias_kernel(T* y, const float* bias, int64_t rows, int64_t cols, bool relu) {
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const float v = to_float(y[i]) + bias[i % cols];
    y[i] = from_float<T>(relu && v < 0.0f ? 0.0f : v);
  }
}

// cols a multiple of 8: one 16-byte vector per thread and step, one division per vector.
template <typename T>
__global__ void add_bias_vec8(T* y, const float* bias, int64_t rows, int64_t cols, bool relu) {
  const int64_t n8 = rows * cols / 8, c8 = cols / 8;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n8;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t c0 = (i % c8) * 8;
    float v[8];
    load8(y + i * 8, v);
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      v[e] += bias[c0 + e];
      if (relu && v[e] < 0.0f) v[e] = 0.0f;
    }
    store8(y + i * 8, v);
  }
}

template <typename S, typename D>
__global__ void convert_kernel(const S* src, D* dst, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    dst[i] = from_float<D>(to_float(src[i]));
}

template <typename S>
void convert_from(const S* src, DType dst_dt, void* dst, int64_t n, cudaStream_t stream) {
  switch (dst_dt) {
    case DType::kF32:
      convert_kernel<<<blocks_for(n), kThreads, 0, stream>>>(src, static_cast<float*>(dst), n);
      break;
    case DType::kF16:
      convert_kernel<<<blocks_for(n), kThreads, 0, stream>>>(src, static_cast<__half*>(dst), n);
      break;
    case DType::kBF16:
      convert_kernel<<<blocks_for(n), kThreads, 0, stream>>>(src, static_cast<__nv_bfloat16*>(dst),
                                                             n);
      break;
    default:
      STRATA_CHECK(false, "convert: destination must be F32, F16 or BF16");
  }
  STRATA_CUDA_CHECK_LAUNCH();
}

__device__ __forceinline__ uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

template <typename T>
__global__ void fill_uniform_kernel(T* dst, int64_t n, uint64_t seed, float center, float half) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const uint64_t x = mix64(seed + uint64_t(i + 1) * 0x9e3779b97f4a7c15ull);
    const float u = static_cast<float>(x >> 40) * (1.0f / 16777216.0f);
    dst[i] = from_float<T>(center + half * (2.0f * u - 1.0f));
  }
}

// One thread that spins for `ns` nanoseconds of the GPU's global timer.
__global__ void hold_kernel(uint64_t ns) {
  uint64_t start = 0, now = 0;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
  do {
    __nanosleep(1000);
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
  } while (now - start < ns);
}

}  // namespace

void launch_hold(uint64_t ns, cudaStream_t stream) {
  hold_kernel<<<1, 1, 0, stream>>>(ns);
  STRATA_CUDA_CHECK_LAUNCH();
}

void launch_add(DType dt, const void* a, const void* b, void* y, int64_t n, cudaStream_t stream) {
  STRATA_DISPATCH_ACT(dt, binary<T>(a, b, y, n, AddOp{}, stream));
}

void launch_silu_mul(DType dt, const void* gate, const void* up, void* y, int64_t n,
                     cudaStream_t stream) {
  STRATA_DISPATCH_ACT(dt, binary<T>(gate, up, y, n, SiluMulOp{}, stream));
}

void launch_relu(DType dt, void* x, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  STRATA_DISPATCH_ACT(dt, relu_kernel<<<blocks_for(n), kThreads, 0, stream>>>(static_cast<T*>(x), n));
  STRATA_CUDA_CHECK_LAUNCH();
}

void launch_add_bias(DType dt, void* y, const float* bias, int64_t rows, int64_t cols, bool relu,
                     cudaStream_t stream) {
  if (rows * cols == 0) return;
  if (cols % 8 == 0 && aligned16(y)) {
    STRATA_DISPATCH_ACT(dt, add_bias_vec8<<<blocks_for(rows * cols / 8), kThreads, 0, stream>>>(
                                static_cast<T*>(y), bias, rows, cols, relu));
  } else {
    STRATA_DISPATCH_ACT(dt, add_bias_kernel<<<blocks_for(rows * cols), kThreads, 0, stream>>>(
                                static_cast<T*>(y), bias, rows, cols, relu));
  }
  STRATA_CUDA_CHECK_LAUNCH();
}

void launch_convert(DType src_dt, const void* src, DType dst_dt, void* dst, int64_t n,
                    cudaStream_t stream) {
  if (n == 0) return;
  switch (src_dt) {
    case DType::kF32: convert_from(static_cast<const float*>(src), dst_dt, dst, n, stream); break;
    case DType::kF16: convert_from(static_cast<const __half*>(src), dst_dt, dst, n, stream); break;
    case DType::kBF16:
      convert_from(static_cast<const __nv_bfloat16*>(src), dst_dt, dst, n, stream);
      break;
    default: STRATA_CHECK(false, "convert: source must be F32, F16 or BF16");
  }
  settle_weights(stream);  // conversions make weights (upload)
}

void launch_fill_uniform(DType dt, void* dst, int64_t n, uint64_t seed, float center, float half,
                         cudaStream_t stream) {
  if (n == 0) return;
  if (dt == DType::kF32) {
    fill_uniform_kernel<<<blocks_for(n), kThreads, 0, stream>>>(static_cast<float*>(dst), n, seed,
                                                                center, half);
  } else {
    STRATA_DISPATCH_ACT(dt, fill_uniform_kernel<<<blocks_for(n), kThreads, 0, stream>>>(
                                static_cast<T*>(dst), n, seed, center, half));
  }
  STRATA_CUDA_CHECK_LAUNCH();
  settle_weights(stream);  // fills make synthetic weights
}

}  // namespace strata::cuda
