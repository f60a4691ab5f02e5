// The CUDA compute backend: compute::Backend on one GPU, with F16 (default) or BF16 activations,
// weights and KV cache (norm scales and biases stay F32). Ops are enqueued on one stream and
// return at once; to_host_f32() waits. Tensors it made may outlive it. Not thread safe. No CUDA
// header here: in a build without CUDA make_cuda_backend() says so.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"
#include "compute/backend.h"

namespace strata::cuda {

struct CudaBackendOptions {
  int device = 0;                        // CUDA device index
  DType activation_dtype = DType::kF16;  // F16 or BF16
  // Join adjacent ops into one launch (skinny products sharing x, bias + ReLU, residual add +
  // norm, RoPE of q and k + the KV cache write). false launches every op on its own, for A/B
  // timing; results are the same.
  bool fuse_ops = true;
};

// The backend, or why it cannot be made (no CUDA in this build, no such device, bad dtype).
Result<std::unique_ptr<compute::Backend>> make_cuda_backend(const CudaBackendOptions& options);

// True when `backend` was made by make_cuda_backend().
bool is_cuda_backend(const compute::Backend& backend);

// Waits until every op enqueued on a CUDA backend has finished (a no-op for other backends).
void synchronize(compute::Backend& backend);

// Waits, then hands the device memory the backend keeps cached for reuse back to the driver (after
// a setup phase whose temporaries would otherwise stay reserved). A no-op for other backends.
void release_cached_memory(compute::Backend& backend);
// Hands the blocks the backend keeps for reuse by exact size back to its stream-ordered pool
// (freed in stream order), where an allocation of any size can reuse them; unlike
// release_cached_memory, nothing goes back to the driver and nothing waits. For callers whose
// allocation sizes change from step to step, so the size-keyed blocks do not pile up.
void drop_cached_blocks(compute::Backend& backend);

// Fills a device tensor of `backend` with uniform values in [center - half, center + half), a
// pure function of (seed, element index); for synthetic benchmark weights made on the GPU.
Status fill_uniform(compute::Backend& backend, Tensor& t, uint64_t seed, float center, float half);

// Enqueues `microseconds` of idle waiting on a CUDA backend's stream: ops issued right after it
// queue up behind it, so the time a step takes beyond the hold is its GPU time without the host's
// launch cost (a benchmark's measure of how much launching costs).
Status hold_stream(compute::Backend& backend, double microseconds);

// Starts (on) or stops (off) a profiler's capture (cudaProfilerStart/Stop), for a benchmark run
// under a profiler that starts with capture off; waits for the backend's work first.
void profiler_capture(compute::Backend& backend, bool on);

}  // namespace strata::cuda
