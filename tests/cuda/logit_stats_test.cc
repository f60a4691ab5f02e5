// GPU logit statistics for sampling against the same quantities computed on the host the way
// runtime::Sampler computes them: the first argmax, the softmax sums in double, and the best
// candidates in Sampler's order (logit descending, token ascending), ties included. Skips
// without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "cuda/cuda_test_util.h"
#include "compute/logit_stats.h"
#include "cuda/logit_stats.h"

namespace strata::cuda {
namespace {

using testing::random_host;
using testing::vec_on;

TEST(LogitStats, MatchesTheHostComputation) {
  STRATA_REQUIRE_GPU();
  auto gpu = make_cuda_backend({}).value();
  const int64_t R = 5, V = 50000;
  // fp16-rounded values in a narrow range: many exact ties, as real fp16 logits have.
  Tensor host = random_host({R, V}, 3, DType::kF16, -4.0f, 4.0f);
  float* l = host.data<float>();
  l[1 * V + 10] = l[1 * V + 40000] = 9.0f;             // row 1: two equal maxima
  for (int64_t i = 0; i < V; ++i) l[2 * V + i] = 0.5f;  // row 2: all equal
  const std::vector<LogitQuery> queries = {
      {0.0f, 0}, {0.7f, 20}, {1.3f, 1024}, {0.0f, 5}, {2.0f, static_cast<int32_t>(V)}};
  auto stats = logit_stats(*gpu, vec_on(*gpu, host), queries);
  ASSERT_TRUE(stats.is_ok()) << stats.status().to_string();
  ASSERT_EQ(stats->size(), static_cast<size_t>(R));
  for (int64_t r = 0; r < R; ++r) {
    const float* x = l + r * V;
    const LogitStats& st = (*stats)[r];
    const int64_t arg = std::max_element(x, x + V) - x;
    EXPECT_EQ(st.argmax, arg) << "row " << r;
    EXPECT_EQ(st.max_logit, x[arg]);
    double sum = 0, tsum = 0;
    const double inv_t = queries[r].temperature > 0 ? 1.0 / queries[r].temperature : 0.0;
    for (int64_t i = 0; i < V; ++i) {
      sum += std::exp(static_cast<double>(x[i]) - x[arg]);
      if (inv_t > 0) tsum += std::exp(x[i] * inv_t - x[arg] * inv_t);
    }
    EXPECT_NEAR(st.log_sum, std::log(sum), 1e-12 * std::max(1.0, std::log(sum))) << "row " << r;
    if (inv_t > 0) {
      EXPECT_NEAR(st.temperature_sum, tsum, 1e-12 * tsum) << "row " << r;
    }
    std::vector<std::pair<float, int32_t>> sorted(V);
    for (int32_t i = 0; i < V; ++i) sorted[i] = {x[i], i};
    std::stable_sort(sorted.begin(), sorted.end(),
                     [](const auto& a, const auto& b) { return a.first > b.first; });
    sorted.resize(static_cast<size_t>(queries[r].candidates));
    EXPECT_EQ(st.top, sorted) << "row " << r;
  }
  EXPECT_EQ((*stats)[1].argmax, 10);
  EXPECT_EQ((*stats)[2].argmax, 0);
}

// Under a mask: the best allowed token and its logit, and the temperature sum over the allowed
// tokens, as the host reference computes them; the row's own maximum, log-sum and candidates.
TEST(LogitStats, UnderAMaskAsTheHostComputesThem) {
  STRATA_REQUIRE_GPU();
  auto gpu = make_cuda_backend({}).value();
  const int64_t R = 6, V = 128256, W = (V + 63) / 64;
  Tensor host = random_host({R, V}, 7, DType::kF16, -6.0f, 6.0f);
  float* l = host.data<float>();
  l[0 * V + 5] = 30.0f;                                     // row 0: its best refused
  l[1 * V + 1000] = l[1 * V + 90000] = 20.0f;               // row 1: the best allowed, twice
  for (int64_t i = 0; i < V; ++i) l[3 * V + i] = -INFINITY;  // row 3: all -inf
  std::vector<uint64_t> odd(static_cast<size_t>(W), 0), none(static_cast<size_t>(W), 0), sparse(static_cast<size_t>(W), 0);
  for (int64_t t = 0; t < V; ++t) {
    if (t % 2 == 0) odd[t / 64] |= uint64_t{1} << (t % 64);
    if (t % 9973 == 0) sparse[t / 64] |= uint64_t{1} << (t % 64);
  }
  std::vector<LogitQuery> queries = {{0.0f, 0}, {0.8f, 5}, {1.0f, 0}, {1.0f, 0}, {0.6f, 0}, {1.4f, 3}};
  queries[0].allowed = odd;
  queries[1].allowed = odd;
  queries[2].allowed = sparse;
  queries[3].allowed = odd;
  queries[4].allowed = none;  // row 5: no mask
  auto got = logit_stats(*gpu, vec_on(*gpu, host), queries);
  auto want = compute::logit_stats_on_host(host, queries);
  ASSERT_TRUE(got.is_ok()) << got.status().to_string();
  ASSERT_TRUE(want.is_ok()) << want.status().to_string();
  for (int64_t r = 0; r < R; ++r) {
    const LogitStats& g = (*got)[r];
    const LogitStats& w = (*want)[r];
    EXPECT_EQ(g.allowed_argmax, w.allowed_argmax) << "row " << r;
    EXPECT_EQ(g.allowed_max, w.allowed_max) << "row " << r;
    EXPECT_EQ(g.argmax, w.argmax) << "row " << r;
    EXPECT_EQ(g.max_logit, w.max_logit) << "row " << r;
    if (r != 3) {
      EXPECT_NEAR(g.log_sum, w.log_sum, 1e-12 * std::max(1.0, std::abs(w.log_sum))) << "row " << r;
    }
    if (w.temperature_sum > 0 || g.temperature_sum > 0) {
      EXPECT_NEAR(g.temperature_sum, w.temperature_sum, 1e-12 * w.temperature_sum) << "row " << r;
    }
    EXPECT_EQ(g.top, w.top) << "row " << r;
  }
  EXPECT_EQ((*got)[1].allowed_argmax, 1000);
  EXPECT_EQ((*got)[4].allowed_max, -INFINITY);
  EXPECT_EQ((*got)[4].temperature_sum, 0.0);
}

TEST(LogitStats, ReadsTheDeviceCopyOfTheLastDownload) {
  STRATA_REQUIRE_GPU();
  auto gpu = make_cuda_backend({}).value();
  const Tensor host = random_host({3, 1000}, 9, DType::kF16);
  Tensor dev = testing::on(*gpu, host);  // F16, as logits come out of the model
  Tensor down = gpu->to_host_f32(dev);
  auto stats = logit_stats(*gpu, down, std::vector<LogitQuery>(3, {0.0f, 3}));
  ASSERT_TRUE(stats.is_ok()) << stats.status().to_string();
  for (int r = 0; r < 3; ++r) {
    const float* x = host.data<float>() + r * 1000;
    EXPECT_EQ((*stats)[r].argmax, std::max_element(x, x + 1000) - x);
    EXPECT_EQ((*stats)[r].top.size(), 3u);
  }
  // Any other host tensor is not on the device: an error, not a wrong answer.
  EXPECT_FALSE(logit_stats(*gpu, host, std::vector<LogitQuery>(3)).is_ok());
  EXPECT_FALSE(logit_stats(*gpu, down, std::vector<LogitQuery>(2)).is_ok());
}

}  // namespace
}  // namespace strata::cuda
