#include "compute/transformer.h"

#include <algorithm>
#include <cmath>

#include "model/weight_names.h"

namespace strata::compute {

using model::Family;

const Tensor* ModelWeights::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

const Tensor& ModelWeights::get(const std::string& name) const {
  const Tensor* t = find(name);
  STRATA_CHECK(t != nullptr, "weight " + name + " was not loaded");
  return *t;
}

uint64_t ModelWeights::bytes() const {
  uint64_t total = 0;
  for (const auto& [name, t] : tensors_) total += t.bytes();
  return total;
}

static WeightKind weight_kind(const model::WeightSpec& spec) {
  if (spec.name == "embed.tokens" || spec.name == "embed.positions") return WeightKind::kTable;
  return spec.shape.size() == 2 ? WeightKind::kLinear : WeightKind::kVector;
}

Result<ModelWeights> load_weights(const model::ModelConfig& config, model::WeightSource& source,
                                  Backend& backend) {
  ModelWeights weights;
  for (const auto& spec : model::model_weights(config)) {
    STRATA_ASSIGN_OR_RETURN(Tensor host, source.load(spec));
    STRATA_ASSIGN_OR_RETURN(Tensor t, backend.upload(host, weight_kind(spec)));
    weights.put(spec.name, std::move(t));
    if (spec.name == "embed.tokens" && config.tie_word_embeddings) {
      // The tied head reads the same values as a linear weight.
      STRATA_ASSIGN_OR_RETURN(Tensor head, backend.upload(host, WeightKind::kLinear));
      weights.put("lm_head.weight", std::move(head));
    }
  }
  return weights;
}

void TokenBatch::add_sequence(int32_t slot, int32_t past_len, std::span<const int32_t> ids) {
  SeqSpan s;
  s.slot = slot;
  s.past_len = past_len;
  s.num_tokens = static_cast<int32_t>(ids.size());
  s.offset = size();
  seqs.push_back(s);
  for (size_t i = 0; i < ids.size(); ++i) {
    tokens.push_back(ids[i]);
    positions.push_back(past_len + static_cast<int32_t>(i));
  }
}

Transformer::Transformer(model::ModelConfig config, Backend& backend, ModelWeights weights)
    : config_(std::move(config)), backend_(backend), weights_(std::move(weights)) {
  if (config_.family == Family::kLlama) rope_ = make_rope_table(config_.rope, config_.head_dim);
  attn_params_.scale = 1.0f / std::sqrt(static_cast<float>(config_.head_dim));
}

Result<KvCache> Transformer::make_kv_cache(int32_t slots, int32_t max_len) {
  KvCache cache;
  cache.slots = slots;
  cache.max_len = max_len;
  Shape shape = {slots, max_len, config_.num_kv_heads, config_.head_dim};
  for (int64_t i = 0; i < config_.num_layers; ++i) {
    LayerKvCache layer;
    STRATA_ASSIGN_OR_RETURN(layer.k, backend_.allocate(backend_.activation_dtype(), shape));
    STRATA_ASSIGN_OR_RETURN(layer.v, backend_.allocate(backend_.activation_dtype(), shape));
    cache.layers.push_back(std::move(layer));
  }
  return cache;
}

Tensor Transformer::alloc(int64_t rows, int64_t cols) {
  auto t = backend_.allocate_uninitialized(backend_.activation_dtype(), {rows, cols});
  STRATA_CHECK(t.is_ok(), t.status().to_string());
  return std::move(t).value();
}


Transformer::WeightFn Transformer::own_weights() const {
  return [this](const std::string& name) { return weights_.find(name); };
}

Status Transformer::check_batch(const TokenBatch& batch) const {
  if (batch.size() == 0) return invalid_argument("forward: empty batch");
  for (int32_t t : batch.tokens)
    if (t < 0 || t >= config_.vocab_size)
      return invalid_argument("forward: token id " + std::to_string(t) + " outside the vocabulary of " +
                              std::to_string(config_.vocab_size));
  if (config_.family == Family::kOpt) {
    const int64_t max_pos = *std::max_element(batch.positions.begin(), batch.positions.end());
    if (max_pos >= config_.max_position_embeddings)
      return invalid_argument("forward: position beyond max_position_embeddings (" +
                              std::to_string(config_.max_position_embeddings) + ")");
  }
  return Status::ok();
}

Result<Tensor> Transformer::forward(const TokenBatch& batch, KvCache& cache,
                                    std::span<const int32_t> rows, bool to_host) {
  STRATA_RETURN_IF_ERROR(check_batch(batch));
  const int64_t T = batch.size();
  for (const SeqSpan& s : batch.seqs) {
    if (s.slot < 0 || s.slot >= cache.slots)
      return invalid_argument("forward: KV slot " + std::to_string(s.slot) + " out of range");
    // A sequence longer than a slot runs on into the next slots (paged KV).
    if (int64_t{s.slot} * cache.max_len + s.past_len + s.num_tokens > int64_t{cache.slots} * cache.max_len)
      return invalid_argument("forward: sequence in slot " + std::to_string(s.slot) + " needs " +
                              std::to_string(s.past_len + s.num_tokens) + " cache positions but the cache has " +
                              std::to_string(cache.slots - s.slot) + " slots of " + std::to_string(cache.max_len) +
                              " from there");
  }
  for (int32_t r : rows)
    if (r < 0 || r >= T) return invalid_argument("forward: logit row out of range");

  const WeightFn find = own_weights();
  Tensor x = embed(find, batch);
  for (int64_t i = 0; i < config_.num_layers; ++i) layer(i, x, batch, cache.layers[i]);
  if (rows.empty()) return Tensor::host(DType::kF32, {0, config_.vocab_size});
  const Tensor logits = head(find, x, rows);
  return to_host ? backend_.to_host_f32(logits) : backend_.f32_copy(logits);
}

Tensor Transformer::embed(const WeightFn& find, const TokenBatch& batch) {
  const int64_t T = batch.size(), H = config_.hidden_size;
  Tensor emb = alloc(T, config_.embed_dim());
  const Tensor* table = find("embed.tokens");
  STRATA_CHECK(table != nullptr, "embed: no embed.tokens weight");
  backend_.embedding(*table, batch.tokens, emb);
  Tensor x;
  if (const Tensor* proj_in = find("embed.project_in")) {
    x = alloc(T, H);
    backend_.linear(emb, *proj_in, nullptr, x);
  } else {
    x = emb;
  }
  if (config_.family == Family::kOpt) {
    std::vector<int32_t> pos(batch.positions);
    for (auto& p : pos) p += 2;  // OPT's learned positions start at offset 2
    Tensor pe = alloc(T, H);
    const Tensor* positions = find("embed.positions");
    STRATA_CHECK(positions != nullptr, "embed: no embed.positions weight");
    backend_.embedding(*positions, pos, pe);
    backend_.add(x, pe, x);
  }
  return x;
}

Tensor Transformer::head(const WeightFn& find, const Tensor& x, std::span<const int32_t> rows) {
  // Final norm, projection and head on the requested rows only.
  const int64_t R = static_cast<int64_t>(rows.size()), H = config_.hidden_size;
  Tensor h = alloc(R, H);
  backend_.gather_rows(x, rows, h);
  if (const Tensor* g = find("final_norm.weight")) {
    if (config_.family == Family::kOpt)
      backend_.layer_norm(h, g, find("final_norm.bias"), config_.norm_eps, h);
    else
      backend_.rms_norm(h, *g, config_.norm_eps, h);
  } else if (config_.family == Family::kOpt && config_.final_layer_norm) {
    backend_.layer_norm(h, nullptr, nullptr, config_.norm_eps, h);  // no elementwise affine
  }
  if (const Tensor* proj_out = find("embed.project_out")) {
    Tensor p = alloc(R, config_.embed_dim());
    backend_.linear(h, *proj_out, nullptr, p);
    h = p;
  }
  Tensor logits = alloc(R, config_.vocab_size);
  const Tensor* lm_head = find("lm_head.weight");
  STRATA_CHECK(lm_head != nullptr, "head: no lm_head.weight");
  backend_.linear(h, *lm_head, nullptr, logits);
  return logits;
}

void Transformer::layer(int64_t i, Tensor& x, const TokenBatch& batch, LayerKvCache& cache) {
  const WeightFn find = own_weights();
  AttentionInputs in = attention_inputs(i, find, x, batch);
  const int64_t T = batch.size();
  Tensor ctx = alloc(T, config_.num_heads * config_.head_dim);
  Tensor ctx3 = ctx.reshape({T, config_.num_heads, config_.head_dim});
  backend_.attention(in.q, in.k, in.v, cache, batch.seqs, attention_params(i), ctx3);
  finish_layer(i, find, x, ctx);
}

AttentionParams Transformer::attention_params(int64_t i) const {
  AttentionParams params = attn_params_;
  params.sliding_window = config_.window_of_layer(i);
  return params;
}

Transformer::AttentionInputs Transformer::attention_inputs(int64_t i, const WeightFn& find,
                                                           const Tensor& x,
                                                           const TokenBatch& batch) {
  auto w = [&](const char* suffix) { return find(model::layer_weight_name(i, suffix)); };
  const int64_t T = batch.size();
  const int64_t Hq = config_.num_heads, Hkv = config_.num_kv_heads, D = config_.head_dim;
  const float eps = static_cast<float>(config_.norm_eps);
  Tensor h = x;  // post-LN OPT projects x itself
  if (config_.family == Family::kLlama) {
    h = alloc(T, config_.hidden_size);
    backend_.rms_norm(x, *w("attn_norm.weight"), eps, h);
  } else if (config_.do_layer_norm_before) {
    h = alloc(T, config_.hidden_size);
    backend_.layer_norm(x, w("attn_norm.weight"), w("attn_norm.bias"), eps, h);
  }
  Tensor q = alloc(T, Hq * D), k = alloc(T, Hkv * D), v = alloc(T, Hkv * D);
  backend_.linear(h, *w("q.weight"), w("q.bias"), q);  // q [T, Hq*D]
  backend_.linear(h, *w("k.weight"), w("k.bias"), k);  // k [T, Hkv*D]
  backend_.linear(h, *w("v.weight"), w("v.bias"), v);  // v [T, Hkv*D]
  AttentionInputs in{q.reshape({T, Hq, D}), k.reshape({T, Hkv, D}), v.reshape({T, Hkv, D})};
  if (config_.qk_norm) {  // each head's queries and keys, before RoPE
    Tensor qh = q.reshape({T * Hq, D}), kh = k.reshape({T * Hkv, D});
    backend_.rms_norm(qh, *w("q_norm.weight"), eps, qh);
    backend_.rms_norm(kh, *w("k_norm.weight"), eps, kh);
  }
  if (config_.family == Family::kLlama) {
    backend_.rope(in.q, batch.positions, rope_);
    backend_.rope(in.k, batch.positions, rope_);
  }
  return in;
}

void Transformer::finish_layer(int64_t i, const WeightFn& find, Tensor& x, const Tensor& ctx) {
  auto w = [&](const char* suffix) { return find(model::layer_weight_name(i, suffix)); };
  const int64_t T = x.dim(0), H = config_.hidden_size;
  const float eps = static_cast<float>(config_.norm_eps);
  Tensor out = alloc(T, H);
  backend_.linear(ctx, *w("o.weight"), w("o.bias"), out);  // out [T, hidden]
  backend_.add(x, out, x);
  if (config_.family == Family::kLlama) {
    Tensor h = alloc(T, H);
    backend_.rms_norm(x, *w("mlp_norm.weight"), eps, h);
    backend_.add(x, mlp_block(i, find, h), x);
  } else if (config_.do_layer_norm_before) {  // OPT pre-LN
    Tensor h = alloc(T, H);
    backend_.layer_norm(x, w("mlp_norm.weight"), w("mlp_norm.bias"), eps, h);
    backend_.add(x, mlp_block(i, find, h), x);
  } else {  // OPT post-LN (opt-350m)
    backend_.layer_norm(x, w("attn_norm.weight"), w("attn_norm.bias"), eps, x);
    backend_.add(x, mlp_block(i, find, x), x);
    backend_.layer_norm(x, w("mlp_norm.weight"), w("mlp_norm.bias"), eps, x);
  }
}

void Transformer::finish_attention(int64_t i, const WeightFn& find, Tensor& x, const Tensor& ctx, Tensor& mlp_in) {
  STRATA_CHECK(config_.family == Family::kLlama && config_.is_sparse_layer(i),
               "finish_attention: layer " + std::to_string(i) + " is not a mixture of experts");
  auto w = [&](const char* suffix) { return find(model::layer_weight_name(i, suffix)); };
  Tensor out = alloc(x.dim(0), config_.hidden_size);
  backend_.linear(ctx, *w("o.weight"), w("o.bias"), out);
  backend_.add(x, out, x);
  backend_.rms_norm(x, *w("mlp_norm.weight"), static_cast<float>(config_.norm_eps), mlp_in);
}

Tensor Transformer::mlp_block(int64_t i, const WeightFn& find, const Tensor& h) {
  if (config_.is_sparse_layer(i)) return expert_block(i, find, h);
  auto w = [&](const char* suffix) { return find(model::layer_weight_name(i, suffix)); };
  const int64_t T = h.dim(0), F = config_.intermediate_size;
  Tensor out = alloc(T, config_.hidden_size);
  if (config_.family == Family::kOpt) {
    Tensor a = alloc(T, F);
    backend_.linear(h, *w("fc1.weight"), w("fc1.bias"), a);  // a [T, ffn]
    backend_.relu(a);
    backend_.linear(a, *w("fc2.weight"), w("fc2.bias"), out);
  } else {
    Tensor gate = alloc(T, F), up = alloc(T, F);
    backend_.linear(h, *w("gate.weight"), w("gate.bias"), gate);  // [T, ffn]
    backend_.linear(h, *w("up.weight"), w("up.bias"), up);        // [T, ffn]
    backend_.silu_mul(gate, up, gate);
    backend_.linear(gate, *w("down.weight"), w("down.bias"), out);
  }
  return out;
}

ExpertRouting Transformer::route(int64_t i, const WeightFn& find, const Tensor& h) {
  const Tensor* router = find(model::layer_weight_name(i, "router.weight"));
  STRATA_CHECK(router != nullptr, "layer " + std::to_string(i) + ": no router weight");
  Tensor logits = alloc(h.dim(0), config_.num_experts);
  backend_.linear(h, *router, nullptr, logits);
  return route_tokens(backend_.to_host_f32(logits), config_.experts_per_token, config_.norm_topk_prob);
}

void Transformer::run_expert(int64_t i, int64_t e, const WeightFn& find, const Tensor& h,
                             const ExpertRouting& routing, ExpertBuffers& buffers, Tensor& out) {
  const int64_t n = routing.tokens_of(e);
  if (n == 0) return;
  const std::string prefix = "experts." + std::to_string(e) + ".";
  auto w = [&](const char* m) {
    const Tensor* t = find(model::layer_weight_name(i, prefix + m));
    STRATA_CHECK(t != nullptr, "layer " + std::to_string(i) + ": no " + prefix + m);
    return t;
  };
  Tensor x = buffers.rows.slice_rows(0, n), gate = buffers.gate.slice_rows(0, n),
         up = buffers.up.slice_rows(0, n);
  backend_.gather_rows(h, routing.rows_of(e), x);
  backend_.linear(x, *w("gate.weight"), nullptr, gate);
  backend_.linear(x, *w("up.weight"), nullptr, up);
  backend_.silu_mul(gate, up, gate);
  backend_.linear(gate, *w("down.weight"), nullptr, x);
  backend_.scatter_add_rows(x, routing.rows_of(e), routing.weights_of(e), out);
}

Tensor Transformer::expert_block(int64_t i, const WeightFn& find, const Tensor& h) {
  const ExpertRouting routing = route(i, find, h);
  auto out = backend_.allocate(backend_.activation_dtype(), {h.dim(0), config_.hidden_size});
  STRATA_CHECK(out.is_ok(), out.status().to_string());
  // One set of buffers for the busiest expert, which every expert's rows reuse.
  int64_t most = 0;
  for (int64_t e = 0; e < config_.num_experts; ++e) most = std::max(most, routing.tokens_of(e));
  ExpertBuffers buffers{alloc(most, config_.hidden_size), alloc(most, config_.expert_intermediate_size),
                        alloc(most, config_.expert_intermediate_size)};
  for (int64_t e = 0; e < config_.num_experts; ++e) run_expert(i, e, find, h, routing, buffers, *out);
  return std::move(out).value();
}

}  // namespace strata::compute
