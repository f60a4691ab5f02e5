// The two ceilings a GPU benchmark is judged against, measured on the device at hand: the
// device-to-device copy bandwidth (bytes read plus bytes written per second) and the dense GEMM
// rate cuBLAS reaches (fp16 or bf16 operands, fp32 accumulation). Each call allocates its own
// buffers, times with CUDA events after a warm-up, and returns the median of `reps` runs.
// Thread safe only in the sense that it touches no shared state. No CUDA header here.
#pragma once

#include <cstdint>

#include "common/dtype.h"
#include "common/status.h"

namespace strata::cuda {

// Bytes per second of a cudaMemcpy device-to-device of `bytes`, counting read and write.
Result<double> measure_copy_bandwidth(int device, uint64_t bytes, int reps);
// FLOP per second of y[m, n] = x[m, k] · w[n, k]^T through cuBLAS on random operands.
Result<double> measure_gemm_rate(int device, DType dtype, int64_t m, int64_t n, int64_t k, int reps);

}  // namespace strata::cuda
