#include "cuda/host_pinner.h"

#include <cuda_runtime.h>

#include <cstdio>
#include <string>

#include "common/units.h"
#include "cuda/device_guard.h"

namespace strata::cuda {
namespace {

StatusCode code_of(cudaError_t e) {
  switch (e) {
    case cudaErrorMemoryAllocation:
      return StatusCode::kOutOfMemory;
    case cudaErrorHostMemoryAlreadyRegistered:
    case cudaErrorInvalidValue:
      return StatusCode::kInvalidArgument;
    case cudaErrorNoDevice:
    case cudaErrorInvalidDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorNotSupported:
      return StatusCode::kUnsupported;
    default:
      return StatusCode::kInternal;
  }
}

const char* hint_for(cudaError_t e) {
  switch (e) {
    case cudaErrorMemoryAllocation:
      return " (the driver could not lock that much memory: use a smaller CPU tier (--cpu-mem) or "
             "free host memory)";
    case cudaErrorHostMemoryAlreadyRegistered:
      return " (part of this range is already pinned: pin each block once)";
    case cudaErrorNoDevice:
    case cudaErrorInvalidDevice:
    case cudaErrorInsufficientDriver:
      return " (no usable CUDA device with that index: check `strata devices`)";
    default:
      return "";
  }
}

class CudaHostPinner final : public storage::HostPinner {
 public:
  explicit CudaHostPinner(int device)
      : device_(device), name_("cudaHostRegister (GPU " + std::to_string(device) + ")") {}

  std::string_view name() const override { return name_; }
  MemoryKind pinned_kind() const override { return MemoryKind::kPinned; }

  Status pin(void* addr, size_t bytes) override {
    if (addr == nullptr || bytes == 0) {
      return invalid_argument("cannot pin an empty host range (" + format_bytes(bytes) + " at " +
                              address(addr) + ") for GPU " + std::to_string(device_));
    }
    DeviceGuard guard(device_);
    cudaError_t e = guard.error();
    const char* call = "cudaSetDevice";
    if (e == cudaSuccess) {
      call = "cudaHostRegister";
      e = cudaHostRegister(addr, bytes, cudaHostRegisterPortable | cudaHostRegisterMapped);
    }
    if (e == cudaSuccess) return Status::ok();
    cudaGetLastError();  // clear the error so later calls on this thread do not see it
    return Status(code_of(e), std::string(call) + " of " + format_bytes(bytes) +
                                  " of host memory at " + address(addr) + " for GPU " +
                                  std::to_string(device_) + " failed: " + cudaGetErrorName(e) +
                                  ": " + cudaGetErrorString(e) + hint_for(e));
  }

  // Failures are ignored: they mean the registration is already gone (the device was reset, or
  // the CUDA runtime is unloading at exit), and the caller unmaps the range next either way.
  void unpin(void* addr, size_t) override {
    if (addr == nullptr) return;
    DeviceGuard guard(device_);
    if (cudaHostUnregister(addr) != cudaSuccess) cudaGetLastError();
  }

 private:
  static std::string address(const void* p) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%p", p);
    return buf;
  }

  int device_;
  std::string name_;
};

}  // namespace

std::unique_ptr<storage::HostPinner> make_cuda_host_pinner(int device) {
  return std::make_unique<CudaHostPinner>(device);
}

}  // namespace strata::cuda
