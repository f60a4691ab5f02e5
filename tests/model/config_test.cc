#include "model/config.h"

#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "testing/test_data.h"

namespace strata::model {
namespace {

using nlohmann::json;

ModelConfig parse_ok(const json& j) {
  Result<ModelConfig> r = parse_config(j, "config.json");
  EXPECT_TRUE(r.is_ok()) << r.status().to_string();
  return r.is_ok() ? r.value() : ModelConfig{};
}

Status parse_err(const json& j) {
  Result<ModelConfig> r = parse_config(j, "config.json");
  EXPECT_FALSE(r.is_ok());
  return r.status();
}

// Asserts the error mentions the source and every fragment.
void expect_mentions(const Status& s, std::initializer_list<const char*> fragments) {
  EXPECT_NE(s.message().find("config.json"), std::string::npos) << s.message();
  for (const char* f : fragments) EXPECT_NE(s.message().find(f), std::string::npos) << s.message();
}

json opt_125m() {
  return json::parse(R"({
    "_remove_final_layer_norm": false, "activation_function": "relu",
    "architectures": ["OPTForCausalLM"], "bos_token_id": 2, "do_layer_norm_before": true,
    "eos_token_id": 2, "ffn_dim": 3072, "hidden_size": 768, "max_position_embeddings": 2048,
    "model_type": "opt", "num_attention_heads": 12, "num_hidden_layers": 12, "pad_token_id": 1,
    "torch_dtype": "float16", "vocab_size": 50272, "word_embed_proj_dim": 768})");
}

json llama31_8b() {
  return json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "attention_bias": false, "bos_token_id": 128000,
    "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu", "hidden_size": 4096,
    "intermediate_size": 14336, "max_position_embeddings": 131072, "mlp_bias": false,
    "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32,
    "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
    "vocab_size": 128256})");
}

TEST(Config, OptPreLayerNorm) {
  ModelConfig c = parse_ok(opt_125m());
  EXPECT_EQ(c.family, Family::kOpt);
  EXPECT_EQ(c.model_type, "opt");
  EXPECT_EQ(c.vocab_size, 50272);
  EXPECT_EQ(c.hidden_size, 768);
  EXPECT_EQ(c.intermediate_size, 3072);
  EXPECT_EQ(c.num_layers, 12);
  EXPECT_EQ(c.num_heads, 12);
  EXPECT_EQ(c.num_kv_heads, 12);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.max_position_embeddings, 2048);
  EXPECT_EQ(c.embed_dim(), 768);
  EXPECT_TRUE(c.do_layer_norm_before);
  EXPECT_TRUE(c.final_layer_norm);
  EXPECT_TRUE(c.enable_bias);
  EXPECT_TRUE(c.layer_norm_elementwise_affine);
  EXPECT_TRUE(c.tie_word_embeddings);  // OPT's default
  EXPECT_DOUBLE_EQ(c.norm_eps, 1e-5);
  EXPECT_EQ(c.bos_token_id, 2);
  EXPECT_EQ(c.pad_token_id, 1);
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>{2});
  EXPECT_TRUE(c.is_eos(2));
  EXPECT_FALSE(c.is_eos(1));
  EXPECT_EQ(c.torch_dtype, DType::kF16);
}

TEST(Config, OptPostLayerNormWithProjection) {
  json j = opt_125m();  // opt-350m's shape
  j["do_layer_norm_before"] = false;
  j["hidden_size"] = 1024;
  j["ffn_dim"] = 4096;
  j["num_attention_heads"] = 16;
  j["num_hidden_layers"] = 24;
  j["word_embed_proj_dim"] = 512;
  ModelConfig c = parse_ok(j);
  EXPECT_FALSE(c.do_layer_norm_before);
  EXPECT_FALSE(c.final_layer_norm);  // post-LN OPT has no final LayerNorm
  EXPECT_EQ(c.word_embed_proj_dim, 512);
  EXPECT_EQ(c.embed_dim(), 512);
  EXPECT_EQ(c.head_dim, 64);
}

TEST(Config, OptOptionalFlags) {
  json j = opt_125m();
  j["_remove_final_layer_norm"] = true;
  j["enable_bias"] = false;
  j["layer_norm_elementwise_affine"] = false;
  j["tie_word_embeddings"] = false;
  j.erase("word_embed_proj_dim");
  j.erase("torch_dtype");
  ModelConfig c = parse_ok(j);
  EXPECT_FALSE(c.final_layer_norm);
  EXPECT_FALSE(c.enable_bias);
  EXPECT_FALSE(c.layer_norm_elementwise_affine);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.word_embed_proj_dim, 768);
  EXPECT_EQ(c.torch_dtype, DType::kF32);
}

