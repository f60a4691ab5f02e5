// Expert routing against hand-computed softmax top-k choices and weights.
#include "compute/expert_routing.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "compute/compute_test_util.h"

namespace strata::compute {
namespace {

using testing::tensor_from;

TEST(ExpertRouting, TopTwoOfFourRenormalisedLikeMixtral) {
  // Token 0: logits (0, ln 3, ln 2, -inf-ish): p = (1, 3, 2, ~0) / 6: experts 1 and 2, weights
  // 3/5 and 2/5 after renormalising. Token 1: logits (2, 0, 0, 1): experts 0 and 3,
  // weights e^2 / (e^2 + e) = e / (e + 1) and 1 / (e + 1).
  const float l3 = std::log(3.0f), l2 = std::log(2.0f);
  Tensor logits = tensor_from({2, 4}, {0, l3, l2, -30, 2, 0, 0, 1});
  ExpertRouting r = route_tokens(logits, 2, true);
  ASSERT_EQ(r.offsets, (std::vector<int64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(r.rows, (std::vector<int32_t>{1, 0, 0, 1}));  // expert 0: token 1; 1: 0; 2: 0; 3: 1
  const float e = std::exp(1.0f);
  EXPECT_NEAR(r.weights[0], e / (e + 1), 1e-6);
  EXPECT_NEAR(r.weights[1], 0.6f, 1e-6);
  EXPECT_NEAR(r.weights[2], 0.4f, 1e-6);
  EXPECT_NEAR(r.weights[3], 1 / (e + 1), 1e-6);
  EXPECT_EQ(r.active_experts(), 4);
}

TEST(ExpertRouting, WithoutRenormalisingTheWeightsAreTheSoftmaxOverAllExperts) {
  // logits (ln 1, ln 2, ln 3, ln 4): p = (0.1, 0.2, 0.3, 0.4); top 2 are experts 3 and 2 with
  // weights 0.4 and 0.3 as they are (qwen3_moe with norm_topk_prob false).
  Tensor logits = tensor_from({1, 4}, {0, std::log(2.0f), std::log(3.0f), std::log(4.0f)});
  ExpertRouting r = route_tokens(logits, 2, false);
  EXPECT_EQ(r.tokens_of(0), 0);
  EXPECT_EQ(r.tokens_of(1), 0);
  ASSERT_EQ(r.tokens_of(2), 1);
  ASSERT_EQ(r.tokens_of(3), 1);
  EXPECT_NEAR(r.weights_of(2)[0], 0.3f, 1e-6);
  EXPECT_NEAR(r.weights_of(3)[0], 0.4f, 1e-6);
  EXPECT_EQ(r.active_experts(), 2);
}

TEST(ExpertRouting, TiesGoToTheLowerExpertAndEveryTokenGetsKExperts) {
  Tensor logits = tensor_from({3, 3}, {1, 1, 1, 5, 5, 0, 0, 0, 0});
  ExpertRouting r = route_tokens(logits, 2, true);
  // Every token: experts 0 and 1 (equal probabilities, lower indices first), weight 1/2 each.
  EXPECT_EQ(r.tokens_of(0), 3);
  EXPECT_EQ(r.tokens_of(1), 3);
  EXPECT_EQ(r.tokens_of(2), 0);
  for (float w : r.weights) EXPECT_NEAR(w, 0.5f, 1e-6);
  EXPECT_EQ(std::vector<int32_t>(r.rows_of(0).begin(), r.rows_of(0).end()),
            (std::vector<int32_t>{0, 1, 2}));
}

TEST(ExpertRouting, AllExpertsWithKEqualToTheirNumber) {
  Tensor logits = tensor_from({1, 3}, {0, 0, std::log(2.0f)});
  ExpertRouting r = route_tokens(logits, 3, true);
  EXPECT_NEAR(r.weights_of(0)[0], 0.25f, 1e-6);
  EXPECT_NEAR(r.weights_of(1)[0], 0.25f, 1e-6);
  EXPECT_NEAR(r.weights_of(2)[0], 0.5f, 1e-6);
}

}  // namespace
}  // namespace strata::compute
