// The host's logit statistics (the reference every backend matches) against sums taken here in
// long double, and the passes a query may skip.
#include "compute/logit_stats.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
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

}  // namespace
}  // namespace strata::compute
