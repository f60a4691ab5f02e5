// Elementwise kernels of the CUDA backend: residual add, ReLU, the SiLU-gated product, bias rows,
// dtype conversion, seeded uniform fill and a timed hold of the stream. Pointers are device memory; n counts elements. Each
// launcher enqueues on `stream` and returns at once. Internal to src/cuda/.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "common/dtype.h"

namespace strata::cuda {

// y = a + b (y may alias a or b); dt is F16 or BF16.
void launch_add(DType dt, const void* a, const void* b, void* y, int64_t n, cudaStream_t stream);
// x = max(x, 0) in place.
void launch_relu(DType dt, void* x, int64_t n, cudaStream_t stream);
// y = silu(gate) * up (y may alias either).
void launch_silu_mul(DType dt, const void* gate, const void* up, void* y, int64_t n,
                     cudaStream_t stream);
// y[r, c] += bias[c] for y [rows, cols] (then max(y, 0) when relu); bias is F32.
void launch_add_bias(DType dt, void* y, const float* bias, int64_t rows, int64_t cols, bool relu,
                     cudaStream_t stream);
// dst = src converted element for element; either dtype is F32, F16 or BF16.
void launch_convert(DType src_dt, const void* src, DType dst_dt, void* dst, int64_t n,
                    cudaStream_t stream);
// dst[i] = center + half * (2u - 1) with u in [0, 1) a pure function of (seed, i); dst is F32,
// F16 or BF16.
void launch_fill_uniform(DType dt, void* dst, int64_t n, uint64_t seed, float center, float half,
                         cudaStream_t stream);
// Keeps `stream` busy for `ns` nanoseconds (one spinning thread), so that work enqueued behind it
// piles up and then runs without waiting on the host.
void launch_hold(uint64_t ns, cudaStream_t stream);

}  // namespace strata::cuda