TEST(Config, OptRejectsOtherActivations) {
  json j = opt_125m();
  j["activation_function"] = "gelu";
  Status s = parse_err(j);
  EXPECT_EQ(s.code(), StatusCode::kUnsupported);
  expect_mentions(s, {"'activation_function'", "gelu", "relu"});
}

TEST(Config, Llama3RopeScalingClassic) {
  ModelConfig c = parse_ok(llama31_8b());
  EXPECT_EQ(c.family, Family::kLlama);
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.q_dim(), 4096);
  EXPECT_EQ(c.kv_dim(), 1024);
  EXPECT_EQ(c.rope.type, RopeType::kLlama3);
  EXPECT_DOUBLE_EQ(c.rope.theta, 500000.0);
  EXPECT_DOUBLE_EQ(c.rope.factor, 8.0);
  EXPECT_DOUBLE_EQ(c.rope.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(c.rope.high_freq_factor, 4.0);
  EXPECT_EQ(c.rope.original_max_position_embeddings, 8192);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{128001, 128008, 128009}));
  EXPECT_TRUE(c.is_eos(128009));
  EXPECT_EQ(c.bos_token_id, 128000);
  EXPECT_FALSE(c.pad_token_id.has_value());
  EXPECT_FALSE(c.attention_qkv_bias);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_DOUBLE_EQ(c.norm_eps, 1e-5);
  EXPECT_EQ(c.torch_dtype, DType::kBF16);
  EXPECT_FALSE(c.sliding_window.has_value());
}

TEST(Config, Llama3RopeParametersTransformers5) {
  json j = llama31_8b();
  j.erase("rope_scaling");
  j.erase("rope_theta");
  j.erase("torch_dtype");
  j["dtype"] = "bfloat16";
  j["rope_parameters"] = json::parse(R"({"rope_theta": 500000.0, "rope_type": "llama3",
      "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
      "original_max_position_embeddings": 8192})");
  ModelConfig c = parse_ok(j);
  ModelConfig classic = parse_ok(llama31_8b());
  EXPECT_EQ(c.rope.type, classic.rope.type);
  EXPECT_DOUBLE_EQ(c.rope.theta, classic.rope.theta);
  EXPECT_DOUBLE_EQ(c.rope.factor, classic.rope.factor);
  EXPECT_DOUBLE_EQ(c.rope.low_freq_factor, classic.rope.low_freq_factor);
  EXPECT_DOUBLE_EQ(c.rope.high_freq_factor, classic.rope.high_freq_factor);
  EXPECT_EQ(c.rope.original_max_position_embeddings, classic.rope.original_max_position_embeddings);
  EXPECT_EQ(c.torch_dtype, DType::kBF16);
}

TEST(Config, RopeParametersDefaultType) {
  json j = llama31_8b();
  j.erase("rope_scaling");
  j["rope_parameters"] = {{"rope_theta", 1e6}};
  ModelConfig c = parse_ok(j);
  EXPECT_EQ(c.rope.type, RopeType::kDefault);
  EXPECT_DOUBLE_EQ(c.rope.theta, 1e6);
}

TEST(Config, LinearRopeScalingWithLegacyTypeKey) {
  json j = llama31_8b();
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 4.0}};
  j.erase("rope_theta");
  ModelConfig c = parse_ok(j);
  EXPECT_EQ(c.rope.type, RopeType::kLinear);
  EXPECT_DOUBLE_EQ(c.rope.factor, 4.0);
  EXPECT_DOUBLE_EQ(c.rope.theta, 10000.0);
}

TEST(Config, NullRopeScalingIsDefault) {
  json j = llama31_8b();
  j["rope_scaling"] = nullptr;
  EXPECT_EQ(parse_ok(j).rope.type, RopeType::kDefault);
}

TEST(Config, LlamaAttentionAndMlpBias) {
  json j = llama31_8b();
  j["attention_bias"] = true;
  j["mlp_bias"] = true;
  ModelConfig c = parse_ok(j);
  EXPECT_TRUE(c.attention_qkv_bias);
  EXPECT_TRUE(c.attention_out_bias);
  EXPECT_TRUE(c.mlp_bias);
}

