// Gemm: the CUDA backend's matrix products through cuBLAS, y[M, N] = x[M, K] · w[N, K]^T with
// F16 or BF16 operands and fp32 accumulation. Owns its cuBLAS handle and workspace (device
// memory); bound to one stream. Not thread safe. Internal to src/cuda/.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "common/dtype.h"
#include "common/status.h"

namespace strata::cuda {

class Gemm {
 public:
  Gemm() = default;
  ~Gemm();
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;

  Status init(cudaStream_t stream);
  // Row-major x [m, k], w [n, k], y [m, n], all of dtype dt, in device memory.
  void run(DType dt, const void* x, const void* w, void* y, int64_t m, int64_t n, int64_t k);

 private:
  cublasHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
};

}  // namespace strata::cuda
