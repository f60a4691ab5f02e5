// SequenceModel: what the Generator drives: a model that keeps the KV state of a set of sequences
// (slots) and runs one ragged step over them at a time. The Transformer with its own KV cache
// (TransformerModel) and the offloading engine (offload/engine.h) implement it.
// Not thread safe: one step at a time.
#pragma once

#include <climits>
#include <cstdint>
#include <span>
#include <string>

#include "common/status.h"
#include "common/tensor.h"
#include "compute/backend.h"
#include "compute/transformer.h"
#include "model/config.h"

namespace strata::compute {

// A KV cache cut into pages for sequences of many lengths (SequenceModel::reset_paged): a
// sequence takes as many consecutive pages of one group as its prompt and answer need, its first
// page is its slot, and its KV rows are slot * page_len + position.
struct PageLayout {
  int32_t pages = 0;          // in all: forward()'s slots are pages
  int32_t page_len = 0;       // positions per page
  int32_t group_pages = 0;    // pages [g * group_pages, (g + 1) * group_pages) form group g
  int32_t group_seqs = 0;     // the most sequences one group holds at once
  int32_t group_prompts = 0;  // the most prompts one group takes in one step
};

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
  // Drops every sequence and cuts the KV cache into pages: about `rows` positions in all, in
  // pages of `page_len`, unless the model was built for a size of its own (the answer says what
  // it made). kUnsupported for a model without paged KV (use reset()).
  virtual Result<PageLayout> reset_paged(int64_t rows, int32_t page_len) {
    (void)rows;
    (void)page_len;
    return unsupported("this model keeps a slot of the longest length per sequence (no paged KV)");
  }
  // One step: appends the batch's keys and values and returns the host F32 logits
  // [rows.size(), vocab] of the batch rows listed in `rows`.
  virtual Result<Tensor> forward(const TokenBatch& batch, std::span<const int32_t> rows) = 0;
  // forward() with the logits left where backend() computed them: F32 [rows.size(), vocab] in
  // its memory (on the GPU for a CUDA backend), for sampling through its logit operations
  // (logit_stats, adjust_logits, draw_tokens, logit_values), so that only the chosen tokens
  // cross to the host. By default forward()'s host logits.
  virtual Result<Tensor> forward_for_sampling(const TokenBatch& batch, std::span<const int32_t> rows) {
    return forward(batch, rows);
  }
  // Whether one step may hold the prompts of sequences starting in it beside the single tokens
  // of running ones (otherwise a step is all prompts or all decode tokens).
  virtual bool mixed_steps() const { return false; }
  // The most prompt tokens one mixed step may carry in all (0: as many as the caller brings).
  virtual int64_t mixed_step_prompt_tokens() const { return 0; }
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
  Result<PageLayout> reset_paged(int64_t rows, int32_t page_len) override {
    if (rows < 1 || page_len < 1)
      return invalid_argument("reset_paged: rows and page_len must be >= 1 (got " + std::to_string(rows) + ", " +
                              std::to_string(page_len) + ")");
    const int64_t pages = (rows + page_len - 1) / page_len;
    if (pages > INT32_MAX) return invalid_argument("reset_paged: " + std::to_string(pages) + " pages are too many");
    const auto p = static_cast<int32_t>(pages);
    STRATA_RETURN_IF_ERROR(reset(p, page_len));
    return PageLayout{p, page_len, p, p, p};
  }
  Result<Tensor> forward(const TokenBatch& batch, std::span<const int32_t> rows) override {
    return model_.forward(batch, cache_, rows);
  }
  Result<Tensor> forward_for_sampling(const TokenBatch& batch, std::span<const int32_t> rows) override {
    return model_.forward(batch, cache_, rows, /*to_host=*/false);
  }
  bool mixed_steps() const override { return true; }  // ragged attention over each sequence's past

 private:
  Transformer& model_;
  KvCache cache_;
};

}  // namespace strata::compute
