// Chained kernels: a decode step is a chain of short kernels on one stream, each waiting for the
// one before it. On devices of compute capability 9.0 and later, a kernel launched with
// launch_chained may start while its predecessor finishes (programmatic dependent launch): its
// blocks are placed as soon as the predecessor's blocks have all passed their own wait, load
// their first weights, then wait_for_prior_kernels() before they touch anything else. Elsewhere,
// or with chained launches turned off (device.h), it is an ordinary launch and the wait is a
// no-op.
//
// Rules:
//   - A chained kernel's threads call wait_for_prior_kernels() before they read data an earlier
//     kernel may have written (activations, caches, counters) and before their first global
//     write, then release_next_kernel().
//   - Before the wait they may read weights only. Weights arrive by copies (on the same stream,
//     or on another one joined by an event wait), which only the kernel just before a chained
//     launch may overlap, or are written by a kernel (quantisation, conversion, fills); every
//     such launcher ends with settle_weights(), so the kernel just before a chained one never
//     writes weights.
// Internal to src/cuda/ .cu files.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <utility>

#include "cuda/cuda_check.h"
#include "cuda/device.h"

namespace strata::cuda {

__device__ __forceinline__ void wait_for_prior_kernels() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void release_next_kernel() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// An ordinary, empty launch after a kernel that writes weights: a chained kernel after it starts
// only once that kernel has finished, so its loads of weights before its wait see the new values.
void settle_weights(cudaStream_t stream);

// True when the current device has compute capability 9.0 or later (chained launches, thread-block
// clusters).
bool hopper_or_later();
// True when launches on the current device may be chained: hopper_or_later() and chained launches
// are on (set_chained_launches).
bool chained_launch_available();

// kernel<<<grid, block, smem, stream>>>(args...) in thread-block clusters of `cluster` blocks (no
// clusters when it is 1 x 1 x 1; else the device must be hopper_or_later()), chained to the
// kernel before it where chained_launch_available(). Checks the launch.
template <typename... Params, typename... Args>
void launch_chained_in_clusters(void (*kernel)(Params...), dim3 grid, dim3 block, dim3 cluster,
                                size_t smem, cudaStream_t stream, Args&&... args) {
  cudaLaunchAttribute attr[2] = {};
  unsigned n = 0;
  if (cluster.x * cluster.y * cluster.z > 1) {
    attr[n].id = cudaLaunchAttributeClusterDimension;
    attr[n].val.clusterDim.x = cluster.x;
    attr[n].val.clusterDim.y = cluster.y;
    attr[n].val.clusterDim.z = cluster.z;
    ++n;
  }
  if (chained_launch_available()) {
    attr[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[n].val.programmaticStreamSerializationAllowed = 1;
    ++n;
  }
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cfg.attrs = attr;
  cfg.numAttrs = n;
  STRATA_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}

// kernel<<<grid, block, smem, stream>>>(args...), chained to the kernel before it where
// chained_launch_available(). Checks the launch.
template <typename... Params, typename... Args>
void launch_chained(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                    cudaStream_t stream, Args&&... args) {
  launch_chained_in_clusters(kernel, grid, block, dim3(1, 1, 1), smem, stream,
                             std::forward<Args>(args)...);
}

}  // namespace strata::cuda
