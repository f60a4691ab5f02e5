// CpuMatmul: y[M, N] = x[M, K] · w[N, K]^T (+ bias[N]) through oneDNN's matmul primitive, for F32
// weights (f32 x f32 -> f32) and BF16 weights (bf16 x bf16 -> f32, the caller converts x). It owns
// one oneDNN engine, one stream and a bounded cache of primitives; oneDNN types stay inside
// cpu_matmul.cc. Not thread safe. oneDNN runs each product on its own (OpenMP) threads.
#pragma once

#include <cstdint>
#include <memory>

#include "common/dtype.h"

namespace strata::compute {

class CpuMatmul {
 public:
  // allow_bf16 = false forces the F32 path for BF16 weights (as on a CPU without bf16 support).
  explicit CpuMatmul(bool allow_bf16 = true);
  ~CpuMatmul();
  CpuMatmul(const CpuMatmul&) = delete;
  CpuMatmul& operator=(const CpuMatmul&) = delete;

  // True when oneDNN has a non-reference bf16 x bf16 -> f32 matmul on this CPU. When false, BF16
  // weights must be widened to F32 once, at upload.
  bool bf16_supported() const;

  // x: [m, k] row-major, float for F32 weights and bf16 bits (uint16_t) for BF16 weights.
  // w: [n, k] row-major in w_dtype. bias: [n] floats or null. y: [m, n] floats, not aliasing x.
  // A oneDNN failure is a broken invariant (STRATA_CHECK), never an escaping exception.
  void run(const void* x, const void* w, DType w_dtype, const float* bias, float* y, int64_t m,
           int64_t n, int64_t k);

  // Primitives currently cached (for tests).
  size_t cached_primitives() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace strata::compute
