// SequenceModel: what the Generator drives: a model that keeps the KV state of a set of sequences
// (slots) and runs one ragged step over them at a time. The Transformer with its own KV cache
// (TransformerModel) and the offloading engine (offload/engine.h) implement it.
// Not thread safe: one step at a time.
#pragma once

#include <cstdint>
#include <span>

#include "common/status.h"
#include "common/tensor.h"
#include "compute/backend.h"
#include "compute/transformer.h"
#include "model/config.h"

namespace strata::compute {

class SequenceModel {
 public:
  virtual ~SequenceModel() = default;
  virtual const model::ModelConfig& config() const = 0;
  // The backend the logits of forward() were computed on (the Generator asks it for their
  // statistics: on the GPU for a CUDA backend).
  virtual Backend& backend() = 0;
  // Drops every sequence and makes room for `slots` sequences of up to `max_len` positions
  // (0 slots: just drop them, freeing what can be freed).
  // kOutOfMemory / kInvalidArgument when that does not fit what the model was built for.
  virtual Status reset(int32_t slots, int32_t max_len) = 0;
  // One step: appends the batch's keys and values and returns the host F32 logits
  // [rows.size(), vocab] of the batch rows listed in `rows`.
  virtual Result<Tensor> forward(const TokenBatch& batch, std::span<const int32_t> rows) = 0;
  // Whether one step may hold the prompts of sequences starting in it beside the single tokens
  // of running ones (otherwise a step is all prompts or all decode tokens).
  virtual bool mixed_steps() const { return false; }
};

// A Transformer with a KV cache it allocates on its own backend at reset().
class TransformerModel final : public SequenceModel {
 public:
  explicit TransformerModel(Transformer& model) : model_(model) {}
  const model::ModelConfig& config() const override { return model_.config(); }
  Backend& backend() override { return model_.backend(); }
  Status reset(int32_t slots, int32_t max_len) override {
    cache_ = {};  // free the old cache before allocating the new one
    if (slots == 0) return Status::ok();
    STRATA_ASSIGN_OR_RETURN(cache_, model_.make_kv_cache(slots, max_len));
    return Status::ok();
  }
  Result<Tensor> forward(const TokenBatch& batch, std::span<const int32_t> rows) override {
    return model_.forward(batch, cache_, rows);
  }
  bool mixed_steps() const override { return true; }  // ragged attention over each sequence's past

 private:
  Transformer& model_;
  KvCache cache_;
};

}  // namespace strata::compute
