#include "planner/model_spec.h"

#include "common/check.h"
#include "model/weight_names.h"

namespace strata::planner {

std::string_view compression_name(Compression c) {
  return c == Compression::kInt4 ? "int4-g64" : "none";
}

std::optional<Compression> compression_from_name(std::string_view name) {
  if (name == "none") return Compression::kNone;
  if (name == "int4-g64" || name == "int4") return Compression::kInt4;
  return std::nullopt;
}

uint64_t int4_matrix_bytes(int64_t rows, int64_t cols) {
  STRATA_CHECK(cols % 64 == 0, "int4-g64 needs a multiple of 64 columns");
  const uint64_t r = static_cast<uint64_t>(rows), c = static_cast<uint64_t>(cols);
  return r * c / 2 + r * (c / 64) * 4;  // codes + fp16 scale and minimum per group
}

uint64_t TensorSpec::bytes(Compression c) const {
  if (c == Compression::kInt4 && compressible) return int4_matrix_bytes(shape[0], shape[1]);
  return static_cast<uint64_t>(shape_numel(shape)) * 2;
}

uint64_t ModelSpec::layer_bytes(Compression c) const {
  uint64_t b = 0;
  for (const auto& t : layer_tensors) b += t.bytes(c);
  return b;
}

uint64_t ModelSpec::expert_bytes(Compression c) const {
  if (num_experts == 0) return 0;
  uint64_t b = 0;
  for (const auto& t : layer_tensors)
    if (t.expert) b += t.bytes(c);
  return b / static_cast<uint64_t>(num_experts);  // the experts are alike
}

uint64_t ModelSpec::other_bytes(Compression c) const {
  uint64_t b = 0;
  for (const auto& t : other_tensors) b += t.bytes(c);
  return b;
}

uint64_t ModelSpec::head_bytes(Compression c) const {
  uint64_t b = 0;
  for (const auto& t : other_tensors)
    if (t.gpu_consumed) b += t.bytes(c);
  return b;
}

uint64_t ModelSpec::total_weight_bytes(Compression c) const {
  return layer_bytes(c) * static_cast<uint64_t>(num_layers) + other_bytes(c);
}

int64_t ModelSpec::layer_compressible_elements() const {
  int64_t n = 0;
  for (const auto& t : layer_tensors)
    if (t.compressible) n += shape_numel(t.shape);
  return n;
}

int64_t ModelSpec::expert_compressible_elements() const {
  if (num_experts == 0) return 0;
  int64_t n = 0;
  for (const auto& t : layer_tensors)
    if (t.expert && t.compressible) n += shape_numel(t.shape);
  return n / num_experts;
}

uint64_t ModelSpec::kv_bytes(int64_t tokens, Compression c) const {
  // Per token and layer: keys and values of every kv head.
  const uint64_t elements = 2ull * static_cast<uint64_t>(kv_dim);
  uint64_t per_token = elements * 2;
  if (c == Compression::kInt4) {
    STRATA_CHECK(kv_compressible(), "int4 KV needs head_dim to be a multiple of 64");
    per_token = elements / 2 + (elements / 64) * 4;
  }
  return per_token * static_cast<uint64_t>(tokens);
}

namespace {

// Why the planner cannot take a model whose layers differ: which layers are dense, the config.json
// fields that make them so, and how to run the model anyway.
Status layers_differ(const model::ModelConfig& c, const std::string& name) {
  std::string dense;
  int64_t count = 0;
  for (int64_t i = 0; i < c.num_layers; ++i) {
    if (c.is_sparse_layer(i)) continue;
    if (++count <= 8) dense += (count > 1 ? ", " : "") + std::to_string(i);
  }
  if (count > 8) dense += ", ...";
  std::string fields;
  if (!c.dense_layers.empty()) {
    fields = "mlp_only_layers [";
    for (size_t i = 0; i < c.dense_layers.size(); ++i)
      fields += (i ? ", " : "") + std::to_string(c.dense_layers[i]);
    fields += "]";
  }
  if (c.sparse_step != 1)
    fields += (fields.empty() ? "" : ", ") + std::string("decoder_sparse_step ") + std::to_string(c.sparse_step);
  return unsupported(name + ": " + std::to_string(count) + " of " + std::to_string(c.num_layers) +
                     " layers (" + dense + ") have a dense MLP and the others a mixture of experts (config.json: " +
                     fields + "); the offloading engine and its planner need every layer alike: run this "
                     "model without offloading (strata generate --policy none)");
}

}  // namespace

Result<ModelSpec> make_model_spec(const model::ModelConfig& config, std::string name) {
  if (!config.uniform_layers()) return layers_differ(config, name);
  ModelSpec s;
  s.name = std::move(name);
  s.family = config.family;
  s.num_layers = config.num_layers;
  s.hidden = config.hidden_size;
  s.q_dim = config.q_dim();
  s.kv_dim = config.kv_dim();
  s.ffn = config.intermediate_size;
  s.num_heads = config.num_heads;
  s.num_kv_heads = config.num_kv_heads;
  s.head_dim = config.head_dim;
  s.vocab = config.vocab_size;
  s.embed_dim = config.embed_dim();
  if (config.is_sparse_layer(0)) {
    s.num_experts = config.num_experts;
    s.experts_per_token = config.experts_per_token;
    s.expert_ffn = config.expert_intermediate_size;
  }

  auto ends = [](const std::string& n, std::string_view suffix) {
    return n.size() >= suffix.size() && n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  auto is_gemm = [&](const std::string& n) {
    if (n.rfind("layers.", 0) == 0)
      return ends(n, ".q.weight") || ends(n, ".k.weight") || ends(n, ".v.weight") || ends(n, ".o.weight") ||
             ends(n, ".fc1.weight") || ends(n, ".fc2.weight") || ends(n, ".gate.weight") ||
             ends(n, ".up.weight") || ends(n, ".down.weight") || ends(n, ".router.weight");
    return n == "lm_head.weight" || n == "embed.project_out";
  };
  int64_t expert_params = 0;  // every expert's
  for (auto& w : model::model_weights(config)) {
    const bool in_layer = w.name.rfind("layers.", 0) == 0;
    if (in_layer && w.name.rfind("layers.0.", 0) != 0) continue;
    TensorSpec t;
    t.name = w.name;
    t.shape = w.shape;
    const bool gemm = is_gemm(w.name) && t.shape.size() == 2;
    // The router is a GEMM too, but small and kept in fp16.
    t.compressible = gemm && t.shape[1] % 64 == 0 && !ends(w.name, ".router.weight");
    t.expert = in_layer && w.name.find(".experts.") != std::string::npos;
    if (in_layer) {
      if (gemm) (t.expert ? expert_params : s.layer_dense_gemm_params) += shape_numel(t.shape);
      s.layer_tensors.push_back(std::move(t));
    } else {
      if (gemm) s.head_gemm_params += shape_numel(t.shape);
      t.gpu_consumed = w.name != "embed.tokens" && w.name != "embed.positions";
      s.other_tensors.push_back(std::move(t));
    }
  }
  if (s.num_experts > 0) {
    STRATA_CHECK(expert_params % s.num_experts == 0, s.name + ": experts of different sizes");
    s.expert_gemm_params = expert_params / s.num_experts;
  }
  s.layer_gemm_params = s.layer_dense_gemm_params + s.experts_per_token * s.expert_gemm_params;
  // A head tied to the token embedding has no tensor of its own but still costs a GEMM.
  if (config.tie_word_embeddings || config.family == model::Family::kOpt) {
    bool has_head = false;
    for (const auto& t : s.other_tensors) has_head |= t.name == "lm_head.weight";
    if (!has_head) {
      s.head_gemm_params += s.vocab * s.embed_dim;
      for (auto& t : s.other_tensors)
        if (t.name == "embed.tokens") t.gpu_consumed = true;  // the head GEMM reads it
    }
  }
  return s;
}

}  // namespace strata::planner
