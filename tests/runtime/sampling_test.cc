#include "runtime/sampling.h"

#include <cmath>
#include <map>
#include <vector>

#include <gtest/gtest.h>

namespace strata::runtime {
namespace {

const std::vector<float> kLogits = {1.0f, 3.0f, 2.0f, 0.5f, 2.5f};  // order: 1, 4, 2, 0, 3

std::vector<double> softmax(const std::vector<float>& l, double t) {
  std::vector<double> p(l.size());
  double mx = *std::max_element(l.begin(), l.end()), sum = 0;
  for (size_t i = 0; i < l.size(); ++i) sum += p[i] = std::exp((l[i] - mx) / t);
  for (auto& v : p) v /= sum;
  return p;
}

std::map<int, double> frequencies(const SamplingParams& params, int draws) {
  Sampler s(params);
  std::map<int, double> f;
  for (int i = 0; i < draws; ++i) f[s.sample(kLogits).token] += 1.0 / draws;
  return f;
}

TEST(Sampling, GreedyPicksArgmaxWithItsLogprob) {
  Sampler s(SamplingParams{});
  Sample out = s.sample(kLogits);
  EXPECT_EQ(out.token, 1);
  EXPECT_NEAR(out.logprob, std::log(softmax(kLogits, 1.0)[1]), 1e-6);
}

TEST(Sampling, TopKOfOneIsGreedy) {
  SamplingParams p{1.0f, 1, 1.0f, 7};
  EXPECT_TRUE(p.greedy());
  for (int i = 0; i < 20; ++i) EXPECT_EQ(Sampler(p).sample(kLogits).token, 1);
}

TEST(Sampling, TemperatureSamplingFollowsSoftmax) {
  const int kDraws = 200000;
  auto f = frequencies({0.7f, 0, 1.0f, 42}, kDraws);
  auto p = softmax(kLogits, 0.7);
  for (int t = 0; t < 5; ++t) EXPECT_NEAR(f[t], p[t], 4 * std::sqrt(p[t] / kDraws) + 1e-3) << t;
}

TEST(Sampling, TopKRenormalisesOverTheKBest) {
  const int kDraws = 200000;
  auto f = frequencies({1.0f, 2, 1.0f, 3}, kDraws);
  double z = std::exp(3.0) + std::exp(2.5);
  EXPECT_NEAR(f[1], std::exp(3.0) / z, 0.005);
  EXPECT_NEAR(f[4], std::exp(2.5) / z, 0.005);
  EXPECT_EQ(f.count(0) + f.count(2) + f.count(3), 0u);
}

TEST(Sampling, TopPKeepsTheSmallestPrefixReachingP) {
  auto p = softmax(kLogits, 1.0);
  // p[1] ~ 0.41, p[4] ~ 0.25, p[2] ~ 0.15: top_p 0.6 keeps tokens 1 and 4 only.
  ASSERT_LT(p[1], 0.6);
  ASSERT_GT(p[1] + p[4], 0.6);
  const int kDraws = 200000;
  auto f = frequencies({1.0f, 0, 0.6f, 5}, kDraws);
  EXPECT_NEAR(f[1], p[1] / (p[1] + p[4]), 0.005);
  EXPECT_NEAR(f[4], p[4] / (p[1] + p[4]), 0.005);
  EXPECT_EQ(f.size(), 2u);
  // A tiny top_p still keeps the best token.
  auto g = frequencies({1.0f, 0, 0.01f, 5}, 1000);
  EXPECT_EQ(g.size(), 1u);
  EXPECT_DOUBLE_EQ(g[1], 1.0);
}

TEST(Sampling, SameSeedSameTokensDifferentSeedDifferent) {
  SamplingParams a{1.0f, 0, 1.0f, 1}, b{1.0f, 0, 1.0f, 2};
  Sampler s1(a), s2(a), s3(b);
  std::vector<int> x, y, z;
  for (int i = 0; i < 64; ++i) {
    x.push_back(s1.sample(kLogits).token);
    y.push_back(s2.sample(kLogits).token);
    z.push_back(s3.sample(kLogits).token);
  }
  EXPECT_EQ(x, y);
  EXPECT_NE(x, z);
}

TEST(Sampling, ValidateNamesTheField) {
  EXPECT_NE(SamplingParams({-1.0f, 0, 1.0f, 0}).validate().message().find("temperature"), std::string::npos);
  EXPECT_NE(SamplingParams({1.0f, -2, 1.0f, 0}).validate().message().find("top_k"), std::string::npos);
  EXPECT_NE(SamplingParams({1.0f, 0, 0.0f, 0}).validate().message().find("top_p"), std::string::npos);
  EXPECT_NE(SamplingParams({1.0f, 0, 1.5f, 0}).validate().message().find("top_p"), std::string::npos);
  EXPECT_TRUE(SamplingParams({1.0f, 0, 1.0f, 0}).validate().is_ok());
}

}  // namespace
}  // namespace strata::runtime