TEST(Config, Qwen2BiasAndTiedEmbeddings) {
  // Qwen2-0.5B's config.json.
  json j = json::parse(R"({
    "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
    "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 896,
    "intermediate_size": 4864, "max_position_embeddings": 131072, "max_window_layers": 24,
    "model_type": "qwen2", "num_attention_heads": 14, "num_hidden_layers": 24,
    "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
    "sliding_window": 131072, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
    "use_cache": true, "use_sliding_window": false, "vocab_size": 151936})");
  ModelConfig c = parse_ok(j);
  EXPECT_EQ(c.model_type, "qwen2");
  EXPECT_TRUE(c.attention_qkv_bias);
  EXPECT_FALSE(c.attention_out_bias);
  EXPECT_FALSE(c.mlp_bias);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.kv_dim(), 128);
  EXPECT_FALSE(c.sliding_window.has_value());  // use_sliding_window is false
  EXPECT_DOUBLE_EQ(c.norm_eps, 1e-6);
  EXPECT_DOUBLE_EQ(c.rope.theta, 1e6);

  j["use_sliding_window"] = true;
  c = parse_ok(j);
  EXPECT_EQ(c.sliding_window, 131072);
  EXPECT_EQ(c.first_sliding_layer, 24);
  EXPECT_FALSE(c.window_of_layer(23).has_value());
  EXPECT_EQ(c.window_of_layer(24), 131072);
}

json qwen3_30b_a3b() {  // Qwen3-30B-A3B's config.json
  return json::parse(R"({
    "architectures": ["Qwen3MoeForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
    "bos_token_id": 151643, "decoder_sparse_step": 1, "eos_token_id": 151645, "head_dim": 128,
    "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02,
    "intermediate_size": 6144, "max_position_embeddings": 40960, "max_window_layers": 48,
    "mlp_only_layers": [], "model_type": "qwen3_moe", "moe_intermediate_size": 768,
    "norm_topk_prob": true, "num_attention_heads": 32, "num_experts": 128,
    "num_experts_per_tok": 8, "num_hidden_layers": 48, "num_key_value_heads": 4,
    "output_router_logits": false, "rms_norm_eps": 1e-06, "rope_scaling": null,
    "rope_theta": 1000000.0, "router_aux_loss_coef": 0.001, "sliding_window": null,
    "tie_word_embeddings": false, "torch_dtype": "bfloat16", "use_cache": true,
    "use_sliding_window": false, "vocab_size": 151936})");
}

TEST(Config, Qwen3DenseHasQkNormsAndAnExplicitHeadDim) {
  // Qwen3-8B's config.json.
  json j = json::parse(R"({
    "architectures": ["Qwen3ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
    "bos_token_id": 151643, "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu",
    "hidden_size": 4096, "intermediate_size": 12288, "max_position_embeddings": 40960,
    "max_window_layers": 36, "model_type": "qwen3", "num_attention_heads": 32,
    "num_hidden_layers": 36, "num_key_value_heads": 8, "rms_norm_eps": 1e-06,
    "rope_scaling": null, "rope_theta": 1000000, "sliding_window": null,
    "tie_word_embeddings": false, "torch_dtype": "bfloat16", "use_cache": true,
    "use_sliding_window": false, "vocab_size": 151936})");
  ModelConfig c = parse_ok(j);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_FALSE(c.attention_qkv_bias);
  EXPECT_FALSE(c.attention_out_bias);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.q_dim(), 4096);
  EXPECT_FALSE(c.is_moe());
  EXPECT_FALSE(c.sliding_window.has_value());
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>{151645});
  j["attention_bias"] = true;  // one switch for q, k, v and o
  c = parse_ok(j);
  EXPECT_TRUE(c.attention_qkv_bias);
  EXPECT_TRUE(c.attention_out_bias);
}

