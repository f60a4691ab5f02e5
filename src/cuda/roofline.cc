#include "cuda/roofline.h"

#include <algorithm>
#include <string>
#include <vector>

#include "cuda/cuda_check.h"
#include "cuda/elementwise.h"
#include "cuda/gemm.h"

namespace strata::cuda {
namespace {

// Device buffers freed at scope exit.
struct Buffers {
  std::vector<void*> ptrs;
  ~Buffers() {
    for (void* p : ptrs) cudaFree(p);
  }
  void* get(size_t bytes) {
    void* p = nullptr;
    if (cudaMalloc(&p, bytes) != cudaSuccess) {
      cudaGetLastError();
      return nullptr;
    }
    ptrs.push_back(p);
    return p;
  }
};

// Median milliseconds of `reps` timed runs of fn after two warm-ups.
template <typename Fn>
double median_ms(cudaStream_t s, int reps, Fn fn) {
  cudaEvent_t a, b;
  STRATA_CUDA_CHECK(cudaEventCreate(&a));
  STRATA_CUDA_CHECK(cudaEventCreate(&b));
  fn();
  fn();
  std::vector<float> ms;
  for (int i = 0; i < reps; ++i) {
    STRATA_CUDA_CHECK(cudaEventRecord(a, s));
    fn();
    STRATA_CUDA_CHECK(cudaEventRecord(b, s));
    STRATA_CUDA_CHECK(cudaEventSynchronize(b));
    float t = 0;
    STRATA_CUDA_CHECK(cudaEventElapsedTime(&t, a, b));
    ms.push_back(t);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace

Result<double> measure_copy_bandwidth(int device, uint64_t bytes, int reps) {
  STRATA_CUDA_CHECK(cudaSetDevice(device));
  Buffers buf;
  void* src = buf.get(bytes);
  void* dst = buf.get(bytes);
  if (src == nullptr || dst == nullptr)
    return out_of_memory("copy bandwidth: no room for two buffers of " + std::to_string(bytes));
  cudaStream_t s;
  STRATA_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  launch_fill_uniform(DType::kF32, src, static_cast<int64_t>(bytes / 4), 1, 0.0f, 1.0f, s);
  const double ms = median_ms(s, reps, [&] {
    STRATA_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s));
  });
  STRATA_CUDA_CHECK(cudaStreamDestroy(s));
  return 2.0 * static_cast<double>(bytes) / (ms * 1e-3);
}

Result<double> measure_gemm_rate(int device, DType dtype, int64_t m, int64_t n, int64_t k,
                                 int reps) {
  STRATA_CUDA_CHECK(cudaSetDevice(device));
  Buffers buf;
  const size_t e = dtype_size(dtype);
  void* x = buf.get(m * k * e);
  void* w = buf.get(n * k * e);
  void* y = buf.get(m * n * e);
  if (x == nullptr || w == nullptr || y == nullptr)
    return out_of_memory("gemm rate: no room for the operands");
  cudaStream_t s;
  STRATA_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  launch_fill_uniform(dtype, x, m * k, 1, 0.0f, 1.0f, s);
  launch_fill_uniform(dtype, w, n * k, 2, 0.0f, 0.02f, s);
  double ms = 0;
  {
    Gemm gemm;
    STRATA_RETURN_IF_ERROR(gemm.init(s));
    ms = median_ms(s, reps, [&] { gemm.run(dtype, x, w, y, m, n, k); });
  }
  STRATA_CUDA_CHECK(cudaStreamDestroy(s));
  return 2.0 * static_cast<double>(m) * n * k / (ms * 1e-3);
}

}  // namespace strata::cuda
