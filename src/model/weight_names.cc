#include "model/weight_names.h"

#include <set>

#include "common/check.h"

namespace strata::model {
namespace {

// OPT checkpoints name their tensors "model.decoder.*"; some older ones "decoder.*".
std::vector<std::string> opt_names(const std::string& rest) {
  return {"model.decoder." + rest, "decoder." + rest};
}

void add(std::vector<WeightSpec>& out, std::string name, std::vector<std::string> hf, Shape shape) {
  out.push_back(WeightSpec{std::move(name), std::move(hf), std::move(shape), {}});
}

void opt_layer(const ModelConfig& c, int64_t i, std::vector<WeightSpec>& out) {
  const int64_t h = c.hidden_size, f = c.intermediate_size;
  const std::string hf = "layers." + std::to_string(i) + ".";
  auto norm = [&](const char* canon, const char* hf_name) {
    if (!c.layer_norm_elementwise_affine) return;
    add(out, layer_weight_name(i, std::string(canon) + ".weight"),
        opt_names(hf + hf_name + ".weight"), {h});
    add(out, layer_weight_name(i, std::string(canon) + ".bias"), opt_names(hf + hf_name + ".bias"),
        {h});
  };
  auto linear = [&](const char* canon, const std::string& hf_name, int64_t out_f, int64_t in_f) {
    add(out, layer_weight_name(i, std::string(canon) + ".weight"),
        opt_names(hf + hf_name + ".weight"), {out_f, in_f});
    if (c.enable_bias) {
      add(out, layer_weight_name(i, std::string(canon) + ".bias"),
          opt_names(hf + hf_name + ".bias"), {out_f});
    }
  };
  norm("attn_norm", "self_attn_layer_norm");
  linear("q", "self_attn.q_proj", h, h);
  linear("k", "self_attn.k_proj", h, h);
  linear("v", "self_attn.v_proj", h, h);
  linear("o", "self_attn.out_proj", h, h);
  norm("mlp_norm", "final_layer_norm");
  linear("fc1", "fc1", f, h);
  linear("fc2", "fc2", h, f);
}

// A mixture-of-experts MLP: the router and each expert's gate, up and down matrices. Published
// checkpoints store one tensor per expert and matrix (mixtral: block_sparse_moe.experts.{e}.w1/w3/w2,
// qwen3_moe: mlp.experts.{e}.gate_proj/up_proj/down_proj); transformers 5 may write them fused
// per layer (mlp.experts.gate_up_proj with gate rows first, mlp.experts.down_proj).
void expert_layer(const ModelConfig& c, int64_t i, std::vector<WeightSpec>& out) {
  const int64_t h = c.hidden_size, f = c.expert_intermediate_size, n = c.num_experts;
  const std::string hf = "model.layers." + std::to_string(i) + ".";
  const bool mixtral = c.model_type == "mixtral";
  add(out, layer_weight_name(i, "router.weight"),
      mixtral ? std::vector<std::string>{hf + "block_sparse_moe.gate.weight", hf + "mlp.gate.weight"}
              : std::vector<std::string>{hf + "mlp.gate.weight"},
      {n, h});
  const std::string gate_up = hf + "mlp.experts.gate_up_proj", down = hf + "mlp.experts.down_proj";
  for (int64_t e = 0; e < n; ++e) {
    const std::string ex = "experts." + std::to_string(e) + ".";
    auto name = [&](const char* m) { return layer_weight_name(i, ex + m + ".weight"); };
    auto hub = [&](const char* mixtral_name, const char* qwen_name) {
      return mixtral ? hf + "block_sparse_moe." + ex + mixtral_name + ".weight"
                     : hf + "mlp." + ex + qwen_name + ".weight";
    };
    out.push_back({name("gate"), {hub("w1", "gate_proj")}, {f, h}, {{gate_up, {n, 2 * f, h}, e, 0}}});
    out.push_back({name("up"), {hub("w3", "up_proj")}, {f, h}, {{gate_up, {n, 2 * f, h}, e, f}}});
    out.push_back({name("down"), {hub("w2", "down_proj")}, {h, f}, {{down, {n, h, f}, e, 0}}});
  }
}

void llama_layer(const ModelConfig& c, int64_t i, std::vector<WeightSpec>& out) {
  const int64_t h = c.hidden_size, f = c.intermediate_size;
  const std::string hf = "model.layers." + std::to_string(i) + ".";
  auto linear = [&](const char* canon, const std::string& hf_name, int64_t out_f, int64_t in_f,
                    bool bias) {
    add(out, layer_weight_name(i, std::string(canon) + ".weight"), {hf + hf_name + ".weight"},
        {out_f, in_f});
    if (bias) {
      add(out, layer_weight_name(i, std::string(canon) + ".bias"), {hf + hf_name + ".bias"},
          {out_f});
    }
  };
  add(out, layer_weight_name(i, "attn_norm.weight"), {hf + "input_layernorm.weight"}, {h});
  linear("q", "self_attn.q_proj", c.q_dim(), h, c.attention_qkv_bias);
  linear("k", "self_attn.k_proj", c.kv_dim(), h, c.attention_qkv_bias);
  linear("v", "self_attn.v_proj", c.kv_dim(), h, c.attention_qkv_bias);
  linear("o", "self_attn.o_proj", h, c.q_dim(), c.attention_out_bias);
  if (c.qk_norm) {
    add(out, layer_weight_name(i, "q_norm.weight"), {hf + "self_attn.q_norm.weight"}, {c.head_dim});
    add(out, layer_weight_name(i, "k_norm.weight"), {hf + "self_attn.k_norm.weight"}, {c.head_dim});
  }
  add(out, layer_weight_name(i, "mlp_norm.weight"), {hf + "post_attention_layernorm.weight"}, {h});
  if (c.is_sparse_layer(i)) {
    expert_layer(c, i, out);
    return;
  }
  linear("gate", "mlp.gate_proj", f, h, c.mlp_bias);
  linear("up", "mlp.up_proj", f, h, c.mlp_bias);
  linear("down", "mlp.down_proj", h, f, c.mlp_bias);
}

void append_layer(const ModelConfig& c, int64_t i, std::vector<WeightSpec>& out) {
  if (c.family == Family::kOpt) {
    opt_layer(c, i, out);
  } else {
    llama_layer(c, i, out);
  }
}

}  // namespace

std::string layer_weight_name(int64_t layer, const std::string& suffix) {
  return "layers." + std::to_string(layer) + "." + suffix;
}

std::vector<WeightSpec> layer_weights(const ModelConfig& config, int64_t layer) {
  STRATA_CHECK(layer >= 0 && layer < config.num_layers,
               "layer " + std::to_string(layer) + " of " + std::to_string(config.num_layers));
  std::vector<WeightSpec> out;
  append_layer(config, layer, out);
  return out;
}

std::vector<WeightSpec> model_weights(const ModelConfig& c) {
  std::vector<WeightSpec> out;
  const int64_t h = c.hidden_size, e = c.embed_dim();
  if (c.family == Family::kOpt) {
    add(out, "embed.tokens", opt_names("embed_tokens.weight"), {c.vocab_size, e});
    // OPT's learned positions are offset by 2 (OPTLearnedPositionalEmbedding).
    add(out, "embed.positions", opt_names("embed_positions.weight"),
        {c.max_position_embeddings + 2, h});
    if (e != h) add(out, "embed.project_in", opt_names("project_in.weight"), {h, e});
  } else {
    add(out, "embed.tokens", {"model.embed_tokens.weight"}, {c.vocab_size, e});
  }
  for (int64_t i = 0; i < c.num_layers; ++i) append_layer(c, i, out);
  if (c.family == Family::kOpt) {
    if (c.final_layer_norm && c.layer_norm_elementwise_affine) {
      add(out, "final_norm.weight", opt_names("final_layer_norm.weight"), {h});
      add(out, "final_norm.bias", opt_names("final_layer_norm.bias"), {h});
    }
    if (e != h) add(out, "embed.project_out", opt_names("project_out.weight"), {e, h});
  } else {
    add(out, "final_norm.weight", {"model.norm.weight"}, {h});
  }
  if (!c.tie_word_embeddings) add(out, "lm_head.weight", {"lm_head.weight"}, {c.vocab_size, e});
  return out;
}

int64_t parameter_count(const std::vector<WeightSpec>& specs) {
  std::set<std::string> seen;
  int64_t n = 0;
  for (const WeightSpec& s : specs) {
    if (seen.insert(s.name).second) n += shape_numel(s.shape);
  }
  return n;
}

}  // namespace strata::model
