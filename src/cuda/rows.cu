// Row gather: one block per output row, 16-byte copies when the row allows.
#include "cuda/cuda_check.h"
#include "cuda/element.cuh"
#include "cuda/rows.h"

#include <algorithm>

namespace strata::cuda {
namespace {

template <typename V>
__global__ void gather_kernel(const V* x, const int32_t* index, int64_t cols, V* y) {
  const V* src = x + int64_t{index[blockIdx.x]} * cols;
  V* dst = y + int64_t{blockIdx.x} * cols;
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) dst[i] = src[i];
}

// One block per routed row: y's row += weight * x's row, in fp32.
template <typename T>
__global__ void scatter_add_kernel(const T* x, const int32_t* index, const float* weight,
                                   int64_t cols, T* y) {
  const T* src = x + int64_t{blockIdx.x} * cols;
  T* dst = y + int64_t{index[blockIdx.x]} * cols;
  const float w = weight[blockIdx.x];
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x)
    dst[i] = from_float<T>(to_float(dst[i]) + w * to_float(src[i]));
}

template <typename V>
__global__ void copy_kernel(const V* src, int64_t n, V* dst) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x)
    dst[i] = src[i];
}

}  // namespace

void launch_copy_bytes(void* dst, const void* src, size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return;
  const bool vec = bytes % 16 == 0 && (reinterpret_cast<uintptr_t>(src) & 15) == 0 &&
                   (reinterpret_cast<uintptr_t>(dst) & 15) == 0;
  const int64_t n = vec ? static_cast<int64_t>(bytes / 16) : static_cast<int64_t>(bytes);
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((n + 255) / 256, 1024));
  if (vec) {
    copy_kernel<<<blocks, 256, 0, stream>>>(static_cast<const uint4*>(src), n, static_cast<uint4*>(dst));
  } else {
    copy_kernel<<<blocks, 256, 0, stream>>>(static_cast<const uint8_t*>(src), n, static_cast<uint8_t*>(dst));
  }
  STRATA_CUDA_CHECK_LAUNCH();
}

void launch_scatter_add_rows(DType dt, const void* x, const int32_t* index, const float* weight,
                             int64_t n, int64_t cols, void* y, cudaStream_t stream) {
  if (n == 0 || cols == 0) return;
  STRATA_CHECK(n <= 0x7fffffff, "scatter_add_rows: too many rows");
  const unsigned blocks = static_cast<unsigned>(n);
  STRATA_DISPATCH_ACT(dt, scatter_add_kernel<T><<<blocks, 128, 0, stream>>>(
                              static_cast<const T*>(x), index, weight, cols, static_cast<T*>(y)));
  STRATA_CUDA_CHECK_LAUNCH();
}

void launch_gather_rows(DType dt, const void* x, const int32_t* index, int64_t n, int64_t cols,
                        void* y, cudaStream_t stream) {
  if (n == 0 || cols == 0) return;
  STRATA_CHECK(n <= 0x7fffffff, "gather_rows: too many rows");
  const int64_t row_bytes = cols * static_cast<int64_t>(dtype_size(dt));
  const bool vec = row_bytes % 16 == 0 && (reinterpret_cast<uintptr_t>(x) & 15) == 0 &&
                   (reinterpret_cast<uintptr_t>(y) & 15) == 0;
  const unsigned blocks = static_cast<unsigned>(n);
  if (vec) {
    gather_kernel<<<blocks, 128, 0, stream>>>(static_cast<const uint4*>(x), index, row_bytes / 16,
                                              static_cast<uint4*>(y));
  } else if (row_bytes % 2 == 0) {
    gather_kernel<<<blocks, 128, 0, stream>>>(static_cast<const uint16_t*>(x), index,
                                              row_bytes / 2, static_cast<uint16_t*>(y));
  } else {
    gather_kernel<<<blocks, 128, 0, stream>>>(static_cast<const uint8_t*>(x), index, row_bytes,
                                              static_cast<uint8_t*>(y));
  }
  STRATA_CUDA_CHECK_LAUNCH();
}

}  // namespace strata::cuda
