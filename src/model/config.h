// ModelConfig: the architecture facts strata needs, parsed from a Hugging Face config.json (or a
// named shape in models/shapes/). Supports OPT and the Llama family (llama, mistral, qwen2, qwen3),
// with mixture-of-experts layers (mixtral, qwen3_moe).
// Parsing is pure; errors name the file and the field.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/dtype.h"
#include "common/status.h"

namespace strata::model {

enum class Family { kOpt, kLlama };

enum class RopeType { kDefault, kLinear, kLlama3 };

struct RopeConfig {
  double theta = 10000.0;
  RopeType type = RopeType::kDefault;
  double factor = 1.0;                        // linear and llama3
  double low_freq_factor = 1.0;               // llama3
  double high_freq_factor = 4.0;              // llama3
  int64_t original_max_position_embeddings = 8192;  // llama3
};

struct ModelConfig {
  std::string model_type;    // "opt", "llama", "mistral", "qwen2", "qwen3", "mixtral", "qwen3_moe"
  Family family = Family::kLlama;

  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;   // a dense MLP's width (OPT: ffn_dim)
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;        // == num_heads without GQA
  int64_t head_dim = 0;            // hidden_size / num_heads unless given
  int64_t max_position_embeddings = 0;

  // OPT only.
  int64_t word_embed_proj_dim = 0;     // == hidden_size unless the model projects in/out
  bool do_layer_norm_before = true;    // pre-LN (true) or post-LN (opt-350m)
  bool enable_bias = true;             // biases in q/k/v/out and fc1/fc2
  bool layer_norm_elementwise_affine = true;
  bool final_layer_norm = true;        // OPT: present iff do_layer_norm_before (and not removed)

  // Llama family only.
  bool attention_qkv_bias = false;     // qwen2, or llama's attention_bias
  bool attention_out_bias = false;     // llama's attention_bias
  bool mlp_bias = false;
  std::optional<int64_t> sliding_window;  // mistral, or qwen2 with use_sliding_window
  // Layers [0, first_sliding_layer) attend fully even when sliding_window is set (qwen2's
  // max_window_layers; 0 for mistral, whose every layer slides).
  int64_t first_sliding_layer = 0;
  RopeConfig rope;
  // qwen3, qwen3_moe: an RMSNorm (weights [head_dim]) over each head's queries and keys, before RoPE.
  bool qk_norm = false;

  // Mixture of experts (mixtral, qwen3_moe); num_experts is 0 for a dense model. A sparse layer's
  // MLP is a router ([num_experts, hidden] linear) choosing experts_per_token experts per token by
  // softmax probability, and the experts' SwiGLU MLPs of width expert_intermediate_size, whose
  // outputs are summed weighted by those probabilities (renormalised over the chosen ones when
  // norm_topk_prob).
  int64_t num_experts = 0;
  int64_t experts_per_token = 0;
  int64_t expert_intermediate_size = 0;
  bool norm_topk_prob = true;
  // Which layers are sparse (qwen3_moe): layer i is when i is not in dense_layers and
  // (i + 1) % sparse_step == 0; the others have a dense MLP of intermediate_size.
  int64_t sparse_step = 1;
  std::vector<int64_t> dense_layers;

  double norm_eps = 1e-5;              // rms_norm_eps (Llama) / 1e-5 (OPT LayerNorm)
  bool tie_word_embeddings = false;
  std::optional<int64_t> bos_token_id;
  std::vector<int64_t> eos_token_ids;
  std::optional<int64_t> pad_token_id;
  DType torch_dtype = DType::kF32;

  // Width of the token embedding table (OPT's word_embed_proj_dim, else hidden_size).
  int64_t embed_dim() const { return family == Family::kOpt ? word_embed_proj_dim : hidden_size; }
  int64_t q_dim() const { return num_heads * head_dim; }
  int64_t kv_dim() const { return num_kv_heads * head_dim; }
  bool is_eos(int64_t token) const;
  bool is_moe() const { return num_experts > 0; }
  // Whether `layer`'s MLP is a mixture of experts.
  bool is_sparse_layer(int64_t layer) const;
  // Whether every layer has the same weights (false when a mixture-of-experts model mixes dense
  // and sparse layers).
  bool uniform_layers() const;
  // The attention window of `layer` in tokens, or nullopt for full attention.
  std::optional<int64_t> window_of_layer(int64_t layer) const;
};

// Parses a config.json object. `source` (a path or a shape name) prefixes every error.
Result<ModelConfig> parse_config(const nlohmann::json& j, const std::string& source);
// Reads and parses a config.json file.
Result<ModelConfig> load_config(const std::filesystem::path& file);

}  // namespace strata::model
