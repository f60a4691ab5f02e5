// RoPE: inverse-frequency tables (default, linear, llama3) and the rotate-half rotation.

#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <vector>

#include "compute/compute_test_util.h"

namespace strata::compute {
namespace {

using testing::BackendTest;
using testing::expect_close;
using testing::random_tensor;
using testing::values_of;

TEST(RopeTableTest, DefaultFrequencies) {
  model::RopeConfig cfg;  // theta 10000
  RopeTable t = make_rope_table(cfg, 4);
  ASSERT_EQ(t.head_dim, 4);
  ASSERT_EQ(t.inv_freq.size(), 2u);
  EXPECT_EQ(t.inv_freq[0], 1.0f);
  EXPECT_FLOAT_EQ(t.inv_freq[1], 0.01f);  // 10000^(-2/4)

  RopeTable t128 = make_rope_table(cfg, 128);
  for (int i = 0; i < 64; ++i)
    EXPECT_NEAR(t128.inv_freq[i], std::pow(10000.0, -2.0 * i / 128), 2e-7 * t128.inv_freq[i]);
}

TEST(RopeTableTest, LinearScalingDividesByFactor) {
  model::RopeConfig base_cfg;
  model::RopeConfig cfg;
  cfg.type = model::RopeType::kLinear;
  cfg.factor = 4.0;
  RopeTable base = make_rope_table(base_cfg, 64);
  RopeTable scaled = make_rope_table(cfg, 64);
  for (size_t i = 0; i < base.inv_freq.size(); ++i)
    EXPECT_EQ(scaled.inv_freq[i], base.inv_freq[i] / 4.0f);
}

TEST(RopeTableTest, Llama31Frequencies) {
  model::RopeConfig plain;
  plain.theta = 500000.0;
  model::RopeConfig cfg = plain;
  cfg.type = model::RopeType::kLlama3;
  cfg.factor = 8.0;
  cfg.low_freq_factor = 1.0;
  cfg.high_freq_factor = 4.0;
  cfg.original_max_position_embeddings = 8192;
  RopeTable base = make_rope_table(plain, 128);
  RopeTable t = make_rope_table(cfg, 128);
  ASSERT_EQ(t.inv_freq.size(), 64u);

  EXPECT_EQ(t.inv_freq[0], 1.0f);
  int high = 0, low = 0, medium = 0;
  for (size_t i = 0; i < 64; ++i) {
    const double wavelen = 2 * std::numbers::pi / base.inv_freq[i];
    if (wavelen < 8192.0 / 4) {  // high frequency: unchanged
      EXPECT_EQ(t.inv_freq[i], base.inv_freq[i]) << i;
      ++high;
    } else if (wavelen > 8192.0) {  // low frequency: divided by the factor
      EXPECT_EQ(t.inv_freq[i], base.inv_freq[i] / 8.0f) << i;
      ++low;
    } else {  // in between: strictly between the two, and on the smooth blend
      EXPECT_LT(t.inv_freq[i], base.inv_freq[i]) << i;
      EXPECT_GT(t.inv_freq[i], base.inv_freq[i] / 8.0f) << i;
      const double smooth = (8192.0 / wavelen - 1.0) / 3.0;
      const double expect = (1 - smooth) * base.inv_freq[i] / 8.0 + smooth * base.inv_freq[i];
      EXPECT_NEAR(t.inv_freq[i], expect, 1e-5 * expect) << i;
      ++medium;
    }
  }
  // The highest-index entries are the lowest frequencies.
  EXPECT_EQ(t.inv_freq[63], base.inv_freq[63] / 8.0f);
  EXPECT_GT(high, 0);
  EXPECT_GT(medium, 0);
  EXPECT_GT(low, 0);
}

using RopeTest = BackendTest;

TEST_F(RopeTest, PositionZeroIsIdentityAndOneRotatesByInvFreq) {
  model::RopeConfig cfg;
  RopeTable table = make_rope_table(cfg, 8);
  Tensor x = random_tensor({2, 3, 8}, 11);  // [T, heads, head_dim]
  auto before = values_of(x);
  std::vector<int32_t> positions = {0, 1};
  backend_->rope(x, positions, table);
  auto after = values_of(x);
  for (int h = 0; h < 3; ++h) {
    for (int i = 0; i < 8; ++i) EXPECT_EQ(after[h * 8 + i], before[h * 8 + i]);  // position 0
    const float* x0 = &before[(3 + h) * 8];
    const float* y0 = &after[(3 + h) * 8];
    for (int i = 0; i < 4; ++i) {
      const double a = table.inv_freq[i];
      EXPECT_NEAR(y0[i], x0[i] * std::cos(a) - x0[i + 4] * std::sin(a), 1e-6);
      EXPECT_NEAR(y0[i + 4], x0[i + 4] * std::cos(a) + x0[i] * std::sin(a), 1e-6);
    }
  }
}

TEST_F(RopeTest, MatchesReferenceAtScatteredPositions) {
  model::RopeConfig cfg;
  cfg.theta = 500000.0;
  for (int64_t d : {2, 6, 64, 128}) {
    RopeTable table = make_rope_table(cfg, d);
    const int64_t heads = 3;
    std::vector<int32_t> positions = {0, 5, 17, 1000, 4097, 3, 8191, 1, 2, 60, 61, 300};
    const int64_t t = static_cast<int64_t>(positions.size());
    Tensor x = random_tensor({t, heads, d}, static_cast<uint32_t>(d));
    auto before = values_of(x);
    backend_->rope(x, positions, table);
    std::vector<double> ref(before.size());
    const int64_t half = d / 2;
    for (int64_t r = 0; r < t; ++r) {
      for (int64_t h = 0; h < heads; ++h) {
        for (int64_t i = 0; i < half; ++i) {
          // The angle is the fp32 product, as in transformers; cos/sin in double.
          const double a = static_cast<float>(positions[r]) * table.inv_freq[i];
          const size_t o = (r * heads + h) * d + i;
          ref[o] = before[o] * std::cos(a) - before[o + half] * std::sin(a);
          ref[o + half] = before[o + half] * std::cos(a) + before[o] * std::sin(a);
        }
      }
    }
    expect_close(values_of(x), ref, 0, 2e-6, "rope d=" + std::to_string(d));
  }
}

TEST_F(RopeTest, RotationPreservesNorm) {
  model::RopeConfig cfg;
  RopeTable table = make_rope_table(cfg, 16);
  Tensor x = random_tensor({1, 1, 16}, 3);
  auto before = values_of(x);
  std::vector<int32_t> pos = {12345};
  backend_->rope(x, pos, table);
  auto after = values_of(x);
  double n0 = 0, n1 = 0;
  for (int i = 0; i < 16; ++i) {
    n0 += double(before[i]) * before[i];
    n1 += double(after[i]) * after[i];
  }
  EXPECT_NEAR(n0, n1, 1e-5 * n0);
}

}  // namespace
}  // namespace strata::compute
