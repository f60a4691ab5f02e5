// DeviceGuard: makes a CUDA device current for a scope and restores the previous one after.
// error() says whether the switch worked; callers that create or allocate check it, deleters that
// may run after the CUDA runtime is gone (at exit) ignore it. Internal to src/cuda/ (CUDA header).
#pragma once

#include <cuda_runtime.h>

namespace strata::cuda {

class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    if (cudaGetDevice(&previous_) != cudaSuccess) {
      cudaGetLastError();
      previous_ = -1;
    }
    error_ = previous_ == device ? cudaSuccess : cudaSetDevice(device);
    if (error_ != cudaSuccess) cudaGetLastError();
  }
  ~DeviceGuard() {
    if (previous_ >= 0 && cudaSetDevice(previous_) != cudaSuccess) cudaGetLastError();
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;
  cudaError_t error() const { return error_; }

 private:
  int previous_ = -1;
  cudaError_t error_ = cudaSuccess;
};

}  // namespace strata::cuda
