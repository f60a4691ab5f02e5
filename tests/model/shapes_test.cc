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
      {"qwen2-72b", 80},
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
