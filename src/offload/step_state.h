// The step in flight, as the engine's components see it: the block's fixed sizes, the step's
// batch split by GPU batch, and each GPU batch's tensors between one action and the next (hidden
// states, the q/k/v of a batch attended on the CPU, the step's logits). step() fills it; the
// handlers read and write it on the issuing thread (host tasks copy what they need when they are
// made). Not thread safe. Units: tokens, sequences.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"
#include "compute/sequence_model.h"
#include "compute/transformer.h"
#include "offload/kv_file.h"
#include "offload/plan.h"

namespace strata::offload {

// The block's sizes, fixed when the engine is built.
struct BlockDims {
  int64_t layers = 0;       // unit `layers` holds the head and the other non-layer weights
  int64_t batches = 1;      // GPU batches per block
  int64_t gbs = 1;          // sequences per GPU batch
  int64_t prefill_len = 0;  // the policy's prompt length: the longest prompt a step may carry
  int64_t max_len = 0;      // prompt + generated positions per sequence
};

// One GPU batch's share of a step.
struct SubBatch {
  compute::TokenBatch batch;  // local slots (from 0), offsets from 0
  int32_t first_row = 0;      // its first token's row in the step's batch
  std::vector<int32_t> rows;  // its logit rows, local
  int32_t logit_begin = 0;    // where its logit rows go in the step's output
};

struct StepState {
  bool prefill = false;           // every sequence starts in this step (a prompt step)
  bool mixed = false;             // a decode step that carries prompt tokens too (StepLimits::mixed)
  std::vector<bool> active;       // [batches]: the GPU batch has sequences this step
  std::vector<SubBatch> subs;     // [batches]
  std::vector<Tensor> x;          // [batches] hidden states [tokens, hidden] (gpu)
  std::vector<compute::Transformer::AttentionInputs> qkv;  // [batches] q, k, v (gpu) of batches
                                                            // attended on the CPU
  Tensor logits;                  // [logit rows, vocab] f32 (gpu)
  // A decode step's sparse layers with experts over the whole step (StepShape::block_experts):
  // every batch's MLP input at its rows of the step's batch (SubBatch::first_row), and the
  // experts' output at the same rows [tokens, hidden] (gpu).
  Tensor experts_in, experts_out;
};

// How much of the block the sequences in use may take (OffloadEngine::reset's arguments, or the
// pages of OffloadEngine::reset_paged).
struct StepLimits {
  int32_t slots = 0;    // sequences in [0, slots): slots of the KV layout, or its pages
  int32_t max_len = 0;  // positions per sequence (paged: per page; a sequence runs on over its pages)
  bool paged = false;
  int32_t group = 1;          // slots per GPU batch: slots [b * group, (b + 1) * group) are batch b
  int32_t group_seqs = 1;     // the most sequences a GPU batch holds in one step
  int32_t group_prompts = 1;  // the most prompts a GPU batch takes in one step
  int64_t group_tokens = 0;   // the most tokens a GPU batch carries in one step (0: no limit)
  // Decode steps may carry prompt tokens (of sequences starting, or a prompt's next chunk) beside
  // the running sequences' single tokens: attention runs on the GPU for every KV tier.
  bool mixed = false;
};

// Splits a step's batch by GPU batch (slots [b * limits.group, (b + 1) * limits.group) form batch b) and its logit
// rows, into `st` (subs, active, prefill, mixed; the tensors are cleared). Errors say what the
// batch breaks: slot order, lengths, a GPU batch's sequences, prompts or tokens, prompts mixed with
// decoding where the limits do not allow it, rows out of order.
Status split_step(const compute::TokenBatch& batch, std::span<const int32_t> rows,
                  const BlockDims& dims, const StepLimits& limits, StepState* st);

// The rows of a GPU batch's KV that a step reads (every position up to its new ones) or writes
// (its new ones).
std::vector<KvRows> kv_rows(std::span<const compute::SeqSpan> seqs, bool written_only);

}  // namespace strata::offload
