#include "offload/step_state.h"

#include <string>
#include <vector>

namespace strata::offload {

namespace {

// Each sequence into its GPU batch's SubBatch, checking order, room and kind.
Status split_sequences(const compute::TokenBatch& batch, const BlockDims& dims,
                       const StepLimits& limits, StepState* st) {
  bool starting = false, running = false, chunk = false;  // chunk: a running sequence brings several tokens
  int32_t last_slot = -1;
  int64_t last_end = 0;  // the row after the previous sequence's, in its batch
  const int64_t len = limits.max_len, group_rows = int64_t{limits.group} * len;
  std::vector<int32_t> prompts(static_cast<size_t>(dims.batches), 0);
  for (const auto& s : batch.seqs) {
    if (s.slot <= last_slot || s.slot >= limits.slots)
      return invalid_argument("offload: sequences must come in increasing slot order within [0, " +
                              std::to_string(limits.slots) + ")");
    const int64_t b = s.slot / limits.group, local = s.slot - b * limits.group;
    if (last_slot >= 0 && last_slot / limits.group != b) last_end = 0;
    last_slot = s.slot;
    const int64_t end = local * len + s.past_len + s.num_tokens;
    if (!limits.paged && s.past_len + s.num_tokens > limits.max_len)
      return invalid_argument("offload: the sequence in slot " + std::to_string(s.slot) + " needs " +
                              std::to_string(s.past_len + s.num_tokens) +
                              " positions; reset() made room for " + std::to_string(limits.max_len));
    if (limits.paged && (end > group_rows || local * len < last_end))
      return invalid_argument("offload: the sequence at page " + std::to_string(s.slot) + " needs " +
                              std::to_string(s.past_len + s.num_tokens) + " positions, which run " +
                              (end > group_rows ? "past its GPU batch's pages" : "into the sequence before it"));
    last_end = end;
    const bool starts = s.past_len == 0;
    (starts ? starting : running) = true;
    chunk = chunk || (!starts && s.num_tokens > 1);
    SubBatch& sb = st->subs[b];
    if (!st->active[b]) sb.first_row = s.offset;
    st->active[b] = true;
    sb.batch.add_sequence(static_cast<int32_t>(local), s.past_len,
                          std::span<const int32_t>(batch.tokens).subspan(s.offset, s.num_tokens));
    if (starts && ++prompts[b] > limits.group_prompts)
      return invalid_argument("offload: GPU batch " + std::to_string(b) + " takes more than " +
                              std::to_string(limits.group_prompts) + " prompts in one step");
    if (static_cast<int32_t>(sb.batch.seqs.size()) > limits.group_seqs)
      return invalid_argument("offload: GPU batch " + std::to_string(b) + " holds more than " +
                              std::to_string(limits.group_seqs) + " sequences in one step");
    if (limits.group_tokens > 0 && sb.batch.size() > limits.group_tokens)
      return invalid_argument("offload: GPU batch " + std::to_string(b) + " carries more than " +
                              std::to_string(limits.group_tokens) + " tokens in one step, what its activations hold");
  }
  const bool mixed = running && (starting || chunk);
  if (mixed && !limits.mixed)
    return unsupported(starting ? "offload: a step mixes prompts and decoding; run them as separate steps"
                                : "offload: decode steps take one token per sequence");
  // A prompt step of its own keeps the policy's prompt length (CPU attention stages its prompts
  // at that length); a mixed step's prompt tokens keep to the batches' token limit.
  if (!running)
    for (const auto& s : batch.seqs)
      if (s.num_tokens > dims.prefill_len)
        return invalid_argument("offload: a prompt of " + std::to_string(s.num_tokens) +
                                " tokens is longer than the policy's prompt length " +
                                std::to_string(dims.prefill_len));
  st->prefill = !running && starting;
  st->mixed = mixed;
  return Status::ok();
}

}  // namespace

Status split_step(const compute::TokenBatch& batch, std::span<const int32_t> rows,
                  const BlockDims& dims, const StepLimits& limits, StepState* st) {
  *st = StepState{};
  st->subs.resize(static_cast<size_t>(dims.batches));
  st->active.assign(static_cast<size_t>(dims.batches), false);
  STRATA_RETURN_IF_ERROR(split_sequences(batch, dims, limits, st));
  // Logit rows, by batch, in order.
  int32_t r_out = 0;
  for (int64_t b = 0, ri = 0; b < dims.batches; ++b) {
    if (!st->active[b]) continue;
    SubBatch& sb = st->subs[b];
    sb.logit_begin = r_out;
    const int32_t end = sb.first_row + sb.batch.size();
    while (ri < static_cast<int64_t>(rows.size()) && rows[ri] >= sb.first_row && rows[ri] < end) {
      sb.rows.push_back(rows[ri++] - sb.first_row);
      ++r_out;
    }
  }
  if (r_out != static_cast<int32_t>(rows.size()))
    return invalid_argument("offload: logit rows must be in increasing order within [0, " +
                            std::to_string(batch.size()) + ")");
  return Status::ok();
}

std::vector<KvRows> kv_rows(std::span<const compute::SeqSpan> seqs, bool written_only) {
  std::vector<KvRows> r;
  for (const auto& s : seqs)
    r.push_back({s.slot, written_only ? s.past_len : 0, static_cast<int64_t>(s.past_len) + s.num_tokens});
  return r;
}

}  // namespace strata::offload
