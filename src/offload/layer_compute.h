// LayerCompute: the model's arithmetic on the GPU's compute lane, over weights wherever the
// WeightSlots put them and KV wherever the KvTiers keep it: embeddings (token rows looked up on
// the host when the table stays there, through pinned rows [gbs * prompt, embed] fp16), whole
// layers, the halves of a layer split around attention on the CPU, and the head. Owns the layer
// pieces (compute::Transformer, holding no weights) and the pinned embedding rows. Handles
// kEmbed, kLayer, kPreAttention, kPostAttention and kHead. Not thread safe. Units: bytes.
#pragma once

#include <memory>

#include "common/status.h"
#include "common/tensor.h"
#include "compute/transformer.h"
#include "cuda/lanes.h"
#include "model/config.h"
#include "offload/cpu_attention.h"
#include "offload/executor.h"
#include "offload/hidden_staging.h"
#include "offload/kv_tiers.h"
#include "offload/step_state.h"
#include "offload/weight_slots.h"

namespace strata::offload {

class LayerCompute {
 public:
  // The components it reads must outlive it.
  static Result<std::unique_ptr<LayerCompute>> create(const model::ModelConfig& config,
                                                      const BlockDims& dims,
                                                      compute::Backend& backend, cuda::Lanes& lanes,
                                                      const WeightSlots& weights, KvTiers& kv,
                                                      const HiddenStaging& hidden,
                                                      const CpuAttention& cpu_attention);

  compute::Transformer& model() { return *model_; }
  void bind(Handlers& handlers, StepState& step);
  uint64_t pinned_bytes() const { return pinned_bytes_; }

 private:
  LayerCompute(const model::ModelConfig& config, const BlockDims& dims, compute::Backend& backend,
               cuda::Lanes& lanes, const WeightSlots& weights, KvTiers& kv,
               const HiddenStaging& hidden, const CpuAttention& cpu_attention);
  compute::Transformer::WeightFn finder(int64_t unit) const;
  Status embed(const Action& a, StepState& step);
  Status layer(const Action& a, StepState& step);
  uint64_t post_attention(const Action& a, StepState& step);
  // The end of a batch's layer after attention: all of it, or up to the experts (defer_experts).
  void finish(const Action& a, StepState& step, const Tensor& ctx);
  // add_experts: the previous layer's expert output added to the batch's hidden states.
  void add_experts(const Action& a, StepState& step);
  void head(const Action& a, StepState& step);
  // The embeddings of `ids` from table `name` into `out`: looked up on the host into `host_rows`
  // and copied, or gathered on the GPU.
  Status lookup(const char* name, std::span<const int32_t> ids, Tensor& host_rows, Tensor& out);

  model::ModelConfig config_;
  BlockDims dims_;
  compute::Backend& backend_;
  cuda::Lanes& lanes_;
  const WeightSlots& weights_;
  KvTiers& kv_;
  const HiddenStaging& hidden_;
  const CpuAttention& cpu_attention_;
  std::unique_ptr<compute::Transformer> model_;
  Tensor embed_rows_;      // pinned [gbs * prompt, embed] when the token table is on the host
  Tensor embed_pos_rows_;  // pinned [gbs * prompt, hidden] when OPT's position table is
  uint64_t pinned_bytes_ = 0;
  bool read_output_by_kernel_ = false;  // STRATA_ATTENTION_OUTPUT_READ=kernel (see post_attention)
};

}  // namespace strata::offload
