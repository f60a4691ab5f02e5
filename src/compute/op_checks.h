// Argument checks that every Backend runs before an op: shapes, head counts, ranges. They are
// invariants of the caller (the transformer builds these arguments), so a failure aborts through
// STRATA_CHECK with a message naming the op and the shapes. Pure, thread safe.
#pragma once

#include <cstdint>
#include <span>

#include "compute/backend.h"

namespace strata::compute {

// q [T, Hq, D], k/v [T, Hkv, D], cache k/v [slots, max_len, Hkv, D], out like q; Hq a multiple of
// Hkv; a sliding window, if any, positive.
void check_attention_shapes(const Tensor& q, const Tensor& k, const Tensor& v,
                            const LayerKvCache& cache, const Tensor& out,
                            const AttentionParams& params);

// Sequence `index` of a ragged batch of `t_count` rows: its slot, cache rows (slot * max_len +
// position, running on past its slot's end when it is longer) and batch rows in bounds.
void check_seq_span(size_t index, const SeqSpan& span, int64_t slots, int64_t max_len,
                    int64_t t_count);
// No two sequences of a batch write or read the same KV rows.
void check_seq_rows_apart(std::span<const SeqSpan> seqs, int64_t max_len);

// x [R, ...] rows of C elements, y holding rows.size() rows of C, every row in [0, R).
void check_gather_rows(const Tensor& x, std::span<const int32_t> rows, const Tensor& y);
void check_scatter_add_rows(const Tensor& x, std::span<const int32_t> rows,
                            std::span<const float> weights, const Tensor& y);

// table [vocab, C], y holding ids.size() rows of C, every id in [0, vocab).
void check_embedding(const Tensor& table, std::span<const int32_t> ids, const Tensor& y);

}  // namespace strata::compute
