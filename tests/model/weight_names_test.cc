#include "model/weight_names.h"

#include <algorithm>
#include <map>
#include <set>

#include <gtest/gtest.h>

#include "model/shapes.h"

namespace strata::model {
namespace {

ModelConfig shape(const char* name) {
  Result<ModelConfig> c = named_shape(name);
  EXPECT_TRUE(c.is_ok()) << c.status().to_string();
  return c.is_ok() ? c.value() : ModelConfig{};
}

const WeightSpec* find(const std::vector<WeightSpec>& specs, const std::string& name) {
  auto it =
      std::find_if(specs.begin(), specs.end(), [&](const WeightSpec& s) { return s.name == name; });
  return it == specs.end() ? nullptr : &*it;
}

// Published parameter counts (Hugging Face model pages / safetensors metadata): references we did
// not compute ourselves.
TEST(WeightNames, ParameterCountsMatchPublishedCounts) {
  const std::map<std::string, int64_t> published = {
      {"opt-125m", 125'239'296},       {"opt-350m", 331'196'416},
      {"opt-1.3b", 1'315'758'080},     {"opt-2.7b", 2'651'596'800},
      {"opt-6.7b", 6'658'473'984},     {"opt-13b", 12'853'473'280},
      {"llama-2-7b", 6'738'415'616},   {"llama-2-13b", 13'015'864'320},
      {"llama-2-70b", 68'976'648'192}, {"llama-3-8b", 8'030'261'248},
      {"llama-3-70b", 70'553'706'496}, {"mistral-7b", 7'241'732'096},
      {"qwen2-7b", 7'615'616'512},     {"qwen2-72b", 72'706'203'648},
  };
  for (const auto& [name, count] : published) {
    EXPECT_EQ(parameter_count(model_weights(shape(name.c_str()))), count) << name;
  }
}

TEST(WeightNames, CountsEachTensorOnce) {
  std::vector<WeightSpec> specs = {{"a", {"x"}, {2, 3}, {}}, {"a", {"x"}, {2, 3}, {}}, {"b", {"y"}, {4}, {}}};
  EXPECT_EQ(parameter_count(specs), 10);
}

TEST(WeightNames, NamesAreUniqueAndShapesPositive) {
  for (const std::string& n : named_shape_names()) {
    std::set<std::string> names, hf;
    for (const WeightSpec& s : model_weights(shape(n.c_str()))) {
      EXPECT_TRUE(names.insert(s.name).second) << n << " " << s.name;
      ASSERT_FALSE(s.hf_names.empty()) << s.name;
      EXPECT_TRUE(hf.insert(s.hf_names[0]).second) << n << " " << s.hf_names[0];
      for (int64_t d : s.shape) EXPECT_GT(d, 0) << s.name;
    }
  }
}

TEST(WeightNames, OptPreLayerNorm) {
  ModelConfig c = shape("opt-125m");
  std::vector<WeightSpec> w = model_weights(c);
  ASSERT_FALSE(w.empty());
  EXPECT_EQ(w.front().name, "embed.tokens");
  EXPECT_EQ(w.front().hf_names, (std::vector<std::string>{"model.decoder.embed_tokens.weight",
                                                          "decoder.embed_tokens.weight"}));
  EXPECT_EQ(w.front().shape, (Shape{50272, 768}));
  const WeightSpec* pos = find(w, "embed.positions");
  ASSERT_NE(pos, nullptr);
  EXPECT_EQ(pos->shape, (Shape{2050, 768}));
  EXPECT_EQ(pos->hf_names[0], "model.decoder.embed_positions.weight");
  EXPECT_EQ(find(w, "embed.project_in"), nullptr);
  EXPECT_EQ(find(w, "lm_head.weight"), nullptr);  // tied
  const WeightSpec* fn = find(w, "final_norm.bias");
  ASSERT_NE(fn, nullptr);
  EXPECT_EQ(fn->hf_names[0], "model.decoder.final_layer_norm.bias");
  EXPECT_EQ(w.back().name, "final_norm.bias");

  std::vector<WeightSpec> l3 = layer_weights(c, 3);
  std::vector<std::string> names;
  for (const auto& s : l3) names.push_back(s.name);
  EXPECT_EQ(names,
            (std::vector<std::string>{
                "layers.3.attn_norm.weight", "layers.3.attn_norm.bias", "layers.3.q.weight",
                "layers.3.q.bias", "layers.3.k.weight", "layers.3.k.bias", "layers.3.v.weight",
                "layers.3.v.bias", "layers.3.o.weight", "layers.3.o.bias",
                "layers.3.mlp_norm.weight", "layers.3.mlp_norm.bias", "layers.3.fc1.weight",
                "layers.3.fc1.bias", "layers.3.fc2.weight", "layers.3.fc2.bias"}));
  EXPECT_EQ(l3[0].hf_names,
            (std::vector<std::string>{"model.decoder.layers.3.self_attn_layer_norm.weight",
                                      "decoder.layers.3.self_attn_layer_norm.weight"}));
  EXPECT_EQ(find(l3, "layers.3.o.weight")->hf_names[0],
            "model.decoder.layers.3.self_attn.out_proj.weight");
  EXPECT_EQ(find(l3, "layers.3.mlp_norm.bias")->hf_names[0],
            "model.decoder.layers.3.final_layer_norm.bias");
  EXPECT_EQ(find(l3, "layers.3.fc1.weight")->shape, (Shape{3072, 768}));
  EXPECT_EQ(find(l3, "layers.3.fc2.weight")->shape, (Shape{768, 3072}));
}

TEST(WeightNames, OptPostLayerNormProjects) {
  ModelConfig c = shape("opt-350m");
  std::vector<WeightSpec> w = model_weights(c);
  EXPECT_EQ(find(w, "embed.tokens")->shape, (Shape{50272, 512}));
  EXPECT_EQ(find(w, "embed.project_in")->shape, (Shape{1024, 512}));
  EXPECT_EQ(find(w, "embed.project_in")->hf_names[0], "model.decoder.project_in.weight");
  EXPECT_EQ(find(w, "embed.project_out")->shape, (Shape{512, 1024}));
  EXPECT_EQ(find(w, "final_norm.weight"), nullptr);
  EXPECT_EQ(w.back().name, "embed.project_out");

  c.tie_word_embeddings = false;
  std::vector<WeightSpec> untied = model_weights(c);
  const WeightSpec* head = find(untied, "lm_head.weight");
  ASSERT_NE(head, nullptr);
  EXPECT_EQ(head->shape, (Shape{50272, 512}));
  EXPECT_EQ(head->hf_names, std::vector<std::string>{"lm_head.weight"});
}

TEST(WeightNames, OptWithoutBiasOrAffineNorms) {
  ModelConfig c = shape("opt-125m");
  c.enable_bias = false;
  c.layer_norm_elementwise_affine = false;
  std::vector<WeightSpec> l0 = layer_weights(c, 0);
  EXPECT_EQ(l0.size(), 6u);  // q k v o fc1 fc2 weights only
  for (const auto& s : l0) EXPECT_EQ(s.name.find("bias"), std::string::npos) << s.name;
  EXPECT_EQ(find(model_weights(c), "final_norm.weight"), nullptr);
}

TEST(WeightNames, Llama) {
  ModelConfig c = shape("llama-2-70b");
  std::vector<WeightSpec> w = model_weights(c);
  EXPECT_EQ(w.size(), size_t(1 + 80 * 9 + 1 + 1));
  EXPECT_EQ(w.front().hf_names, std::vector<std::string>{"model.embed_tokens.weight"});
  EXPECT_EQ(w.back().name, "lm_head.weight");
  EXPECT_EQ(w.back().shape, (Shape{32000, 8192}));
  EXPECT_EQ(find(w, "final_norm.weight")->hf_names[0], "model.norm.weight");
  std::vector<WeightSpec> l = layer_weights(c, 79);
  EXPECT_EQ(find(l, "layers.79.attn_norm.weight")->hf_names[0],
            "model.layers.79.input_layernorm.weight");
  EXPECT_EQ(find(l, "layers.79.q.weight")->shape, (Shape{8192, 8192}));
  EXPECT_EQ(find(l, "layers.79.k.weight")->shape, (Shape{1024, 8192}));
  EXPECT_EQ(find(l, "layers.79.v.weight")->hf_names[0], "model.layers.79.self_attn.v_proj.weight");
  EXPECT_EQ(find(l, "layers.79.o.weight")->hf_names[0], "model.layers.79.self_attn.o_proj.weight");
  EXPECT_EQ(find(l, "layers.79.mlp_norm.weight")->hf_names[0],
            "model.layers.79.post_attention_layernorm.weight");
  EXPECT_EQ(find(l, "layers.79.gate.weight")->shape, (Shape{28672, 8192}));
  EXPECT_EQ(find(l, "layers.79.up.weight")->hf_names[0], "model.layers.79.mlp.up_proj.weight");
  EXPECT_EQ(find(l, "layers.79.down.weight")->shape, (Shape{8192, 28672}));
  EXPECT_EQ(find(l, "layers.79.q.bias"), nullptr);

  c.attention_qkv_bias = c.attention_out_bias = c.mlp_bias = true;
  l = layer_weights(c, 0);
  EXPECT_EQ(find(l, "layers.0.o.bias")->shape, (Shape{8192}));
  EXPECT_EQ(find(l, "layers.0.k.bias")->shape, (Shape{1024}));
  EXPECT_EQ(find(l, "layers.0.down.bias")->hf_names[0], "model.layers.0.mlp.down_proj.bias");
}

TEST(WeightNames, Qwen2BiasOnQkvOnly) {
  ModelConfig c = shape("qwen2-7b");
  std::vector<WeightSpec> l = layer_weights(c, 0);
  EXPECT_EQ(find(l, "layers.0.q.bias")->shape, (Shape{3584}));
  EXPECT_EQ(find(l, "layers.0.k.bias")->shape, (Shape{512}));
  EXPECT_EQ(find(l, "layers.0.v.bias")->hf_names[0], "model.layers.0.self_attn.v_proj.bias");
  EXPECT_EQ(find(l, "layers.0.o.bias"), nullptr);
  c.tie_word_embeddings = true;  // like Qwen2-0.5B
  EXPECT_EQ(find(model_weights(c), "lm_head.weight"), nullptr);
}

TEST(WeightNames, ExplicitHeadDimShapes) {
  ModelConfig c = shape("llama-3-8b");
  c.hidden_size = 5120;
  c.head_dim = 128;  // q_dim 4096 != hidden
  std::vector<WeightSpec> l = layer_weights(c, 0);
  EXPECT_EQ(find(l, "layers.0.q.weight")->shape, (Shape{4096, 5120}));
  EXPECT_EQ(find(l, "layers.0.o.weight")->shape, (Shape{5120, 4096}));
}

TEST(WeightNames, LayerWeightName) {
  EXPECT_EQ(layer_weight_name(3, "q.weight"), "layers.3.q.weight");
}

TEST(WeightNames, ModelWeightsIsConcatenationOfLayers) {
  ModelConfig c = shape("mistral-7b");
  std::vector<WeightSpec> w = model_weights(c);
  size_t layer_specs = 0;
  for (int64_t i = 0; i < c.num_layers; ++i) layer_specs += layer_weights(c, i).size();
  EXPECT_EQ(w.size(), layer_specs + 3);  // embed.tokens, final_norm, lm_head
  EXPECT_EQ(w[1].name, "layers.0.attn_norm.weight");
}

ModelConfig tiny_moe(const char* type) {
  ModelConfig c;
  c.model_type = type;
  c.family = Family::kLlama;
  c.vocab_size = 100;
  c.hidden_size = 64;
  c.intermediate_size = 96;
  c.num_layers = 3;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  c.num_experts = 4;
  c.experts_per_token = 2;
  c.expert_intermediate_size = 32;
  return c;
}

TEST(WeightNames, MixtralExpertsUnderBlockSparseMoeOrFused) {
  ModelConfig c = tiny_moe("mixtral");
  std::vector<WeightSpec> l = layer_weights(c, 1);
  // norm, q, k, v, o, norm, router, 4 experts x 3 matrices
  EXPECT_EQ(l.size(), size_t(6 + 1 + 4 * 3));
  const WeightSpec* router = find(l, "layers.1.router.weight");
  ASSERT_NE(router, nullptr);
  EXPECT_EQ(router->shape, (Shape{4, 64}));
  EXPECT_EQ(router->hf_names, (std::vector<std::string>{"model.layers.1.block_sparse_moe.gate.weight",
                                                        "model.layers.1.mlp.gate.weight"}));
  const WeightSpec* gate = find(l, "layers.1.experts.3.gate.weight");
  const WeightSpec* up = find(l, "layers.1.experts.3.up.weight");
  const WeightSpec* down = find(l, "layers.1.experts.3.down.weight");
  ASSERT_TRUE(gate && up && down);
  EXPECT_EQ(gate->hf_names[0], "model.layers.1.block_sparse_moe.experts.3.w1.weight");
  EXPECT_EQ(up->hf_names[0], "model.layers.1.block_sparse_moe.experts.3.w3.weight");
  EXPECT_EQ(down->hf_names[0], "model.layers.1.block_sparse_moe.experts.3.w2.weight");
  EXPECT_EQ(gate->shape, (Shape{32, 64}));
  EXPECT_EQ(down->shape, (Shape{64, 32}));
  // Fused: gate rows first, then up, of expert 3's [2 * ffn, hidden] matrix.
  ASSERT_EQ(gate->slices.size(), 1u);
  EXPECT_EQ(gate->slices[0].hf_name, "model.layers.1.mlp.experts.gate_up_proj");
  EXPECT_EQ(gate->slices[0].stored_shape, (Shape{4, 64, 64}));
  EXPECT_EQ(gate->slices[0].index, 3);
  EXPECT_EQ(gate->slices[0].row_begin, 0);
  EXPECT_EQ(up->slices[0].row_begin, 32);
  EXPECT_EQ(down->slices[0].hf_name, "model.layers.1.mlp.experts.down_proj");
  EXPECT_EQ(down->slices[0].stored_shape, (Shape{4, 64, 32}));
  EXPECT_EQ(find(l, "layers.1.gate.weight"), nullptr);  // no dense MLP
}

TEST(WeightNames, Qwen3MoeDenseAndSparseLayersAndQkNorms) {
  ModelConfig c = tiny_moe("qwen3_moe");
  c.qk_norm = true;
  c.dense_layers = {1};
  std::vector<WeightSpec> sparse = layer_weights(c, 0), dense = layer_weights(c, 1);
  EXPECT_EQ(find(sparse, "layers.0.q_norm.weight")->hf_names[0], "model.layers.0.self_attn.q_norm.weight");
  EXPECT_EQ(find(sparse, "layers.0.k_norm.weight")->shape, (Shape{16}));
  EXPECT_EQ(find(sparse, "layers.0.router.weight")->hf_names,
            std::vector<std::string>{"model.layers.0.mlp.gate.weight"});
  EXPECT_EQ(find(sparse, "layers.0.experts.2.up.weight")->hf_names[0],
            "model.layers.0.mlp.experts.2.up_proj.weight");
  EXPECT_EQ(find(sparse, "layers.0.experts.2.down.weight")->hf_names[0],
            "model.layers.0.mlp.experts.2.down_proj.weight");
  EXPECT_EQ(find(dense, "layers.1.router.weight"), nullptr);
  EXPECT_EQ(find(dense, "layers.1.gate.weight")->shape, (Shape{96, 64}));
  // Parameters: the embedding and head (2 x 100 x 64), the final norm (64), three layers of
  // attention (q 64x64, k 32x64, v 32x64, o 64x64 = 12288, two norms 128, q/k norms 32), two
  // sparse MLPs (router 4x64 + 4 experts x 3 x 32x64 = 24832) and one dense (3 x 96x64 = 18432).
  EXPECT_EQ(parameter_count(model_weights(c)),
            2 * 6400 + 64 + 3 * (12288 + 128 + 32) + 2 * 24832 + 18432);
}

}  // namespace
}  // namespace strata::model
