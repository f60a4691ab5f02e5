// linear(): F32 and BF16 weights through oneDNN, against double-precision references; upload()
// dtype rules; the bf16 fallback; the primitive cache bound.

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "compute/compute_test_util.h"
#include "compute/cpu_matmul.h"

namespace strata::compute {
namespace {

using testing::BackendTest;
using testing::random_tensor;
using testing::values_of;

struct LinearShape {
  int64_t t, k, n;
};

// Shapes with T = 1, odd sizes and K not a multiple of 16.
const LinearShape kShapes[] = {{1, 1, 1},    {1, 17, 5},   {3, 33, 7},    {7, 100, 64},
                               {16, 64, 48}, {5, 1023, 3}, {64, 260, 129}};

// Reference y = x · w^T + bias in double. Also returns, per output, sum |x_k w_k| + |bias|, the
// scale a floating-point error is relative to (cancellation makes |y| itself a poor scale).
void reference_linear(const std::vector<float>& x, const std::vector<float>& w, const float* bias,
                      int64_t t, int64_t k, int64_t n, std::vector<double>* y,
                      std::vector<double>* scale) {
  y->assign(t * n, 0.0);
  scale->assign(t * n, 0.0);
  for (int64_t r = 0; r < t; ++r) {
    for (int64_t c = 0; c < n; ++c) {
      double acc = bias ? bias[c] : 0.0, mag = bias ? std::abs(bias[c]) : 0.0;
      for (int64_t i = 0; i < k; ++i) {
        double p = static_cast<double>(x[r * k + i]) * w[c * k + i];
        acc += p;
        mag += std::abs(p);
      }
      (*y)[r * n + c] = acc;
      (*scale)[r * n + c] = mag;
    }
  }
}

void expect_within(const std::vector<float>& y, const std::vector<double>& ref,
                   const std::vector<double>& scale, double rel, const std::string& what) {
  ASSERT_EQ(y.size(), ref.size());
  int reported = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    double err = std::abs(y[i] - ref[i]);
    if (err > rel * scale[i] + 1e-30 && reported++ < 5)
      ADD_FAILURE() << what << " element " << i << ": " << y[i] << " vs " << ref[i];
  }
}

std::vector<float> bf16_rounded(const std::vector<float>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = bf16_to_f32(f32_to_bf16(v[i]));
  return out;
}

Tensor to_bf16_host(const Tensor& f32) {
  Tensor t = Tensor::host(DType::kBF16, f32.shape());
  convert_from_f32(DType::kBF16, f32.data<float>(), t.raw(), static_cast<size_t>(f32.numel()));
  return t;
}

using LinearTest = BackendTest;

TEST_F(LinearTest, F32MatchesReference) {
  uint32_t seed = 1;
  for (const auto& s : kShapes) {
    for (bool with_bias : {false, true}) {
      Tensor x = random_tensor({s.t, s.k}, seed++);
      Tensor w_host = random_tensor({s.n, s.k}, seed++);
      Tensor b_host = random_tensor({s.n}, seed++);
      Tensor w = upload(w_host, WeightKind::kLinear);
      Tensor b = upload(b_host, WeightKind::kVector);
      ASSERT_EQ(w.dtype(), DType::kF32);
      Tensor y = alloc({s.t, s.n});
      backend_->linear(x, w, with_bias ? &b : nullptr, y);

      std::vector<double> ref, scale;
      reference_linear(values_of(x), values_of(w_host), with_bias ? b_host.data<float>() : nullptr,
                       s.t, s.k, s.n, &ref, &scale);
      expect_within(values_of(y), ref, scale, 1e-5,
                    "f32 T=" + std::to_string(s.t) + " K=" + std::to_string(s.k) +
                        " N=" + std::to_string(s.n) + (with_bias ? " +bias" : ""));
    }
  }
}

TEST_F(LinearTest, Bf16MatchesReferenceOnRoundedInputs) {
  uint32_t seed = 100;
  for (const auto& s : kShapes) {
    for (bool with_bias : {false, true}) {
      Tensor x = random_tensor({s.t, s.k}, seed++);
      Tensor w_f32 = random_tensor({s.n, s.k}, seed++);
      Tensor b_host = random_tensor({s.n}, seed++);
      Tensor w = upload(to_bf16_host(w_f32), WeightKind::kLinear);
      Tensor b = upload(b_host, WeightKind::kVector);
      Tensor y = alloc({s.t, s.n});
      backend_->linear(x, w, with_bias ? &b : nullptr, y);

      // x is rounded to bf16 by the backend, w was rounded by the conversion: the reference uses
      // both rounded values, the bias stays f32.
      std::vector<double> ref, scale;
      reference_linear(bf16_rounded(values_of(x)), bf16_rounded(values_of(w_f32)),
                       with_bias ? b_host.data<float>() : nullptr, s.t, s.k, s.n, &ref, &scale);
      expect_within(values_of(y), ref, scale, 1e-4,
                    "bf16 T=" + std::to_string(s.t) + " K=" + std::to_string(s.k) +
                        " N=" + std::to_string(s.n) + (with_bias ? " +bias" : ""));
    }
  }
}

TEST_F(LinearTest, UploadKeepsF32AndBf16AndWidensF16) {
  Tensor w = random_tensor({4, 6}, 7);
  Tensor f16 = Tensor::host(DType::kF16, {4, 6});
  convert_from_f32(DType::kF16, w.data<float>(), f16.raw(), 24);

  Tensor up_f32 = upload(w, WeightKind::kLinear);
  EXPECT_EQ(up_f32.dtype(), DType::kF32);
  EXPECT_NE(up_f32.raw(), w.raw());  // a copy
  EXPECT_EQ(values_of(up_f32), values_of(w));

  Tensor up_f16 = upload(f16, WeightKind::kLinear);
  EXPECT_EQ(up_f16.dtype(), DType::kF32);
  EXPECT_EQ(values_of(up_f16), values_of(f16));

  Tensor bf16 = to_bf16_host(w);
  CpuMatmul probe;
  Tensor up_bf16 = upload(bf16, WeightKind::kLinear);
  EXPECT_EQ(up_bf16.dtype(), probe.bf16_supported() ? DType::kBF16 : DType::kF32);
  EXPECT_EQ(values_of(up_bf16), values_of(bf16));

  // A large weight is copied in parallel blocks; every element arrives.
  Tensor big = random_tensor({300, 1001}, 8);
  Tensor big_f16 = Tensor::host(DType::kF16, big.shape());
  convert_from_f32(DType::kF16, big.data<float>(), big_f16.raw(), big.numel());
  EXPECT_EQ(values_of(upload(big_f16, WeightKind::kLinear)), values_of(big_f16));
  EXPECT_EQ(values_of(upload(big, WeightKind::kLinear)), values_of(big));

  // Tables and vectors become F32.
  EXPECT_EQ(upload(bf16, WeightKind::kTable).dtype(), DType::kF32);
  EXPECT_EQ(upload(f16.reshape({24}), WeightKind::kVector).dtype(), DType::kF32);

  // A linear weight must be a matrix; I32 is never a weight.
  EXPECT_EQ(backend_->upload(w.reshape({24}), WeightKind::kLinear).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(backend_->upload(Tensor::host(DType::kI32, {2, 2}), WeightKind::kTable).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(LinearFallbackTest, Bf16WeightsWidenedOnceWhenBf16MatmulIsUnavailable) {
  ThreadPool pool(2);
  auto backend = make_cpu_backend(pool, CpuBackendOptions{.allow_bf16_matmul = false});
  const int64_t t = 5, k = 37, n = 11;
  Tensor x = random_tensor({t, k}, 3);
  Tensor w_f32 = random_tensor({n, k}, 4);
  Tensor w_bf16 = Tensor::host(DType::kBF16, {n, k});
  convert_from_f32(DType::kBF16, w_f32.data<float>(), w_bf16.raw(), n * k);
  auto w = backend->upload(w_bf16, WeightKind::kLinear);
  ASSERT_TRUE(w.is_ok());
  EXPECT_EQ(w->dtype(), DType::kF32);
  Tensor y = backend->allocate(DType::kF32, {t, n}).value();
  backend->linear(x, *w, nullptr, y);
  // Now the product is f32: x is not rounded, w carries its bf16 rounding.
  std::vector<double> ref, scale;
  reference_linear(values_of(x), bf16_rounded(values_of(w_f32)), nullptr, t, k, n, &ref, &scale);
  expect_within(values_of(y), ref, scale, 1e-5, "fallback");
}

TEST_F(LinearTest, AcceptsRank3InputAndEmptyBatch) {
  Tensor x = random_tensor({2, 3, 8}, 9);  // [T, heads, head_dim] flattened to [6, 8]
  Tensor w_host = random_tensor({5, 8}, 10);
  Tensor w = upload(w_host, WeightKind::kLinear);
  Tensor y = alloc({6, 5});
  backend_->linear(x, w, nullptr, y);
  std::vector<double> ref, scale;
  reference_linear(values_of(x), values_of(w_host), nullptr, 6, 8, 5, &ref, &scale);
  expect_within(values_of(y), ref, scale, 1e-5, "rank 3");

  Tensor x0 = alloc({0, 8});
  Tensor y0 = alloc({0, 5});
  backend_->linear(x0, w, nullptr, y0);  // no rows: nothing to do, no oneDNN call
}

TEST(CpuMatmulTest, PrimitiveCacheIsBounded) {
  CpuMatmul mm;
  const int64_t k = 8, n = 4;
  std::vector<float> x(200 * k, 1.0f), w(n * k, 0.5f), y(200 * n);
  for (int64_t m = 1; m <= 200; ++m) {
    mm.run(x.data(), w.data(), DType::kF32, nullptr, y.data(), m, n, k);
    ASSERT_FLOAT_EQ(y[(m - 1) * n], 4.0f);
  }
  EXPECT_LE(mm.cached_primitives(), 64u);
  EXPECT_GE(mm.cached_primitives(), 1u);
}

TEST_F(LinearTest, ShapeMismatchAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Tensor x = random_tensor({2, 8}, 1);
  Tensor w = upload(random_tensor({4, 7}, 2), WeightKind::kLinear);
  Tensor y = alloc({2, 4});
  EXPECT_DEATH(backend_->linear(x, w, nullptr, y), "does not match w");
}

}  // namespace
}  // namespace strata::compute
