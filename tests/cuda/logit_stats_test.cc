// GPU logit statistics for sampling against the same quantities computed on the host the way
// runtime::Sampler computes them: the first argmax, the softmax sums in double, and the best
// candidates in Sampler's order (logit descending, token ascending), ties included. Skips
// without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "cuda/cuda_test_util.h"
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
