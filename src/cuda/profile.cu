#include "cuda/profile.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <vector>

#include "common/dtype.h"
#include "cuda/cuda_check.h"
#include "cuda/roofline.h"

namespace strata::cuda {

namespace {

constexpr int kReps = 5;

// Best-of-kReps seconds of one copy of `bytes` on `stream`.
double time_copy(void* dst, const void* src, uint64_t bytes, cudaMemcpyKind kind, cudaStream_t stream) {
  cudaEvent_t a, b;
  STRATA_CUDA_CHECK(cudaEventCreate(&a));
  STRATA_CUDA_CHECK(cudaEventCreate(&b));
  STRATA_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, stream));  // warm-up
  double best = 1e30;
  for (int r = 0; r < kReps; ++r) {
    STRATA_CUDA_CHECK(cudaEventRecord(a, stream));
    STRATA_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, stream));
    STRATA_CUDA_CHECK(cudaEventRecord(b, stream));
    STRATA_CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    STRATA_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    best = std::min(best, ms / 1e3);
  }
  STRATA_CUDA_CHECK(cudaEventDestroy(a));
  STRATA_CUDA_CHECK(cudaEventDestroy(b));
  return best;
}

}  // namespace

Result<GpuLinkAndRates> measure_gpu_profile(int device, uint64_t copy_bytes) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count <= device) {
    cudaGetLastError();
    return unsupported("no CUDA device " + std::to_string(device) + " (" + std::to_string(count) +
                       " visible): no GPU figures");
  }
  STRATA_CUDA_CHECK(cudaSetDevice(device));
  GpuLinkAndRates g;
  cudaDeviceProp prop{};
  STRATA_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  g.name = prop.name;
  g.memory_bytes = prop.totalGlobalMem;

  void *host_a = nullptr, *host_b = nullptr, *dev_a = nullptr, *dev_b = nullptr;
  if (cudaMallocHost(&host_a, copy_bytes) != cudaSuccess || cudaMallocHost(&host_b, copy_bytes) != cudaSuccess ||
      cudaMalloc(&dev_a, copy_bytes) != cudaSuccess || cudaMalloc(&dev_b, copy_bytes) != cudaSuccess) {
    cudaGetLastError();
    cudaFreeHost(host_a);
    cudaFreeHost(host_b);
    cudaFree(dev_a);
    cudaFree(dev_b);
    return out_of_memory("cannot allocate 2 x " + std::to_string(copy_bytes) +
                         " bytes of pinned host and GPU memory for the copy test; use a smaller size");
  }
  std::fill_n(static_cast<char*>(host_a), copy_bytes, 1);  // touch every page
  std::fill_n(static_cast<char*>(host_b), copy_bytes, 2);
  cudaStream_t up, down;
  STRATA_CUDA_CHECK(cudaStreamCreateWithFlags(&up, cudaStreamNonBlocking));
  STRATA_CUDA_CHECK(cudaStreamCreateWithFlags(&down, cudaStreamNonBlocking));
  const double bytes = static_cast<double>(copy_bytes);
  g.h2d_gbps = bytes / time_copy(dev_a, host_a, copy_bytes, cudaMemcpyHostToDevice, up) / 1e9;
  g.d2h_gbps = bytes / time_copy(host_b, dev_b, copy_bytes, cudaMemcpyDeviceToHost, down) / 1e9;

  // Both at once: each stream copies its buffer kReps times; each direction's rate is its bytes
  // over the time both were running (from the common start to the later end).
  cudaEvent_t start, end_up, end_down;
  STRATA_CUDA_CHECK(cudaEventCreate(&start));
  STRATA_CUDA_CHECK(cudaEventCreate(&end_up));
  STRATA_CUDA_CHECK(cudaEventCreate(&end_down));
  STRATA_CUDA_CHECK(cudaDeviceSynchronize());
  STRATA_CUDA_CHECK(cudaEventRecord(start, up));
  STRATA_CUDA_CHECK(cudaStreamWaitEvent(down, start, 0));
  for (int r = 0; r < kReps; ++r) {
    STRATA_CUDA_CHECK(cudaMemcpyAsync(dev_a, host_a, copy_bytes, cudaMemcpyHostToDevice, up));
    STRATA_CUDA_CHECK(cudaMemcpyAsync(host_b, dev_b, copy_bytes, cudaMemcpyDeviceToHost, down));
  }
  STRATA_CUDA_CHECK(cudaEventRecord(end_up, up));
  STRATA_CUDA_CHECK(cudaEventRecord(end_down, down));
  STRATA_CUDA_CHECK(cudaEventSynchronize(end_up));
  STRATA_CUDA_CHECK(cudaEventSynchronize(end_down));
  float ms_up = 0, ms_down = 0;
  STRATA_CUDA_CHECK(cudaEventElapsedTime(&ms_up, start, end_up));
  STRATA_CUDA_CHECK(cudaEventElapsedTime(&ms_down, start, end_down));
  const double both_s = std::max(ms_up, ms_down) / 1e3;
  g.duplex_gbps = kReps * bytes / both_s / 1e9;
  for (cudaEvent_t e : {start, end_up, end_down}) STRATA_CUDA_CHECK(cudaEventDestroy(e));
  STRATA_CUDA_CHECK(cudaStreamDestroy(up));
  STRATA_CUDA_CHECK(cudaStreamDestroy(down));
  STRATA_CUDA_CHECK(cudaFreeHost(host_a));
  STRATA_CUDA_CHECK(cudaFreeHost(host_b));
  STRATA_CUDA_CHECK(cudaFree(dev_a));
  STRATA_CUDA_CHECK(cudaFree(dev_b));

  STRATA_ASSIGN_OR_RETURN(double hbm, measure_copy_bandwidth(device, copy_bytes, kReps));
  g.hbm_gbps = hbm / 1e9;
  STRATA_ASSIGN_OR_RETURN(double prefill, measure_gemm_rate(device, DType::kF16, 4096, 8192, 8192, kReps));
  g.gemm_prefill_tflops = prefill / 1e12;
  STRATA_ASSIGN_OR_RETURN(double decode, measure_gemm_rate(device, DType::kF16, 32, 8192, 8192, kReps));
  g.gemm_decode_tflops = decode / 1e12;
  return g;
}

}  // namespace strata::cuda