TEST(Config, MixtralExperts) {
  // Mixtral-8x7B-v0.1's config.json.
  json j = json::parse(R"({
    "architectures": ["MixtralForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 1,
    "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
    "intermediate_size": 14336, "max_position_embeddings": 32768, "model_type": "mixtral",
    "num_attention_heads": 32, "num_experts_per_tok": 2, "num_hidden_layers": 32,
    "num_key_value_heads": 8, "num_local_experts": 8, "output_router_logits": false,
    "rms_norm_eps": 1e-05, "rope_theta": 1000000.0, "router_aux_loss_coef": 0.02,
    "sliding_window": null, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
    "use_cache": true, "vocab_size": 32000})");
  ModelConfig c = parse_ok(j);
  EXPECT_TRUE(c.is_moe());
  EXPECT_EQ(c.num_experts, 8);
  EXPECT_EQ(c.experts_per_token, 2);
  EXPECT_EQ(c.expert_intermediate_size, 14336);
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_FALSE(c.sliding_window.has_value());
  for (int64_t i : {0, 1, 31}) EXPECT_TRUE(c.is_sparse_layer(i)) << i;
  EXPECT_TRUE(c.uniform_layers());
  j["sliding_window"] = 4096;
  EXPECT_EQ(parse_ok(j).window_of_layer(0), 4096);
  j["num_experts_per_tok"] = 9;
  expect_mentions(parse_err(j), {"'num_experts_per_tok'", "'num_local_experts'"});
  // Hostile counts are refused before anything lists the experts' weights.
  j["num_experts_per_tok"] = 2;
  j["num_local_experts"] = 2147483647;
  expect_mentions(parse_err(j), {"'num_local_experts'", "at most 1024 experts"});
  j["num_local_experts"] = 1024;
  j["num_hidden_layers"] = 2048;
  expect_mentions(parse_err(j), {"'num_local_experts'", "over all layers"});
}

TEST(Config, Qwen3MoeExpertsAndItsDenseLayers) {
  json j = qwen3_30b_a3b();
  ModelConfig c = parse_ok(j);
  EXPECT_EQ(c.num_experts, 128);
  EXPECT_EQ(c.experts_per_token, 8);
  EXPECT_EQ(c.expert_intermediate_size, 768);
  EXPECT_EQ(c.intermediate_size, 6144);
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_TRUE(c.uniform_layers());
  EXPECT_TRUE(c.is_sparse_layer(47));

  // transformers 5 writes the expert count as num_local_experts.
  j.erase("num_experts");
  j["num_local_experts"] = 64;
  EXPECT_EQ(parse_ok(j).num_experts, 64);

  // Dense layers: listed in mlp_only_layers, or off the decoder_sparse_step.
  j["mlp_only_layers"] = {0, 5};
  j["decoder_sparse_step"] = 2;
  c = parse_ok(j);
  EXPECT_FALSE(c.is_sparse_layer(0));
  EXPECT_TRUE(c.is_sparse_layer(1));
  EXPECT_FALSE(c.is_sparse_layer(2));
  EXPECT_TRUE(c.is_sparse_layer(3));
  EXPECT_FALSE(c.is_sparse_layer(5));
  EXPECT_FALSE(c.uniform_layers());

  // norm_topk_prob defaults to false, as in Qwen3MoeConfig.
  j.erase("norm_topk_prob");
  EXPECT_FALSE(parse_ok(j).norm_topk_prob);

  j["mlp_only_layers"] = {48};
  expect_mentions(parse_err(j), {"'mlp_only_layers'", "48"});
  j["mlp_only_layers"] = "1";
  expect_mentions(parse_err(j), {"'mlp_only_layers'"});
}

TEST(Config, MistralSlidingWindow) {
  json j = json::parse(R"({
    "architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
    "hidden_act": "silu", "hidden_size": 4096, "intermediate_size": 14336,
    "max_position_embeddings": 32768, "model_type": "mistral", "num_attention_heads": 32,
    "num_hidden_layers": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
    "rope_theta": 10000.0, "sliding_window": 4096, "tie_word_embeddings": false,
    "torch_dtype": "bfloat16", "vocab_size": 32000})");
  ModelConfig c = parse_ok(j);
  EXPECT_EQ(c.sliding_window, 4096);
  EXPECT_EQ(c.window_of_layer(0), 4096);
  EXPECT_FALSE(c.attention_qkv_bias);

  j["sliding_window"] = nullptr;  // Mistral v0.2+
  EXPECT_FALSE(parse_ok(j).sliding_window.has_value());
  j.erase("sliding_window");  // MistralConfig's default
  EXPECT_EQ(parse_ok(j).sliding_window, 4096);
  j["sliding_window"] = "wide";
  expect_mentions(parse_err(j), {"'sliding_window'", "\"wide\""});
}

TEST(Config, ExplicitHeadDim) {
  json j = llama31_8b();  // Mistral-Nemo style: 5120 hidden, 32 heads of 128
  j["hidden_size"] = 5120;
  j["head_dim"] = 128;
  ModelConfig c = parse_ok(j);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.q_dim(), 4096);
  j["head_dim"] = nullptr;  // null means "derive it"
  EXPECT_EQ(parse_ok(j).head_dim, 160);
  j["hidden_size"] = 5000;  // 5000 / 32 is not whole and head_dim is null
  expect_mentions(parse_err(j), {"'hidden_size'", "'num_attention_heads'", "head_dim"});
}

