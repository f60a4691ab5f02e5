#include "compute/op_checks.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "common/check.h"

namespace strata::compute {

void check_attention_shapes(const Tensor& q, const Tensor& k, const Tensor& v,
                            const LayerKvCache& cache, const Tensor& out,
                            const AttentionParams& params) {
  STRATA_CHECK(q.rank() == 3 && k.rank() == 3 && v.rank() == 3,
               "attention: q, k, v must be [T, heads, head_dim]");
  STRATA_CHECK(cache.k.rank() == 4 && cache.k.shape() == cache.v.shape(),
               "attention: cache k/v must both be [slots, max_len, kv_heads, head_dim], got " +
                   shape_string(cache.k.shape()) + " and " + shape_string(cache.v.shape()));
  const int64_t t_count = q.dim(0), hq = q.dim(1), d = q.dim(2), hkv = k.dim(1);
  STRATA_CHECK(k.shape() == v.shape() && k.dim(0) == t_count && k.dim(2) == d,
               "attention: k " + shape_string(k.shape()) + " / v " + shape_string(v.shape()) +
                   " do not match q " + shape_string(q.shape()));
  STRATA_CHECK(hkv > 0 && hq % hkv == 0, "attention: " + std::to_string(hq) +
                                             " query heads are not a multiple of " +
                                             std::to_string(hkv) + " kv heads");
  STRATA_CHECK(cache.k.dim(2) == hkv && cache.k.dim(3) == d,
               "attention: cache " + shape_string(cache.k.shape()) + " does not match k " +
                   shape_string(k.shape()));
  STRATA_CHECK(out.shape() == q.shape(),
               "attention: out " + shape_string(out.shape()) + " for q " + shape_string(q.shape()));
  STRATA_CHECK(!params.sliding_window || *params.sliding_window > 0,
               "attention: sliding window must be positive");
}

void check_seq_span(size_t index, const SeqSpan& sp, int64_t slots, int64_t max_len,
                    int64_t t_count) {
  // The message is built only when a check fails: this runs for every sequence of every layer.
  auto which = [index] { return "attention: sequence " + std::to_string(index) + " "; };
  STRATA_CHECK(
      sp.slot >= 0 && sp.slot < slots,
      which() + "slot " + std::to_string(sp.slot) + " outside [0, " + std::to_string(slots) + ")");
  // A sequence longer than a slot runs on into the next slots (paged KV): its rows must end
  // inside the cache.
  STRATA_CHECK(sp.past_len >= 0 && sp.num_tokens >= 0 &&
                   int64_t{sp.slot} * max_len + sp.past_len + sp.num_tokens <= slots * max_len,
               which() + "slot " + std::to_string(sp.slot) + ", past_len " + std::to_string(sp.past_len) +
                   " + num_tokens " + std::to_string(sp.num_tokens) + " runs past the cache's " +
                   std::to_string(slots) + " slots of " + std::to_string(max_len));
  STRATA_CHECK(sp.offset >= 0 && int64_t{sp.offset} + sp.num_tokens <= t_count,
               which() + "rows [" + std::to_string(sp.offset) + ", " +
                   std::to_string(sp.offset + sp.num_tokens) +
                   ") outside T = " + std::to_string(t_count));
}

void check_seq_rows_apart(std::span<const SeqSpan> seqs, int64_t max_len) {
  auto rows_of = [max_len](const SeqSpan& sp) {  // [first, end) of its rows
    return std::pair<int64_t, int64_t>{int64_t{sp.slot} * max_len, int64_t{sp.slot} * max_len + sp.past_len + sp.num_tokens};
  };
  // Batches come in slot order: then each sequence need only end before the next one starts.
  bool ordered = true;
  for (size_t i = 1; i < seqs.size() && ordered; ++i) ordered = seqs[i - 1].slot < seqs[i].slot;
  std::vector<std::pair<int64_t, int64_t>> rows;
  if (!ordered) {
    for (const SeqSpan& sp : seqs) rows.push_back(rows_of(sp));
    std::sort(rows.begin(), rows.end());
  }
  for (size_t i = 1; i < seqs.size(); ++i) {
    const auto before = ordered ? rows_of(seqs[i - 1]) : rows[i - 1];
    const auto after = ordered ? rows_of(seqs[i]) : rows[i];
    STRATA_CHECK(after.first >= before.second,
                 "attention: two sequences share KV rows: one ends at row " + std::to_string(before.second) +
                     ", the next starts at " + std::to_string(after.first) + " (slots of " +
                     std::to_string(max_len) + " positions)");
  }
}

void check_gather_rows(const Tensor& x, std::span<const int32_t> rows, const Tensor& y) {
  STRATA_CHECK(x.rank() >= 1, "gather_rows: x must have rows");
  const int64_t nx = x.dim(0), c = nx == 0 ? 0 : x.numel() / nx,
                n = static_cast<int64_t>(rows.size());
  STRATA_CHECK(y.numel() == n * c, "gather_rows: y " + shape_string(y.shape()) + " for " +
                                       std::to_string(n) + " rows of " + shape_string(x.shape()));
  for (int64_t i = 0; i < n; ++i) {
    STRATA_CHECK(rows[i] >= 0 && rows[i] < nx, "gather_rows: row " + std::to_string(rows[i]) +
                                                   " outside [0, " + std::to_string(nx) + ")");
  }
}

void check_scatter_add_rows(const Tensor& x, std::span<const int32_t> rows,
                            std::span<const float> weights, const Tensor& y) {
  const int64_t n = static_cast<int64_t>(rows.size());
  STRATA_CHECK(x.rank() == 2 && y.rank() == 2 && x.dim(0) == n && x.dim(1) == y.dim(1) &&
                   static_cast<int64_t>(weights.size()) == n,
               "scatter_add_rows: x " + shape_string(x.shape()) + " with " + std::to_string(n) +
                   " rows and " + std::to_string(weights.size()) + " weights into y " +
                   shape_string(y.shape()));
  std::vector<bool> seen(static_cast<size_t>(y.dim(0)));
  for (int64_t i = 0; i < n; ++i) {
    STRATA_CHECK(rows[i] >= 0 && rows[i] < y.dim(0) && !seen[rows[i]],
                 "scatter_add_rows: row " + std::to_string(rows[i]) + " outside [0, " +
                     std::to_string(y.dim(0)) + ") or repeated");
    seen[rows[i]] = true;
  }
}

void check_embedding(const Tensor& table, std::span<const int32_t> ids, const Tensor& y) {
  STRATA_CHECK(table.rank() == 2,
               "embedding: table must be [vocab, C], got " + shape_string(table.shape()));
  const int64_t vocab = table.dim(0), c = table.dim(1), n = static_cast<int64_t>(ids.size());
  STRATA_CHECK(y.numel() == n * c && (n == 0 || y.dim(-1) == c),
               "embedding: y " + shape_string(y.shape()) + " for " + std::to_string(n) +
                   " ids of width " + std::to_string(c));
  for (int64_t i = 0; i < n; ++i) {
    STRATA_CHECK(ids[i] >= 0 && ids[i] < vocab, "embedding: id " + std::to_string(ids[i]) + " at " +
                                                    std::to_string(i) + " outside [0, " +
                                                    std::to_string(vocab) + ")");
  }
}

}  // namespace strata::compute
