// Transformer: the forward pass of an OPT or Llama-family decoder (mixture-of-experts included) over a ragged batch (several
// sequences, each with its own number of new tokens and its own past in the KV cache), built
// from Backend ops. It owns the backend-resident weights; the caller owns the KV cache.
// Not thread safe: one forward at a time.
#pragma once

#include <functional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"
#include "compute/backend.h"
#include "compute/expert_routing.h"
#include "model/config.h"
#include "model/weight_source.h"

namespace strata::compute {

// Backend-resident weights by canonical name (see model/weight_names.h).
class ModelWeights {
 public:
  void put(std::string name, Tensor t) { tensors_[std::move(name)] = std::move(t); }
  const Tensor* find(const std::string& name) const;
  const Tensor& get(const std::string& name) const;  // STRATA_CHECKs presence
  uint64_t bytes() const;

 private:
  std::unordered_map<std::string, Tensor> tensors_;
};

// Reads every weight of `config` from `source` and uploads it to `backend`.
Result<ModelWeights> load_weights(const model::ModelConfig& config, model::WeightSource& source,
                                  Backend& backend);

// The KV cache of every layer for `slots` sequences of up to `max_len` tokens each.
struct KvCache {
  int32_t slots = 0;
  int32_t max_len = 0;
  std::vector<LayerKvCache> layers;
};

// One step of a ragged batch: T new tokens of several sequences laid end to end.
struct TokenBatch {
  std::vector<int32_t> tokens;     // [T] token ids
  std::vector<int32_t> positions;  // [T] position of each token within its sequence
  std::vector<SeqSpan> seqs;       // one per sequence; spans cover [0, T) in order

  int32_t size() const { return static_cast<int32_t>(tokens.size()); }
  // Appends `ids` as the new tokens of the sequence in `slot` that already has `past_len` tokens.
  void add_sequence(int32_t slot, int32_t past_len, std::span<const int32_t> ids);
};

class Transformer {
 public:
  Transformer(model::ModelConfig config, Backend& backend, ModelWeights weights);

  const model::ModelConfig& config() const { return config_; }
  Backend& backend() { return backend_; }

  Result<KvCache> make_kv_cache(int32_t slots, int32_t max_len);

  // Runs `batch` through the model, appending its keys and values to `cache`, and returns the
  // logits [rows.size(), vocab] (F32) of the batch rows listed in `rows`: on the host, or with
  // `to_host` false in the backend's memory (Backend::f32_copy).
  Result<Tensor> forward(const TokenBatch& batch, KvCache& cache, std::span<const int32_t> rows,
                         bool to_host = true);

  // The pieces of forward(), for a caller that keeps weights and the KV cache elsewhere (the
  // offloading engine). `find` looks a weight up by canonical name (null when absent); the
  // Transformer's own weights are not consulted by these.
  using WeightFn = std::function<const Tensor*(const std::string& name)>;
  struct AttentionInputs {
    Tensor q, k, v;  // [T, Hq, D], [T, Hkv, D], [T, Hkv, D], positions already rotated
  };
  // Checks the batch's token ids and positions against the model (not against a cache).
  Status check_batch(const TokenBatch& batch) const;
  // x [T, hidden] for the batch's tokens (and positions, for OPT).
  Tensor embed(const WeightFn& find, const TokenBatch& batch);
  // Layer i up to attention: the queries, keys and values of x [T, hidden].
  AttentionInputs attention_inputs(int64_t i, const WeightFn& find, const Tensor& x,
                                   const TokenBatch& batch);
  AttentionParams attention_params(int64_t i) const;
  // The rest of layer i once ctx [T, Hq * D] holds the attention output: x updated in place.
  void finish_layer(int64_t i, const WeightFn& find, Tensor& x, const Tensor& ctx);
  // A sparse layer's part of finish_layer() before its experts: the output projection added to x
  // (in place) and the MLP's normalised input written to mlp_in [T, hidden]. The caller runs
  // expert_block() over the rows of many such calls and adds its output to each x.
  void finish_attention(int64_t i, const WeightFn& find, Tensor& x, const Tensor& ctx, Tensor& mlp_in);
  // A sparse layer's MLP over h [T, hidden]: route, then each expert over its tokens; the output
  // [T, hidden] is new backend memory.
  Tensor expert_block(int64_t i, const WeightFn& find, const Tensor& h);
  // A mixture-of-experts layer's routing of h [T, hidden] (the MLP input), read back to the host.
  ExpertRouting route(int64_t i, const WeightFn& find, const Tensor& h);
  // Working space of one expert at a time: its gathered rows (then its output) [n, hidden], and
  // its gate and up [n, expert ffn], for up to as many rows as the buffers have.
  struct ExpertBuffers {
    Tensor rows, gate, up;
  };
  // Adds expert e of layer i over its routed rows of h into out [T, hidden].
  void run_expert(int64_t i, int64_t e, const WeightFn& find, const Tensor& h,
                  const ExpertRouting& routing, ExpertBuffers& buffers, Tensor& out);
  // Logits [rows.size(), vocab] in backend memory (activation dtype) of x's rows.
  Tensor head(const WeightFn& find, const Tensor& x, std::span<const int32_t> rows);
  // A [rows, cols] activation in backend memory (uninitialised).
  Tensor alloc(int64_t rows, int64_t cols);

 private:
  // x [T, hidden] -> x after layer `i` (in place).
  void layer(int64_t i, Tensor& x, const TokenBatch& batch, LayerKvCache& cache);
  Tensor mlp_block(int64_t i, const WeightFn& find, const Tensor& h);
  WeightFn own_weights() const;

  model::ModelConfig config_;
  Backend& backend_;
  ModelWeights weights_;
  RopeTable rope_;
  AttentionParams attn_params_;  // the scale; the window is per layer
};

}  // namespace strata::compute
