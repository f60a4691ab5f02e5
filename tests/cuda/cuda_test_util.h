// Helpers for the CUDA backend tests: skip without a GPU, run one op on the CUDA and the CPU
// backend from the same inputs, and compare by relative L2 and max error. Inputs are drawn in
// fp32 and rounded to the GPU's activation dtype first, so both backends see identical values and
// the difference measures only the GPU's arithmetic. Test-only; not thread safe.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <string>

#include "common/tensor.h"
#include "common/thread_pool.h"
#include "compute/backend.h"
#include "cuda/cuda_backend.h"
#include "cuda/device.h"

namespace strata::cuda::testing {

// Why no GPU test can run here, or empty when one can.
inline std::string no_gpu_reason() {
  DeviceQuery q = query_devices();
  return q.devices.empty() ? q.note : std::string();
}

#define STRATA_REQUIRE_GPU()                                                      \
  do {                                                                            \
    const std::string strata_no_gpu_ = ::strata::cuda::testing::no_gpu_reason(); \
    if (!strata_no_gpu_.empty()) GTEST_SKIP() << "no CUDA device: " << strata_no_gpu_; \
  } while (0)

// Host F32 tensor, uniform in [lo, hi), with every value representable in `dt`.
inline Tensor random_host(Shape shape, uint32_t seed, DType dt, float lo = -1.0f, float hi = 1.0f) {
  Tensor t = Tensor::host(DType::kF32, std::move(shape));
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) {
    const float v = dist(gen);
    p[i] = dt == DType::kBF16 ? bf16_to_f32(f32_to_bf16(v))
           : dt == DType::kF16 ? f16_to_f32(f32_to_f16(v))
                               : v;
  }
  return t;
}

// `host` in `b`'s memory and activation dtype, with host's shape.
inline Tensor on(compute::Backend& b, const Tensor& host) {
  const int64_t cols = host.rank() == 0 ? 1 : host.dim(-1);
  const int64_t rows = cols == 0 ? 0 : host.numel() / cols;
  auto r = b.upload(host.reshape({rows, cols}), compute::WeightKind::kTable);
  STRATA_CHECK(r.is_ok(), r.status().to_string());
  return r->reshape(host.shape());
}

// A weight vector (norm scale, bias) in `b`'s form.
inline Tensor vec_on(compute::Backend& b, const Tensor& host) {
  auto r = b.upload(host, compute::WeightKind::kVector);
  STRATA_CHECK(r.is_ok(), r.status().to_string());
  return std::move(r).value();
}

// An output tensor of `b` filled with garbage (values near 1e4), so an element a kernel forgets
// to write shows up as a large error.
inline Tensor poisoned(compute::Backend& b, Shape shape) {
  auto r = b.allocate(b.activation_dtype(), shape);
  STRATA_CHECK(r.is_ok(), r.status().to_string());
  Tensor t = std::move(r).value();
  if (t.memory() == MemoryKind::kGpu) {
    Status s = fill_uniform(b, t, 77, 1.0e4f, 1.0f);
    STRATA_CHECK(s.is_ok(), s.to_string());
  }
  return t;
}

struct ErrorStats {
  double rel_l2 = 0;   // ||a - b|| / ||b||
  double max_abs = 0;  // max |a - b|
  double max_ref = 0;  // max |b|
  bool finite = true;
};

inline ErrorStats compare(const Tensor& got, const Tensor& want) {
  STRATA_CHECK(got.shape() == want.shape(),
               shape_string(got.shape()) + " vs " + shape_string(want.shape()));
  ErrorStats e;
  double num = 0, den = 0;
  for (int64_t i = 0; i < got.numel(); ++i) {
    const double a = got.data<float>()[i], b = want.data<float>()[i];
    if (!std::isfinite(a)) e.finite = false;
    num += (a - b) * (a - b);
    den += b * b;
    e.max_abs = std::max(e.max_abs, std::fabs(a - b));
    e.max_ref = std::max(e.max_ref, std::fabs(b));
  }
  e.rel_l2 = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  return e;
}

// Expects got ~ want: relative L2 error within rel_l2, and no element off by more than
// max_rel * max(1, max |want|).
inline void expect_matches(const Tensor& got, const Tensor& want, double rel_l2, double max_rel,
                           const std::string& what) {
  const ErrorStats e = compare(got, want);
  EXPECT_TRUE(e.finite) << what << ": non-finite output";
  EXPECT_LE(e.rel_l2, rel_l2) << what << ": relative L2 error";
  EXPECT_LE(e.max_abs, max_rel * std::max(1.0, e.max_ref)) << what << ": max error";
}

// A CPU backend and a CUDA backend side by side.
class CudaVsCpu : public ::testing::TestWithParam<DType> {
 protected:
  void SetUp() override {
    STRATA_REQUIRE_GPU();
    cpu_ = compute::make_cpu_backend(pool_);
    CudaBackendOptions o;
    o.activation_dtype = GetParam();
    auto g = make_cuda_backend(o);
    ASSERT_TRUE(g.is_ok()) << g.status().to_string();
    gpu_ = std::move(g).value();
  }
  DType dt() const { return GetParam(); }
  // Tolerances: the GPU rounds every op's output to its activation dtype (8 or 11 mantissa bits).
  double tol() const { return dt() == DType::kBF16 ? 8e-3 : 1e-3; }

  ThreadPool pool_{4};
  std::unique_ptr<compute::Backend> cpu_, gpu_;
};

}  // namespace strata::cuda::testing