TEST(Config, EosForms) {
  json j = llama31_8b();
  j["eos_token_id"] = 7;
  EXPECT_EQ(parse_ok(j).eos_token_ids, std::vector<int64_t>{7});
  j["eos_token_id"] = nullptr;
  EXPECT_TRUE(parse_ok(j).eos_token_ids.empty());
  j.erase("eos_token_id");
  EXPECT_EQ(parse_ok(j).eos_token_ids, std::vector<int64_t>{2});  // LlamaConfig's default
  j["bos_token_id"] = nullptr;
  j["pad_token_id"] = -1;  // old LLaMA conversions
  ModelConfig c = parse_ok(j);
  EXPECT_FALSE(c.bos_token_id.has_value());
  EXPECT_FALSE(c.pad_token_id.has_value());
  j["eos_token_id"] = json::array({1, "two"});
  expect_mentions(parse_err(j), {"'eos_token_id'", "\"two\""});
}

TEST(Config, Dtypes) {
  json j = llama31_8b();
  j["torch_dtype"] = "float32";
  EXPECT_EQ(parse_ok(j).torch_dtype, DType::kF32);
  j["torch_dtype"] = "float16";
  EXPECT_EQ(parse_ok(j).torch_dtype, DType::kF16);
  j["torch_dtype"] = "float64";
  Status s = parse_err(j);
  EXPECT_EQ(s.code(), StatusCode::kUnsupported);
  expect_mentions(s, {"'torch_dtype'", "float64", "bfloat16"});
}

TEST(Config, MissingField) {
  json j = llama31_8b();
  j.erase("hidden_size");
  Status s = parse_err(j);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  expect_mentions(s, {"missing field 'hidden_size'", "positive integer"});

  j = opt_125m();
  j.erase("ffn_dim");
  expect_mentions(parse_err(j), {"'ffn_dim'"});
}

TEST(Config, IllTypedField) {
  json j = llama31_8b();
  j["num_attention_heads"] = "x";
  EXPECT_EQ(parse_err(j).message(),
            "config.json: field 'num_attention_heads' must be a positive integer (got \"x\")");
  j["num_attention_heads"] = 0;
  expect_mentions(parse_err(j), {"'num_attention_heads'", "(got 0)"});
  j["num_attention_heads"] = 32.5;
  expect_mentions(parse_err(j), {"'num_attention_heads'", "32.5"});
  j["num_attention_heads"] = 32.0;  // integral floats are accepted
  EXPECT_EQ(parse_ok(j).num_heads, 32);
  j["tie_word_embeddings"] = "yes";
  expect_mentions(parse_err(j), {"'tie_word_embeddings'", "true or false"});
  j = llama31_8b();
  j["rms_norm_eps"] = -1;
  expect_mentions(parse_err(j), {"'rms_norm_eps'", "positive number"});
}

TEST(Config, UnsupportedArchitecture) {
  json j = opt_125m();
  j["model_type"] = "gpt2";
  Status s = parse_err(j);
  EXPECT_EQ(s.code(), StatusCode::kUnsupported);
  expect_mentions(s, {"gpt2", "opt, llama, mistral, qwen2, qwen3, mixtral, qwen3_moe"});
  j.erase("model_type");
  expect_mentions(parse_err(j), {"'model_type'"});
}

TEST(Config, UnsupportedHiddenAct) {
  json j = llama31_8b();
  j["hidden_act"] = "gelu";
  Status s = parse_err(j);
  EXPECT_EQ(s.code(), StatusCode::kUnsupported);
  expect_mentions(s, {"'hidden_act'", "gelu", "silu"});
}

