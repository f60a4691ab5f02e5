// The weights each architecture needs, under strata's canonical names, with the Hugging Face
// name they are stored under and their expected shape. The canonical names are what the rest of
// strata (compute, storage, runtime) uses:
//   embed.tokens            [vocab, embed_dim]
//   embed.positions         [max_pos + 2, hidden]          OPT learned positions (offset 2)
//   embed.project_in        [hidden, embed_dim]            OPT when word_embed_proj_dim != hidden
//   layers.{i}.attn_norm.weight / .bias   [hidden]         OPT self_attn_layer_norm, Llama input_layernorm
//   layers.{i}.q.weight [q_dim, hidden]  .bias [q_dim]
//   layers.{i}.k.weight [kv_dim, hidden] .bias [kv_dim]
//   layers.{i}.v.weight [kv_dim, hidden] .bias [kv_dim]
//   layers.{i}.o.weight [hidden, q_dim]  .bias [hidden]
//   layers.{i}.mlp_norm.weight / .bias    [hidden]         OPT final_layer_norm, Llama post_attention_layernorm
//   layers.{i}.fc1.weight [ffn, hidden] .bias; layers.{i}.fc2.weight [hidden, ffn] .bias     OPT
//   layers.{i}.gate.weight [ffn, hidden]; .up.weight [ffn, hidden]; .down.weight [hidden, ffn]   Llama
//   layers.{i}.q_norm.weight / .k_norm.weight  [head_dim]  qwen3, qwen3_moe
//   layers.{i}.router.weight [experts, hidden]            a mixture-of-experts layer, in place of
//   layers.{i}.experts.{e}.gate.weight / .up.weight / .down.weight    gate/up/down (expert ffn)
//   final_norm.weight / .bias  [hidden]
//   embed.project_out       [embed_dim, hidden]            OPT when word_embed_proj_dim != hidden
//   lm_head.weight          [vocab, embed_dim]             absent when tied to embed.tokens
// Linear weights are [out_features, in_features], as PyTorch stores them. Pure functions.
#pragma once

#include <string>
#include <vector>

#include "common/tensor.h"
#include "model/config.h"

namespace strata::model {

// A weight stored as a slice of a larger tensor: rows [row_begin, row_begin + shape[0]) of matrix
// `index` of a [n, rows, cols] tensor, as transformers 5 fuses a layer's experts
// (experts.gate_up_proj [experts, 2 * ffn, hidden], experts.down_proj [experts, hidden, ffn]).
struct StoredSlice {
  std::string hf_name;
  Shape stored_shape;
  int64_t index = 0;
  int64_t row_begin = 0;
};

struct WeightSpec {
  std::string name;                      // canonical name
  std::vector<std::string> hf_names;     // Hugging Face names to look for, in order of preference
  Shape shape;
  std::vector<StoredSlice> slices;       // looked for after hf_names
};

// Every weight the model needs, in forward order (embeddings, layers 0..n-1, final norm, head).
std::vector<WeightSpec> model_weights(const ModelConfig& config);
// The weights of layer i only (the layers.{i}.* entries of model_weights).
std::vector<WeightSpec> layer_weights(const ModelConfig& config, int64_t layer);

// Number of parameters in `specs`, counting each canonical name once (tied weights have no spec of
// their own, so they are counted once too).
int64_t parameter_count(const std::vector<WeightSpec>& specs);

// Canonical name of a per-layer weight, e.g. layer_weight_name(3, "q.weight") == "layers.3.q.weight".
std::string layer_weight_name(int64_t layer, const std::string& suffix);

}  // namespace strata::model
