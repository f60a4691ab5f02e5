// Sampling's row adjustments, whole-row draws and value look-ups on the GPU against the host's
// reference computations (compute/logit_adjust.h): the adjusted copies bit for bit (penalties,
// subtractions, biases, refused tokens, masks, min_p), the draws token for token. Skips without a
// GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "compute/logit_adjust.h"
#include "cuda/cuda_test_util.h"

namespace strata::cuda {
namespace {

using compute::RowAdjustment;
using compute::RowDraw;
using testing::random_host;
using testing::vec_on;

std::vector<float> row_of(const Tensor& host, int64_t r) {
  const int64_t V = host.dim(1);
  return std::vector<float>(host.data<float>() + r * V, host.data<float>() + (r + 1) * V);
}

TEST(LogitAdjust, TheGpusCopiesAreTheHostsBitForBit) {
  STRATA_REQUIRE_GPU();
  auto gpu = make_cuda_backend({}).value();
  const int64_t R = 6, V = 50000;
  Tensor host = random_host({R, V}, 7, DType::kF16, -6.0f, 6.0f);
  host.data<float>()[2 * V + 5] = -INFINITY;
  const Tensor dev = vec_on(*gpu, host);
  std::mt19937 rng(3);
  std::vector<RowAdjustment> adj;
  for (int k = 0; k < 9; ++k) {
    RowAdjustment a;
    a.row = k % R;  // rows adjusted twice, differently
    std::vector<int32_t> tokens;
    for (int e = 0; e < 1 + k * 300; ++e) tokens.push_back(static_cast<int32_t>(rng() % V));
    tokens.push_back(5);
    std::sort(tokens.begin(), tokens.end());
    tokens.erase(std::unique(tokens.begin(), tokens.end()), tokens.end());
    for (int32_t t : tokens) {
      compute::TokenEdit e{t};
      if (rng() % 2) e.penalty = 1.0f + static_cast<float>(rng() % 100) / 37.0f;
      if (rng() % 2) e.subtract = static_cast<float>(rng() % 100) / 13.0f;
      if (rng() % 2) e.add = static_cast<float>(static_cast<int>(rng() % 200) - 100) / 7.0f;
      e.refuse = rng() % 10 == 0;
      a.edits.push_back(e);
    }
    if (k % 3 != 0) {
      a.allowed.assign(static_cast<size_t>((V + 63) / 64), 0);
      for (auto& w : a.allowed) w = k % 3 == 1 ? (uint64_t{rng()} << 32 | rng()) : (rng() % 4 == 0 ? ~uint64_t{0} : 0);
    }
    if (k % 2 == 1) {
      a.min_p = true;
      a.min_p_offset = 0.7f * std::log(0.02f + 0.1f * static_cast<float>(k));
    }
    adj.push_back(std::move(a));
  }
  auto got = gpu->adjust_logits(dev, adj);
  ASSERT_TRUE(got.is_ok()) << got.status().to_string();
  const Tensor back = gpu->to_host_f32(*got);
  auto want = compute::adjust_logits_on_host(host, adj);
  ASSERT_TRUE(want.is_ok()) << want.status().to_string();
  ASSERT_EQ(back.shape(), want->shape());
  for (int64_t i = 0; i < static_cast<int64_t>(adj.size()); ++i) {
    const std::vector<float> g = row_of(back, i), w = row_of(*want, i);
    int64_t differ = 0, refused = 0;
    for (int64_t t = 0; t < V; ++t) {
      differ += !(g[t] == w[t] || (std::isnan(g[t]) && std::isnan(w[t])));
      refused += w[t] == -INFINITY;
    }
    EXPECT_EQ(differ, 0) << "adjustment " << i;
    EXPECT_GT(refused, 0) << "adjustment " << i;
  }
  // The statistics of the copies, as sampling asks for them, on the device.
  std::vector<compute::LogitQuery> queries(adj.size(), {1.0f, 16});
  auto st = gpu->logit_stats(*got, queries);
  ASSERT_TRUE(st.is_ok()) << st.status().to_string();
  for (size_t i = 0; i < adj.size(); ++i) {
    const std::vector<float> w = row_of(*want, static_cast<int64_t>(i));
    EXPECT_EQ((*st)[i].argmax, std::max_element(w.begin(), w.end()) - w.begin()) << i;
  }
  // Bad arguments are named, on the device as on the host.
  RowAdjustment bad;
  bad.row = R;
  EXPECT_NE(gpu->adjust_logits(dev, {&bad, 1}).status().message().find("row 6"), std::string::npos);
  EXPECT_EQ(gpu->adjust_logits(dev, {}).value().dim(0), 0);
}

TEST(LogitAdjust, TheGpusDrawsAreTheHostsDraws) {
  STRATA_REQUIRE_GPU();
  auto gpu = make_cuda_backend({}).value();
  const int64_t R = 5, V = 128256;
  Tensor host = random_host({R, V}, 11, DType::kF16, -8.0f, 8.0f);
  float* x = host.data<float>();
  for (int64_t i = 0; i < V; ++i)
    if (i % 997 != 0) x[3 * V + i] = -INFINITY;  // row 3: a few tokens of any weight
  for (int64_t i = 0; i < V; ++i) x[4 * V + i] = -INFINITY;  // row 4: none
  const Tensor dev = vec_on(*gpu, host);
  std::mt19937_64 rng(5);
  std::vector<RowDraw> draws;
  for (int d = 0; d < 400; ++d) {
    RowDraw r;
    r.row = d % 4;
    r.temperature = 0.4f + static_cast<float>(d % 7) / 4.0f;
    const float* row = x + r.row * V;
    r.max_logit = *std::max_element(row, row + V);
    double sum = 0;
    for (int64_t i = 0; i < V; ++i) sum += std::exp(row[i] * (1.0 / r.temperature) - r.max_logit * (1.0 / r.temperature));
    r.target = static_cast<double>(rng() >> 11) * 0x1.0p-53 * sum;
    if (d % 50 == 3) r.target = sum * 2;  // past the sum: the last token of any weight
    draws.push_back(r);
  }
  draws.push_back({4, 1.0f, 0.0f, 0.5});
  // Every other draw under a mask of every other token but the row's best (the draw over the row
  // with the rest at -inf), its target within the allowed tokens' sum.
  std::vector<uint64_t> even(static_cast<size_t>((V + 63) / 64), 0);
  for (int64_t t = 0; t < V; t += 2) even[t / 64] |= uint64_t{1} << (t % 64);
  for (size_t d = 1; d + 1 < draws.size(); d += 2) {
    RowDraw& r = draws[d];
    if (r.row == 3) continue;
    r.allowed = even;
    const float* row = x + r.row * V;
    double sum = 0;
    for (int64_t i = 0; i < V; i += 2) sum += std::exp(row[i] * (1.0 / r.temperature) - r.max_logit * (1.0 / r.temperature));
    r.target = static_cast<double>(rng() >> 11) * 0x1.0p-53 * sum;
  }
  auto got = gpu->draw_tokens(dev, draws);
  ASSERT_TRUE(got.is_ok()) << got.status().to_string();
  for (size_t d = 0; d < draws.size(); ++d) {
    const std::span<const float> row{x + draws[d].row * V, static_cast<size_t>(V)};
    const int32_t token = (*got)[d].token;
    EXPECT_EQ(token, compute::draw_in_row(row, draws[d])) << "draw " << d << " row " << draws[d].row;
    EXPECT_EQ((*got)[d].logit, row[static_cast<size_t>(token)]) << "draw " << d;
    if (!draws[d].allowed.empty()) EXPECT_EQ(token % 2, 0) << "draw " << d;
  }
  EXPECT_EQ((*got).back().token, 0);
  EXPECT_EQ((*got)[3].token, (V - 1) / 997 * 997);  // row 3 past its sum
}

TEST(LogitAdjust, TheGpusValuesAreTheRowsValues) {
  STRATA_REQUIRE_GPU();
  auto gpu = make_cuda_backend({}).value();
  const int64_t R = 3, V = 1000;
  const Tensor host = random_host({R, V}, 2, DType::kF32);
  const Tensor dev = vec_on(*gpu, host);
  std::vector<std::pair<int64_t, int32_t>> at;
  for (int i = 0; i < 700; ++i) at.emplace_back(i % R, (i * 37) % V);
  auto got = gpu->logit_values(dev, at);
  ASSERT_TRUE(got.is_ok()) << got.status().to_string();
  for (size_t i = 0; i < at.size(); ++i) EXPECT_EQ((*got)[i], host.data<float>()[at[i].first * V + at[i].second]);
  const std::pair<int64_t, int32_t> outside{R, 0};
  EXPECT_FALSE(gpu->logit_values(dev, {&outside, 1}).is_ok());
}

}  // namespace
}  // namespace strata::cuda
