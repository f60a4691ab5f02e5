#include "planner/profile_fit.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

namespace strata::planner {
namespace {

// Copies of 4 KiB .. 256 MiB on a link of 25 GB/s with 8 us per copy, timed with 3% noise.
std::vector<TimedCall> noisy_copies(uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> noise(1.0, 0.03);
  std::vector<TimedCall> s;
  for (double bytes = 4096; bytes <= 256.0 * 1024 * 1024; bytes *= 2)
    for (int rep = 0; rep < 3; ++rep) s.push_back({bytes, (8e-6 + bytes / 25e9) * noise(rng)});
  return s;
}

TEST(ProfileFit, RecoversTheFixedCostAndTheRateFromNoisyCopies) {
  for (uint32_t seed : {1u, 2u, 3u}) {
    auto fit = fit_fixed_plus_rate(noisy_copies(seed), "h2d copies");
    ASSERT_TRUE(fit.is_ok()) << fit.status().to_string();
    EXPECT_NEAR(fit->fixed_s, 8e-6, 0.8e-6) << seed;  // within 10%
    EXPECT_NEAR(fit->rate, 25e9, 0.03 * 25e9) << seed;
    EXPECT_LT(fit->rms_relative, 0.05);
  }
}

TEST(ProfileFit, TheFixedCostNeverGoesNegative) {
  // Pure bandwidth (no fixed cost) measured slightly fast at small sizes: a least-squares line
  // would cross below zero; the fit keeps the fixed cost at 0 and still finds the rate.
  std::vector<TimedCall> s = {{1e6, 0.9e-4}, {1e7, 1e-3}, {1e8, 1e-2}};
  auto fit = fit_fixed_plus_rate(s, "disk reads");
  ASSERT_TRUE(fit.is_ok()) << fit.status().to_string();
  EXPECT_GE(fit->fixed_s, 0);
  EXPECT_NEAR(fit->rate, 1e10, 0.06e10);
}

TEST(ProfileFit, BadSamplesAreErrorsThatSayWhichAndWhy) {
  auto message = [](const std::vector<TimedCall>& s) {
    auto r = fit_fixed_plus_rate(s, "d2h copies");
    EXPECT_FALSE(r.is_ok());
    return r.is_ok() ? std::string() : r.status().message();
  };
  EXPECT_NE(message({}).find("d2h copies: no timed calls"), std::string::npos);
  EXPECT_NE(message({{1, 1e-3}, {2, -1e-3}}).find("sample 1: the time must be a positive"), std::string::npos);
  EXPECT_NE(message({{1, 1e-3}, {std::nan(""), 2e-3}}).find("sample 1: x must be"), std::string::npos);
  EXPECT_NE(message({{1, 1e-3}, {2, std::numeric_limits<double>::infinity()}}).find("sample 1"), std::string::npos);
  EXPECT_NE(message({{-5, 1e-3}, {2, 1e-3}}).find("sample 0: x must be"), std::string::npos);
  EXPECT_NE(message({{4096, 1e-3}, {4096, 2e-3}}).find("two different sizes"), std::string::npos);
  EXPECT_NE(message({{1e3, 2e-3}, {1e6, 1e-3}}).find("do not grow"), std::string::npos);
}

TEST(ProfileFit, CpuAttentionSplitsPerCallPerSequenceAndPerByte) {
  // 40 us a call, 1.5 us a sequence, 80 GB/s of KV, with 2% noise.
  std::mt19937 rng(7);
  std::normal_distribution<double> noise(1.0, 0.02);
  std::vector<TimedAttention> s;
  for (double seqs : {1.0, 2.0, 8.0, 32.0, 128.0})
    for (double ctx : {16.0, 256.0, 2048.0}) {
      const double bytes = seqs * ctx * 4096;
      s.push_back({seqs, bytes, (40e-6 + 1.5e-6 * seqs + bytes / 80e9) * noise(rng)});
    }
  auto fit = fit_cpu_attention(s, "cpu attention, fp16 KV");
  ASSERT_TRUE(fit.is_ok()) << fit.status().to_string();
  EXPECT_NEAR(fit->fixed_us, 40, 6);
  EXPECT_NEAR(fit->per_sequence_us, 1.5, 0.5);
  EXPECT_NEAR(fit->gbps, 80, 3);
  EXPECT_FALSE(fit_cpu_attention({{0, 100, 1e-3}}, "cpu attention").is_ok());  // no sequences
  EXPECT_FALSE(fit_cpu_attention({}, "cpu attention").is_ok());
}

TEST(ProfileFit, RateCurvesArePositiveAndNeverFallAsRowsGrow) {
  // A GEMV-to-GEMM sweep with a dip at 48 rows (a worse tile shape) and noise.
  std::vector<TimedGemm> s;
  const double flops_per_row = 2.0 * 8192 * 8192;
  const double tflops[] = {1.5, 3, 6, 11, 20, 17, 40, 120, 300, 520, 600};
  const double rows[] = {1, 2, 4, 8, 16, 48, 64, 256, 1024, 4096, 8192};
  for (int i = 0; i < 11; ++i) {
    const double f = flops_per_row * rows[i];
    s.push_back({rows[i], f, f / (tflops[i] * 1e12)});
    s.push_back({rows[i], f, 1.02 * f / (tflops[i] * 1e12)});
  }
  auto curve = fit_rate_curve(s, "fp16 linear");
  ASSERT_TRUE(curve.is_ok()) << curve.status().to_string();
  ASSERT_EQ(curve->points.size(), 11u);
  for (size_t i = 0; i < curve->points.size(); ++i) {
    EXPECT_GT(curve->points[i].tflops, 0);
    if (i > 0) {
      EXPECT_GT(curve->points[i].rows, curve->points[i - 1].rows);
      EXPECT_GE(curve->points[i].tflops, curve->points[i - 1].tflops);
    }
  }
  // The dip is pooled with the point before it (time-weighted); the rest keep their rates.
  EXPECT_LT(curve->points[4].tflops, 20 / 1.0);
  EXPECT_GT(curve->points[5].tflops, 17 / 1.02);
  EXPECT_DOUBLE_EQ(curve->points[4].tflops, curve->points[5].tflops);
  EXPECT_NEAR(curve->points[10].tflops, 600 / 1.01, 3);
  // The fitted curve is one a profile accepts.
  HardwareProfile hw;
  hw.gpu.linear_fp16 = *curve;
  EXPECT_GE(hw.gpu.linear_fp16.tflops(100), hw.gpu.linear_fp16.tflops(64));

  EXPECT_FALSE(fit_rate_curve({}, "fp16 linear").is_ok());
  auto bad = fit_rate_curve({{8, 1e9, 0}}, "fp16 linear");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("fp16 linear: sample 0: the time"), std::string::npos);
}

}  // namespace
}  // namespace strata::planner
