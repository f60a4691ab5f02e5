#include "model/shapes.h"

#include <map>

#include <gtest/gtest.h>

#include "model/weight_names.h"

namespace strata::model {
namespace {

TEST(Shapes, EveryShapeLoadsWithItsLayerCount) {
  const std::map<std::string, int64_t> layers = {
      {"opt-125m", 12},   {"opt-350m", 24},    {"opt-1.3b", 24},    {"opt-2.7b", 32},
      {"opt-6.7b", 32},   {"opt-13b", 40},     {"opt-30b", 48},     {"opt-66b", 64},
      {"opt-175b", 96},   {"llama-2-7b", 32},  {"llama-2-13b", 40}, {"llama-2-70b", 80},
      {"llama-3-8b", 32}, {"llama-3-70b", 80}, {"mistral-7b", 32},  {"qwen2-7b", 28},
      {"qwen2-72b", 80},  {"qwen3-8b", 36},    {"qwen3-32b", 64},   {"qwen3-30b-a3b", 48},
      {"mixtral-8x7b", 32},
  };
  std::vector<std::string> names = named_shape_names();
  EXPECT_EQ(names.size(), layers.size());
  for (const std::string& n : names) {
    Result<ModelConfig> c = named_shape(n);
    ASSERT_TRUE(c.is_ok()) << n << ": " << c.status().to_string();
    ASSERT_TRUE(layers.count(n)) << "no expected layer count for " << n;
    EXPECT_EQ(c->num_layers, layers.at(n)) << n;
    EXPECT_FALSE(model_weights(*c).empty());
  }
}

TEST(Shapes, Opt175b) {
  Result<ModelConfig> c = named_shape("opt-175b");
  ASSERT_TRUE(c.is_ok());
  EXPECT_EQ(c->hidden_size, 12288);
  EXPECT_EQ(c->num_heads, 96);
  EXPECT_EQ(c->intermediate_size, 49152);
  EXPECT_EQ(c->vocab_size, 50272);
  EXPECT_EQ(c->max_position_embeddings, 2048);
  EXPECT_EQ(c->torch_dtype, DType::kF16);
}

TEST(Shapes, FamilyFacts) {
  EXPECT_FALSE(named_shape("opt-350m")->final_layer_norm);
  EXPECT_EQ(named_shape("opt-350m")->embed_dim(), 512);
  EXPECT_EQ(named_shape("llama-2-70b")->num_kv_heads, 8);
  EXPECT_DOUBLE_EQ(named_shape("llama-3-8b")->rope.theta, 500000.0);
  EXPECT_EQ(named_shape("mistral-7b")->sliding_window, 4096);
  EXPECT_TRUE(named_shape("qwen2-7b")->attention_qkv_bias);
  EXPECT_FALSE(named_shape("qwen2-72b")->sliding_window.has_value());
}

TEST(Shapes, MixtureOfExpertsAndQwen3Facts) {
  const ModelConfig mixtral = *named_shape("mixtral-8x7b");
  EXPECT_EQ(mixtral.model_type, "mixtral");
  EXPECT_EQ(mixtral.num_experts, 8);
  EXPECT_EQ(mixtral.experts_per_token, 2);
  EXPECT_EQ(mixtral.expert_intermediate_size, 14336);
  EXPECT_EQ(mixtral.num_kv_heads, 8);
  EXPECT_DOUBLE_EQ(mixtral.rope.theta, 1e6);
  EXPECT_FALSE(mixtral.sliding_window.has_value());
  EXPECT_EQ(mixtral.torch_dtype, DType::kBF16);
  EXPECT_TRUE(mixtral.uniform_layers());

  const ModelConfig moe = *named_shape("qwen3-30b-a3b");
  EXPECT_EQ(moe.num_experts, 128);
  EXPECT_EQ(moe.experts_per_token, 8);
  EXPECT_EQ(moe.expert_intermediate_size, 768);
  EXPECT_TRUE(moe.norm_topk_prob);
  EXPECT_EQ(moe.num_kv_heads, 4);
  EXPECT_EQ(moe.head_dim, 128);
  EXPECT_TRUE(moe.qk_norm);
  EXPECT_TRUE(moe.uniform_layers());
  EXPECT_TRUE(moe.is_sparse_layer(0));
  EXPECT_EQ(moe.max_position_embeddings, 40960);

  for (const char* dense : {"qwen3-8b", "qwen3-32b"}) {
    const ModelConfig c = *named_shape(dense);
    EXPECT_FALSE(c.is_moe()) << dense;
    EXPECT_TRUE(c.qk_norm) << dense;
    EXPECT_EQ(c.head_dim, 128) << dense;
    EXPECT_FALSE(c.tie_word_embeddings) << dense;
    EXPECT_FALSE(c.attention_qkv_bias) << dense;
    EXPECT_DOUBLE_EQ(c.norm_eps, 1e-6) << dense;
  }
  EXPECT_EQ(named_shape("qwen3-32b")->q_dim(), 8192);  // 64 heads of 128: wider than hidden (5120)
}

// Parameters by hand, then against the totals the model cards publish (within 1%).
TEST(Shapes, ParameterCountsMatchThePublishedTotals) {
  struct Case {
    const char* shape;
    int64_t exact;
    double published;
  };
  // Per layer: attention (q, k, v, o), q/k norms (qwen3), the two norms, then the MLP.
  const int64_t mixtral_layer = 2LL * 4096 * 4096 + 2LL * 1024 * 4096 + 2 * 4096 + 8 * 4096 +
                                8LL * 3 * 14336 * 4096;  // router, 8 experts
  const int64_t a3b_layer = 2LL * 4096 * 2048 + 2LL * 512 * 2048 + 2 * 128 + 2 * 2048 + 128 * 2048 +
                            128LL * 3 * 768 * 2048;  // router, 128 experts
  const int64_t q8_layer =
      2LL * 4096 * 4096 + 2LL * 1024 * 4096 + 2 * 128 + 2 * 4096 + 3LL * 12288 * 4096;
  const int64_t q32_layer =
      2LL * 8192 * 5120 + 2LL * 1024 * 5120 + 2 * 128 + 2 * 5120 + 3LL * 25600 * 5120;
  // Plus an untied embedding and head (vocab x hidden each) and the final norm.
  const Case cases[] = {
      {"mixtral-8x7b", 2LL * 32000 * 4096 + 32 * mixtral_layer + 4096, 46.7e9},  // 46,702,792,704
      {"qwen3-30b-a3b", 2LL * 151936 * 2048 + 48 * a3b_layer + 2048, 30.5e9},    // 30,532,122,624
      {"qwen3-8b", 2LL * 151936 * 4096 + 36 * q8_layer + 4096, 8.2e9},           // 8,190,735,360
      {"qwen3-32b", 2LL * 151936 * 5120 + 64 * q32_layer + 5120, 32.8e9},        // 32,762,123,264
  };
  for (const Case& c : cases) {
    const int64_t n = parameter_count(model_weights(*named_shape(c.shape)));
    EXPECT_EQ(n, c.exact) << c.shape;
    EXPECT_NEAR(static_cast<double>(n), c.published, 0.01 * c.published) << c.shape;
  }
}

TEST(Shapes, LookupIsCaseInsensitive) { EXPECT_TRUE(named_shape("OPT-6.7B").is_ok()); }

TEST(Shapes, UnknownShapeListsKnownOnes) {
  Result<ModelConfig> c = named_shape("gpt-5");
  ASSERT_FALSE(c.is_ok());
  EXPECT_EQ(c.status().code(), StatusCode::kNotFound);
  EXPECT_NE(c.status().message().find("gpt-5"), std::string::npos);
  EXPECT_NE(c.status().message().find("llama-3-70b"), std::string::npos);
}

}  // namespace
}  // namespace strata::model