TEST(Config, UnsupportedRopeType) {
  json j = llama31_8b();
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  Status s = parse_err(j);
  EXPECT_EQ(s.code(), StatusCode::kUnsupported);
  expect_mentions(s, {"'rope_scaling.rope_type'", "yarn", "llama3"});

  j["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2.0}};
  expect_mentions(parse_err(j), {"'rope_scaling.type'", "dynamic"});

  j.erase("rope_scaling");
  j["rope_parameters"] = {{"rope_type", "longrope"}, {"rope_theta", 1e4}};
  expect_mentions(parse_err(j), {"'rope_parameters.rope_type'", "longrope"});
}

TEST(Config, IncompleteRopeScaling) {
  json j = llama31_8b();
  j["rope_scaling"].erase("low_freq_factor");
  expect_mentions(parse_err(j), {"'rope_scaling.low_freq_factor'"});
  j = llama31_8b();
  j["rope_scaling"].erase("rope_type");
  expect_mentions(parse_err(j), {"'rope_scaling.rope_type'"});
  j = llama31_8b();
  j["rope_scaling"] = {{"rope_type", "linear"}};
  expect_mentions(parse_err(j), {"'rope_scaling.factor'"});
  j["rope_scaling"] = "linear";
  expect_mentions(parse_err(j), {"'rope_scaling'", "object"});
}

TEST(Config, InconsistentHeads) {
  json j = llama31_8b();
  j["num_key_value_heads"] = 5;
  Status s = parse_err(j);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  expect_mentions(s, {"'num_attention_heads' (32)", "'num_key_value_heads' (5)"});

  j = opt_125m();
  j["num_attention_heads"] = 10;  // 768 / 10
  expect_mentions(parse_err(j), {"'hidden_size' (768)", "'num_attention_heads' (10)"});
}

TEST(Config, NotAnObject) {
  Status s = parse_err(json::array({1, 2}));
  expect_mentions(s, {"JSON object"});
}

TEST(Config, LoadConfigFromFile) {
  auto dir = strata::testing::make_temp_dir("strata-config");
  std::ofstream(dir / "config.json") << opt_125m().dump(2);
  Result<ModelConfig> c = load_config(dir / "config.json");
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_EQ(c->hidden_size, 768);

  std::ofstream(dir / "bad.json") << "{\"model_type\": \"opt\",";
  Result<ModelConfig> bad = load_config(dir / "bad.json");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("bad.json"), std::string::npos);
  EXPECT_NE(bad.status().message().find("invalid JSON"), std::string::npos);

  std::ofstream(dir / "types.json") << R"({"model_type": "llama", "hidden_size": "big"})";
  Result<ModelConfig> types = load_config(dir / "types.json");
  ASSERT_FALSE(types.is_ok());
  EXPECT_NE(types.status().message().find((dir / "types.json").string()), std::string::npos);

  Result<ModelConfig> missing = load_config(dir / "nope.json");
  ASSERT_FALSE(missing.is_ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("nope.json"), std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST(Config, HostileNumbersAreErrorsNamingTheField) {
  auto dir = strata::testing::make_temp_dir("strata-config");
  // A number past a double anywhere in the file, even in a field strata ignores.
  for (const char* field : {"num_hidden_layers", "rope_theta", "some_unused_field"}) {
    json j = opt_125m();
    std::string text = j.dump();
    text.insert(1, "\"" + std::string(field) + "\": 1e400, ");
    std::ofstream(dir / "config.json", std::ios::trunc) << text;
    Result<ModelConfig> c = load_config(dir / "config.json");
    ASSERT_FALSE(c.is_ok()) << field;
    for (const std::string& f : {(dir / "config.json").string(), "'" + std::string(field) + "'", std::string("1e400")})
      EXPECT_NE(c.status().message().find(f), std::string::npos) << c.status().message();
  }
  // Huge but finite numbers are range errors.
  json j = opt_125m();
  j["num_hidden_layers"] = 1e300;
  expect_mentions(parse_err(j), {"'num_hidden_layers'", "positive integer"});
  j = opt_125m();
  j["num_hidden_layers"] = uint64_t{18446744073709551615u};
  expect_mentions(parse_err(j), {"'num_hidden_layers'"});
  std::filesystem::remove_all(dir);
}

TEST(Config, SpecialTokensMustBeInTheVocabulary) {
  json j = opt_125m();
  j["eos_token_id"] = 50272;  // vocab_size 50272
  expect_mentions(parse_err(j), {"'eos_token_id'", "50272", "outside the vocabulary"});
  j["eos_token_id"] = json::array({2, 99999999});
  expect_mentions(parse_err(j), {"'eos_token_id'", "99999999"});
  j = opt_125m();
  j["bos_token_id"] = 2147483647;
  expect_mentions(parse_err(j), {"'bos_token_id'", "2147483647"});
  j = opt_125m();
  j["eos_token_id"] = 50271;
  EXPECT_TRUE(parse_config(j, "config.json").is_ok());
}

}  // namespace
}  // namespace strata::model
