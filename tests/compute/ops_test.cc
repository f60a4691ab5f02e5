// The CPU backend's norms, elementwise ops, row copies and memory: against double-precision
// references and hand-computed values.

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "compute/compute_test_util.h"

namespace strata::compute {
namespace {

using testing::BackendTest;
using testing::expect_close;
using testing::random_tensor;
using testing::tensor_from;
using testing::values_of;

// Row counts and widths including T = 1, odd widths, and sizes large enough to use the pool.
struct RowShape {
  int64_t t, c;
};
const RowShape kRowShapes[] = {{1, 1}, {1, 7}, {3, 33}, {5, 4096}, {300, 257}};

using OpsTest = BackendTest;

std::vector<double> ref_layer_norm(const std::vector<float>& x, const float* g, const float* b,
                                   int64_t t, int64_t c, double eps) {
  std::vector<double> y(x.size());
  for (int64_t r = 0; r < t; ++r) {
    double mean = 0, var = 0;
    for (int64_t i = 0; i < c; ++i) mean += x[r * c + i];
    mean /= c;
    for (int64_t i = 0; i < c; ++i) var += (x[r * c + i] - mean) * (x[r * c + i] - mean);
    var /= c;
    for (int64_t i = 0; i < c; ++i) {
      double v = (x[r * c + i] - mean) / std::sqrt(var + eps);
      y[r * c + i] = v * (g ? g[i] : 1.0) + (b ? b[i] : 0.0);
    }
  }
  return y;
}

TEST_F(OpsTest, LayerNormMatchesReference) {
  uint32_t seed = 1;
  for (const auto& s : kRowShapes) {
    for (bool affine : {false, true}) {
      Tensor x = random_tensor({s.t, s.c}, seed++, -3.0f, 5.0f);
      Tensor g = random_tensor({s.c}, seed++, 0.5f, 1.5f);
      Tensor b = random_tensor({s.c}, seed++);
      Tensor y = alloc({s.t, s.c});
      backend_->layer_norm(x, affine ? &g : nullptr, affine ? &b : nullptr, 1e-5f, y);
      auto ref = ref_layer_norm(values_of(x), affine ? g.data<float>() : nullptr,
                                affine ? b.data<float>() : nullptr, s.t, s.c, 1e-5);
      expect_close(values_of(y), ref, 1e-5, 1e-5, "layer_norm c=" + std::to_string(s.c));
    }
  }
}

TEST_F(OpsTest, LayerNormByHand) {
  // [1, 2, 3, 4]: mean 2.5, biased variance 1.25, so y = (x - 2.5) / sqrt(1.25).
  Tensor x = tensor_from({1, 4}, {1, 2, 3, 4});
  Tensor y = alloc({1, 4});
  backend_->layer_norm(x, nullptr, nullptr, 0.0f, y);
  expect_close(values_of(y), {-1.3416407865, -0.4472135955, 0.4472135955, 1.3416407865}, 0, 1e-6,
               "plain");
  // eps goes inside the square root: with eps = 0.75 the denominator is sqrt(2).
  backend_->layer_norm(x, nullptr, nullptr, 0.75f, y);
  expect_close(
      values_of(y),
      {-1.5 / std::sqrt(2.0), -0.5 / std::sqrt(2.0), 0.5 / std::sqrt(2.0), 1.5 / std::sqrt(2.0)}, 0,
      1e-6, "eps");
  Tensor g = tensor_from({4}, {1, 2, 1, 1});
  Tensor b = tensor_from({4}, {0, 0, 0, 1});
  backend_->layer_norm(x, &g, &b, 0.0f, y);
  expect_close(values_of(y), {-1.3416407865, -0.894427191, 0.4472135955, 2.3416407865}, 0, 1e-6,
               "affine");
}

TEST_F(OpsTest, RmsNormMatchesReferenceAndHandValues) {
  uint32_t seed = 50;
  for (const auto& s : kRowShapes) {
    Tensor x = random_tensor({s.t, s.c}, seed++, -2.0f, 2.0f);
    Tensor g = random_tensor({s.c}, seed++, 0.5f, 1.5f);
    Tensor y = alloc({s.t, s.c});
    backend_->rms_norm(x, g, 1e-6f, y);
    auto xv = values_of(x);
    std::vector<double> ref(xv.size());
    for (int64_t r = 0; r < s.t; ++r) {
      double ms = 0;
      for (int64_t i = 0; i < s.c; ++i) ms += double(xv[r * s.c + i]) * xv[r * s.c + i];
      double inv = 1.0 / std::sqrt(ms / s.c + 1e-6);
      for (int64_t i = 0; i < s.c; ++i)
        ref[r * s.c + i] = xv[r * s.c + i] * inv * g.data<float>()[i];
    }
    expect_close(values_of(y), ref, 1e-5, 1e-6, "rms_norm c=" + std::to_string(s.c));
  }
  // [3, 4]: mean square 12.5; y = x / sqrt(12.5) * gamma.
  Tensor x = tensor_from({1, 2}, {3, 4});
  Tensor g = tensor_from({2}, {1, 0.5f});
  Tensor y = alloc({1, 2});
  backend_->rms_norm(x, g, 0.0f, y);
  expect_close(values_of(y), {0.8485281374, 0.5656854249}, 0, 1e-6, "hand");
}

TEST_F(OpsTest, AddReluSiluMul) {
  uint32_t seed = 80;
  for (const auto& s : kRowShapes) {
    Tensor a = random_tensor({s.t, s.c}, seed++, -4.0f, 4.0f);
    Tensor b = random_tensor({s.t, s.c}, seed++, -4.0f, 4.0f);
    auto av = values_of(a), bv = values_of(b);
    std::vector<double> sum(av.size()), relu(av.size()), swiglu(av.size());
    for (size_t i = 0; i < av.size(); ++i) {
      sum[i] = av[i] + bv[i];  // the f32 sum, exactly
      relu[i] = av[i] > 0 ? av[i] : 0.0;
      swiglu[i] = av[i] / (1.0 + std::exp(-double(av[i]))) * bv[i];
    }
    Tensor y = alloc({s.t, s.c});
    backend_->silu_mul(a, b, y);
    expect_close(values_of(y), swiglu, 1e-6, 1e-6, "silu_mul");
    backend_->add(a, b, y);
    expect_close(values_of(y), sum, 0, 0, "add");
    backend_->add(a, b, a);  // y may alias a
    expect_close(values_of(a), sum, 0, 0, "add in place");
    Tensor r = tensor_from({s.t, s.c}, av);
    backend_->relu(r);
    expect_close(values_of(r), relu, 0, 0, "relu");
  }
  // silu(0) = 0, silu(large) ~ large, silu(-large) ~ 0 with no NaN.
  Tensor g = tensor_from({3}, {0.0f, 100.0f, -100.0f});
  Tensor u = tensor_from({3}, {5.0f, 2.0f, 2.0f});
  Tensor y = alloc({3});
  backend_->silu_mul(g, u, y);
  expect_close(values_of(y), {0.0, 200.0, -200.0 * std::exp(-100.0)}, 1e-6, 1e-30, "silu extremes");
}

TEST_F(OpsTest, EmbeddingAndGatherRows) {
  Tensor table_host = random_tensor({10, 7}, 5);
  Tensor table = upload(table_host, WeightKind::kTable);
  std::vector<int32_t> ids = {3, 0, 9, 3};
  Tensor y = alloc({4, 7});
  backend_->embedding(table, ids, y);
  auto tv = values_of(table_host);
  auto yv = values_of(y);
  for (size_t i = 0; i < ids.size(); ++i)
    for (int c = 0; c < 7; ++c) EXPECT_EQ(yv[i * 7 + c], tv[ids[i] * 7 + c]);

  std::vector<int32_t> rows = {2, 2, 0};
  Tensor g = alloc({3, 7});
  backend_->gather_rows(y, rows, g);
  auto gv = values_of(g);
  for (size_t i = 0; i < rows.size(); ++i)
    for (int c = 0; c < 7; ++c) EXPECT_EQ(gv[i * 7 + c], yv[rows[i] * 7 + c]);

  // Many rows: the threaded path.
  Tensor big = random_tensor({50, 1000}, 6);
  std::vector<int32_t> many(400);
  for (size_t i = 0; i < many.size(); ++i) many[i] = static_cast<int32_t>((i * 7) % 50);
  Tensor out = alloc({400, 1000});
  backend_->gather_rows(big, many, out);
  auto bv = values_of(big), ov = values_of(out);
  for (size_t i = 0; i < many.size(); ++i) ASSERT_EQ(ov[i * 1000 + 999], bv[many[i] * 1000 + 999]);
}

TEST_F(OpsTest, ScatterAddRowsAddsWeightedRowsInPlace) {
  // y rows 2 and 0 get 0.5 * x[0] and -2 * x[1]; row 1 is untouched.
  Tensor y = tensor_from({3, 2}, {1, 1, 2, 2, 3, 3});
  Tensor x = tensor_from({2, 2}, {4, 6, 1, -1});
  const std::vector<int32_t> rows = {2, 0};
  const std::vector<float> weights = {0.5f, -2.0f};
  backend_->scatter_add_rows(x, rows, weights, y);
  expect_close(values_of(y), {1 - 2, 1 + 2, 2, 2, 3 + 2, 3 + 3}, 0, 0, "hand");
}

TEST_F(OpsTest, ScatterAddRowsRefusesARepeatedRow) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Tensor y = alloc({3, 2});
  Tensor x = tensor_from({2, 2}, {1, 2, 3, 4});
  const std::vector<int32_t> rows = {1, 1};
  const std::vector<float> weights = {1, 1};
  EXPECT_DEATH(backend_->scatter_add_rows(x, rows, weights, y), "repeated");
}

TEST_F(OpsTest, EmbeddingIdOutOfRangeAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Tensor table = upload(random_tensor({10, 4}, 5), WeightKind::kTable);
  Tensor y = alloc({1, 4});
  std::vector<int32_t> bad = {10};
  EXPECT_DEATH(backend_->embedding(table, bad, y), "outside \\[0, 10\\)");
  std::vector<int32_t> negative = {-1};
  EXPECT_DEATH(backend_->embedding(table, negative, y), "outside");
}

TEST_F(OpsTest, AllocateIsZeroedAndReportsErrors) {
  auto t = backend_->allocate(DType::kF32, {3, 5});
  ASSERT_TRUE(t.is_ok());
  EXPECT_EQ(t->shape(), (Shape{3, 5}));
  EXPECT_EQ(t->memory(), MemoryKind::kHost);
  for (float v : values_of(*t)) EXPECT_EQ(v, 0.0f);
  auto bf = backend_->allocate(DType::kBF16, {4});
  ASSERT_TRUE(bf.is_ok());
  EXPECT_EQ(bf->dtype(), DType::kBF16);

  EXPECT_EQ(backend_->allocate(DType::kF32, {-1, 4}).status().code(), StatusCode::kInvalidArgument);
#if !defined(__SANITIZE_ADDRESS__)
  // 2^62 bytes: aligned_alloc fails, and the backend says so instead of aborting.
  EXPECT_EQ(backend_->allocate(DType::kF32, {int64_t{1} << 40, int64_t{1} << 20}).status().code(),
            StatusCode::kOutOfMemory);
#endif
  Tensor host = random_tensor({2, 2}, 1);
  Tensor copy = backend_->to_host_f32(host);
  EXPECT_NE(copy.raw(), host.raw());
  EXPECT_EQ(values_of(copy), values_of(host));
}

}  // namespace
}  // namespace strata::compute
