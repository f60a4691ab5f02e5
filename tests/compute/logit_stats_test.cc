// The host's logit statistics (the reference every backend matches) against sums taken here in
// long double, and the passes a query may skip.
#include "compute/logit_stats.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <vector>

namespace strata::compute {
namespace {

long double direct_sum(const std::vector<float>& x, long double inv_t) {
  const float mx = *std::max_element(x.begin(), x.end());
  long double s = 0;
  for (float v : x) s += std::exp((static_cast<long double>(v) - mx) * inv_t);
  return s;
}

TEST(HostLogitStats, SumsAreTheRowsAndASkippedLogSumChangesNothingElse) {
  std::mt19937 rng(5);
  std::normal_distribution<float> logit(0.0f, 4.0f);
  const int64_t R = 6, V = 5000;
  std::vector<float> data(static_cast<size_t>(R * V));
  for (float& v : data) v = logit(rng);
  const Tensor t = Tensor::wrap(data.data(), DType::kF32, {R, V}, MemoryKind::kHost, nullptr);
  for (const float temperature : {0.0f, 1.0f, 0.7f, 1.6f}) {
    SCOPED_TRACE(temperature);
    std::vector<LogitQuery> all(static_cast<size_t>(R)), skipping;
    for (int64_t r = 0; r < R; ++r) all[r] = {temperature, static_cast<int32_t>(r * 3)};
    skipping = all;
    for (auto& q : skipping) q.log_sum = false;
    const auto full = logit_stats_on_host(t, all);
    const auto part = logit_stats_on_host(t, skipping);
    ASSERT_TRUE(full.is_ok() && part.is_ok());
    for (int64_t r = 0; r < R; ++r) {
      const std::vector<float> row(data.begin() + r * V, data.begin() + (r + 1) * V);
      const LogitStats& f = (*full)[r];
      const LogitStats& p = (*part)[r];
      EXPECT_NEAR(f.log_sum, static_cast<double>(std::log(direct_sum(row, 1))), 1e-12);
      if (temperature > 0) {
        const long double want = direct_sum(row, 1.0L / temperature);
        EXPECT_NEAR(f.temperature_sum / static_cast<double>(want), 1.0, 1e-12);
      } else {
        EXPECT_EQ(f.temperature_sum, 0.0);
      }
      // Skipping the log-sum leaves it 0 and the rest exactly as it was.
      EXPECT_EQ(p.log_sum, 0.0);
      EXPECT_EQ(p.argmax, f.argmax);
      EXPECT_EQ(p.max_logit, f.max_logit);
      EXPECT_EQ(p.temperature_sum, f.temperature_sum);
      EXPECT_EQ(p.top, f.top);
    }
  }
}

// A row holding a NaN is reported whether the log-sum is asked or not (the NaN where the
// maximum's scan passes over it), and its candidates are not sorted.
TEST(HostLogitStats, ARowHoldingANanIsReportedWithOrWithoutTheLogSum) {
  std::vector<float> row = {0.5f, 2.0f, -1.0f, 3.0f, 1.0f};
  row[2] = std::numeric_limits<float>::quiet_NaN();
  const Tensor t = Tensor::wrap(row.data(), DType::kF32, {1, 5}, MemoryKind::kHost, nullptr);
  for (const bool log_sum : {true, false}) {
    const LogitQuery q{0.0f, 3, log_sum};
    const auto st = logit_stats_on_host(t, {&q, 1});
    ASSERT_TRUE(st.is_ok());
    EXPECT_FALSE(std::isfinite((*st)[0].max_logit) && std::isfinite((*st)[0].log_sum)) << log_sum;
    EXPECT_TRUE((*st)[0].top.empty()) << log_sum;
  }
}

// Under a mask, a row's choosing statistics are those of its copy with the refused tokens at
// -inf (what the adjusted copy gave), term for term; its own maximum and log-sum stay the row's.
TEST(HostLogitStats, UnderAMaskTheChoosingStatisticsAreTheMaskedRows) {
  std::mt19937 rng(11);
  std::normal_distribution<float> logit(0.0f, 3.0f);
  const int64_t V = 1000, W = (V + 63) / 64;
  std::vector<float> row(static_cast<size_t>(V));
  for (float& v : row) v = logit(rng);
  row[700] = row[900] = 20.0f;  // the row's maximum, twice; refused below
  row[10] = row[30] = 15.0f;    // the best allowed, twice: the first is taken
  std::vector<uint64_t> mask(static_cast<size_t>(W), 0);
  for (int64_t t = 0; t < V; ++t)
    if (t % 3 != 2 && t != 700 && t != 900) mask[t / 64] |= uint64_t{1} << (t % 64);
  mask[10 / 64] |= uint64_t{1} << 10;
  mask[30 / 64] |= uint64_t{1} << 30;
  std::vector<float> copy(row);
  for (int64_t t = 0; t < V; ++t)
    if (((mask[t / 64] >> (t % 64)) & 1) == 0) copy[t] = -INFINITY;
  const Tensor x = Tensor::wrap(row.data(), DType::kF32, {1, V}, MemoryKind::kHost, nullptr);
  const Tensor xc = Tensor::wrap(copy.data(), DType::kF32, {1, V}, MemoryKind::kHost, nullptr);
  for (const float temperature : {0.0f, 1.0f, 0.6f}) {
    SCOPED_TRACE(temperature);
    LogitQuery q{temperature, 4};
    q.allowed = mask;
    const LogitQuery plain{temperature, 4};
    const LogitStats got = logit_stats_on_host(x, {&q, 1}).value()[0];
    const LogitStats of_row = logit_stats_on_host(x, {&plain, 1}).value()[0];
    const LogitStats of_copy = logit_stats_on_host(xc, {&plain, 1}).value()[0];
    EXPECT_EQ(got.allowed_argmax, 10);
    EXPECT_EQ(got.allowed_argmax, of_copy.argmax);
    EXPECT_EQ(got.allowed_max, of_copy.max_logit);
    EXPECT_EQ(got.temperature_sum, of_copy.temperature_sum);
    EXPECT_EQ(got.argmax, 700);
    EXPECT_EQ(got.max_logit, of_row.max_logit);
    EXPECT_EQ(got.log_sum, of_row.log_sum);
    EXPECT_EQ(got.top, of_row.top);  // the candidates are the row's (its top logprobs)
  }
  // Without a mask the choosing fields are the row's own; a mask allowing nothing leaves -inf;
  // a mask of the wrong length is named.
  const LogitQuery plain{0.5f, 0};
  const LogitStats st = logit_stats_on_host(x, {&plain, 1}).value()[0];
  EXPECT_EQ(st.allowed_argmax, st.argmax);
  EXPECT_EQ(st.allowed_max, st.max_logit);
  const std::vector<uint64_t> none(static_cast<size_t>(W), 0);
  LogitQuery q{0.5f, 0};
  q.allowed = none;
  const LogitStats refused = logit_stats_on_host(x, {&q, 1}).value()[0];
  EXPECT_EQ(refused.allowed_max, -INFINITY);
  EXPECT_EQ(refused.temperature_sum, 0.0);
  q.allowed = std::span(none).first(3);
  EXPECT_NE(logit_stats_on_host(x, {&q, 1}).status().message().find("mask of 3 words"), std::string::npos);
}

}  // namespace
}  // namespace strata::compute
