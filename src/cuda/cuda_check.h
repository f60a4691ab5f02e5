// The one checking macro for CUDA runtime and cuBLAS calls inside src/cuda/, plus the helper that
// turns a failed allocation into a Status. Internal to src/cuda/ (it includes CUDA headers): never
// include it from a header outside this directory. Thread safe.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string>

#include "common/check.h"

namespace strata::cuda::detail {

inline const char* error_text(cudaError_t e) { return cudaGetErrorString(e); }
inline const char* error_text(cublasStatus_t s) { return cublasGetStatusString(s); }
inline bool failed(cudaError_t e) { return e != cudaSuccess; }
inline bool failed(cublasStatus_t s) { return s != CUBLAS_STATUS_SUCCESS; }

}  // namespace strata::cuda::detail

// STRATA_CUDA_CHECK(call): a failing CUDA or cuBLAS call is a broken invariant (the device is
// lost, a kernel was launched with a bad configuration): abort with file:line and the error text.
// Expected failures (an allocation that does not fit) are handled where they happen instead.
#define STRATA_CUDA_CHECK(call)                                                             \
  do {                                                                                      \
    auto strata_cuda_err_ = (call);                                                         \
    if (::strata::cuda::detail::failed(strata_cuda_err_)) [[unlikely]]                      \
      ::strata::detail::check_failed(__FILE__, __LINE__, #call,                             \
                                     ::strata::cuda::detail::error_text(strata_cuda_err_)); \
  } while (0)

// After a kernel launch: checks the launch itself (bad grid, too much shared memory).
#define STRATA_CUDA_CHECK_LAUNCH() STRATA_CUDA_CHECK(cudaGetLastError())
