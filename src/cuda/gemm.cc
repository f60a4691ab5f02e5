#include "cuda/gemm.h"

#include <limits>
#include <string>

#include "cuda/cuda_check.h"

namespace strata::cuda {
namespace {
constexpr size_t kWorkspaceBytes = size_t{32} << 20;
}

Gemm::~Gemm() {
  if (handle_ != nullptr) cublasDestroy(handle_);
  if (workspace_ != nullptr) cudaFree(workspace_);
}

Status Gemm::init(cudaStream_t stream) {
  if (cublasStatus_t s = cublasCreate(&handle_); s != CUBLAS_STATUS_SUCCESS) {
    handle_ = nullptr;
    return internal_error(std::string("cuda backend: cannot create a cuBLAS handle: ") +
                          cublasGetStatusString(s));
  }
  if (cudaMalloc(&workspace_, kWorkspaceBytes) != cudaSuccess) {
    cudaGetLastError();
    workspace_ = nullptr;
    return out_of_memory("cuda backend: no room for the 32 MiB cuBLAS workspace");
  }
  STRATA_CUDA_CHECK(cublasSetStream(handle_, stream));
  STRATA_CUDA_CHECK(cublasSetWorkspace(handle_, workspace_, kWorkspaceBytes));
  STRATA_CUDA_CHECK(cublasSetMathMode(handle_, CUBLAS_DEFAULT_MATH));
  return Status::ok();
}

void Gemm::run(DType dt, const void* x, const void* w, void* y, int64_t m, int64_t n, int64_t k) {
  if (m == 0 || n == 0) return;
  constexpr int64_t kMax = std::numeric_limits<int>::max();
  STRATA_CHECK(m <= kMax && n <= kMax && k <= kMax, "gemm: dimension over 2^31");
  const cudaDataType_t t = dt == DType::kF16 ? CUDA_R_16F : CUDA_R_16BF;
  STRATA_CHECK(dt == DType::kF16 || dt == DType::kBF16, "gemm: operands must be F16 or BF16");
  const float one = 1.0f, zero = 0.0f;
  // Column-major view: y^T [n, m] = w [k, n]^T · x^T [k, m].
  STRATA_CUDA_CHECK(cublasGemmEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n),
                                 static_cast<int>(m), static_cast<int>(k), &one, w, t,
                                 static_cast<int>(k), x, t, static_cast<int>(k), &zero, y, t,
                                 static_cast<int>(n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

}  // namespace strata::cuda
