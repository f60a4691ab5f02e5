// Causal attention over the KV cache: hand-computed softmax, GQA against a double reference,
// ragged batches, prefill versus token-by-token decode, sliding windows, bounds checks.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "compute/compute_test_util.h"

namespace strata::compute {
namespace {

using testing::BackendTest;
using testing::expect_close;
using testing::tensor_from;
using testing::values_of;

// One sequence's data for a step: its whole key/value history ([past + n, hkv, d]; the first
// `past` positions are already in the cache) and the queries of its n new tokens ([n, hq, d]).
struct SeqData {
  int32_t slot = 0;
  int32_t past = 0;
  int32_t n = 0;
  std::vector<float> k, v, q;
};

struct Dims {
  int64_t hq, hkv, d, slots, max_len;
};

SeqData make_seq(const Dims& dims, int32_t slot, int32_t past, int32_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  SeqData s;
  s.slot = slot;
  s.past = past;
  s.n = n;
  auto fill = [&](std::vector<float>& v, int64_t count) {
    v.resize(count);
    for (float& x : v) x = dist(gen);
  };
  fill(s.k, (past + n) * dims.hkv * dims.d);
  fill(s.v, (past + n) * dims.hkv * dims.d);
  fill(s.q, n * dims.hq * dims.d);
  return s;
}

// out [n, hq, d] in double: softmax(scale q·k_j) over j in [max(0, p - window + 1), p].
std::vector<double> reference(const Dims& dims, const SeqData& s, float scale, int64_t window) {
  const int64_t hq = dims.hq, hkv = dims.hkv, d = dims.d, group = hq / hkv;
  std::vector<double> out(s.n * hq * d, 0.0);
  for (int64_t i = 0; i < s.n; ++i) {
    const int64_t p = s.past + i;
    const int64_t lo = window > 0 ? std::max<int64_t>(0, p - window + 1) : 0;
    for (int64_t h = 0; h < hq; ++h) {
      const int64_t kh = h / group;
      std::vector<double> w;
      double mx = -INFINITY;
      for (int64_t j = lo; j <= p; ++j) {
        double dot = 0;
        for (int64_t e = 0; e < d; ++e)
          dot += double(s.q[(i * hq + h) * d + e]) * s.k[(j * hkv + kh) * d + e];
        w.push_back(scale * dot);
        mx = std::max(mx, w.back());
      }
      double sum = 0;
      for (double& x : w) sum += (x = std::exp(x - mx));
      for (int64_t j = lo; j <= p; ++j)
        for (int64_t e = 0; e < d; ++e)
          out[(i * hq + h) * d + e] += w[j - lo] / sum * s.v[(j * hkv + kh) * d + e];
    }
  }
  return out;
}

class AttentionTest : public BackendTest {
 protected:
  LayerKvCache make_cache(const Dims& dims) {
    return {alloc({dims.slots, dims.max_len, dims.hkv, dims.d}),
            alloc({dims.slots, dims.max_len, dims.hkv, dims.d})};
  }

  // Writes each sequence's first `past` history positions into its cache slot.
  static void prefill_history(const Dims& dims, LayerKvCache& cache,
                              const std::vector<SeqData>& seqs) {
    const int64_t row = dims.hkv * dims.d;
    for (const auto& s : seqs) {
      const int64_t at = int64_t{s.slot} * dims.max_len * row;
      std::memcpy(cache.k.data<float>() + at, s.k.data(), s.past * row * sizeof(float));
      std::memcpy(cache.v.data<float>() + at, s.v.data(), s.past * row * sizeof(float));
    }
  }

  // Runs one attention step over `seqs` laid end to end; returns out [T, hq, d].
  Tensor step(const Dims& dims, LayerKvCache& cache, const std::vector<SeqData>& seqs,
              const AttentionParams& params) {
    int64_t t = 0;
    for (const auto& s : seqs) t += s.n;
    Tensor q = alloc({t, dims.hq, dims.d});
    Tensor k = alloc({t, dims.hkv, dims.d});
    Tensor v = alloc({t, dims.hkv, dims.d});
    Tensor out = alloc({t, dims.hq, dims.d});
    std::vector<SeqSpan> spans;
    int32_t offset = 0;
    const int64_t row = dims.hkv * dims.d, qrow = dims.hq * dims.d;
    for (const auto& s : seqs) {
      std::memcpy(q.data<float>() + offset * qrow, s.q.data(), s.n * qrow * sizeof(float));
      std::memcpy(k.data<float>() + offset * row, s.k.data() + s.past * row,
                  s.n * row * sizeof(float));
      std::memcpy(v.data<float>() + offset * row, s.v.data() + s.past * row,
                  s.n * row * sizeof(float));
      spans.push_back({s.slot, s.past, s.n, offset});
      offset += s.n;
    }
    backend_->attention(q, k, v, cache, spans, params, out);
    return out;
  }

  static std::vector<float> rows(const Tensor& out, int64_t begin, int64_t count) {
    auto all = values_of(out);
    const int64_t w = out.dim(1) * out.dim(2);
    return std::vector<float>(all.begin() + begin * w, all.begin() + (begin + count) * w);
  }
};

TEST_F(AttentionTest, TwoKeysByHand) {
  // One head, head_dim 2. Token 0 sees only key 0, so it returns v0. Token 1 has q = [1, 0]:
  // scores 1 (k0 = [1, 0]) and 0 (k1 = [0, 1]), weights e/(e+1) and 1/(e+1).
  Dims dims{1, 1, 2, 1, 4};
  LayerKvCache cache = make_cache(dims);
  Tensor q = tensor_from({2, 1, 2}, {0.3f, -0.7f, 1, 0});
  Tensor k = tensor_from({2, 1, 2}, {1, 0, 0, 1});
  Tensor v = tensor_from({2, 1, 2}, {1, 2, 3, 4});
  Tensor out = alloc({2, 1, 2});
  std::vector<SeqSpan> spans = {{0, 0, 2, 0}};
  backend_->attention(q, k, v, cache, spans, AttentionParams{1.0f, {}}, out);
  const double p0 = std::exp(1.0) / (std::exp(1.0) + 1), p1 = 1 / (std::exp(1.0) + 1);
  expect_close(values_of(out), {1, 2, p0 * 1 + p1 * 3, p0 * 2 + p1 * 4}, 0, 1e-6, "hand");
  // The keys and values were written to the cache at positions 0 and 1.
  auto ck = values_of(cache.k), cv = values_of(cache.v);
  EXPECT_EQ(std::vector<float>(ck.begin(), ck.begin() + 4), (std::vector<float>{1, 0, 0, 1}));
  EXPECT_EQ(std::vector<float>(cv.begin(), cv.begin() + 4), (std::vector<float>{1, 2, 3, 4}));
  EXPECT_EQ(ck[4], 0.0f);
}

TEST_F(AttentionTest, GroupedQueryMatchesReference) {
  for (int64_t d : {8, 5, 64}) {
    Dims dims{4, 2, d, 2, 40};
    LayerKvCache cache = make_cache(dims);
    std::vector<SeqData> seqs = {make_seq(dims, 1, 9, 6, 1)};
    prefill_history(dims, cache, seqs);
    const float scale = 1.0f / std::sqrt(static_cast<float>(d));
    Tensor out = step(dims, cache, seqs, AttentionParams{scale, {}});
    expect_close(values_of(out), reference(dims, seqs[0], scale, 0), 1e-5, 1e-6,
                 "gqa d=" + std::to_string(d));
    // The step's k rows landed at positions [9, 15) of slot 1.
    auto ck = values_of(cache.k);
    const int64_t row = dims.hkv * d;
    for (int64_t j = 0; j < 15 * row; ++j)
      ASSERT_EQ(ck[(1 * dims.max_len) * row + j], seqs[0].k[j]) << j;
  }
}

TEST_F(AttentionTest, RaggedBatchEqualsEachSequenceAlone) {
  Dims dims{4, 2, 16, 4, 32};
  std::vector<SeqData> seqs = {make_seq(dims, 2, 0, 5, 10), make_seq(dims, 0, 7, 1, 11),
                               make_seq(dims, 3, 12, 3, 12)};
  const AttentionParams params{0.25f, {}};
  LayerKvCache batch_cache = make_cache(dims);
  prefill_history(dims, batch_cache, seqs);
  Tensor batched = step(dims, batch_cache, seqs, params);

  int64_t row = 0;
  for (const auto& s : seqs) {
    LayerKvCache alone_cache = make_cache(dims);
    prefill_history(dims, alone_cache, {s});
    Tensor alone = step(dims, alone_cache, {s}, params);
    // Each (token, head) is computed by the same code on the same data: bitwise equal.
    EXPECT_EQ(rows(batched, row, s.n), values_of(alone)) << "slot " << s.slot;
    expect_close(values_of(alone), reference(dims, s, params.scale, 0), 1e-5, 1e-6, "alone");
    row += s.n;
  }
}

TEST_F(AttentionTest, PrefillEqualsTokenByTokenDecode) {
  Dims dims{4, 1, 8, 1, 16};
  SeqData s = make_seq(dims, 0, 0, 10, 20);
  const AttentionParams params{0.35f, {}};

  LayerKvCache prefill_cache = make_cache(dims);
  Tensor all = step(dims, prefill_cache, {s}, params);

  LayerKvCache decode_cache = make_cache(dims);
  for (int32_t i = 0; i < s.n; ++i) {
    // Token i alone, with the i earlier tokens already in the cache from earlier steps.
    SeqData one;
    one.slot = 0;
    one.past = i;
    one.n = 1;
    one.k = s.k;  // history up to and including token i (the rest is not read)
    one.v = s.v;
    one.q.assign(s.q.begin() + i * dims.hq * dims.d, s.q.begin() + (i + 1) * dims.hq * dims.d);
    Tensor out = step(dims, decode_cache, {one}, params);
    EXPECT_EQ(values_of(out), rows(all, i, 1)) << "token " << i;
  }
  EXPECT_EQ(values_of(prefill_cache.k), values_of(decode_cache.k));
  EXPECT_EQ(values_of(prefill_cache.v), values_of(decode_cache.v));
}

TEST_F(AttentionTest, SlidingWindowMasksOldKeys) {
  Dims dims{2, 2, 8, 1, 32};
  SeqData s = make_seq(dims, 0, 6, 4, 30);
  const int64_t window = 3;
  const AttentionParams params{0.5f, window};

  LayerKvCache cache = make_cache(dims);
  prefill_history(dims, cache, {s});
  Tensor out = step(dims, cache, {s}, params);
  expect_close(values_of(out), reference(dims, s, params.scale, window), 1e-5, 1e-6, "window");

  // Positions 0..5 are older than every new token's window ([p - 2, p] for p >= 6, so at least
  // position 4 for p = 6): changing positions 0..3 must not change the output; without the
  // window it does.
  SeqData changed = s;
  for (int64_t j = 0; j < 4 * dims.hkv * dims.d; ++j) {
    changed.k[j] = 5.0f;
    changed.v[j] = -5.0f;
  }
  LayerKvCache cache2 = make_cache(dims);
  prefill_history(dims, cache2, {changed});
  EXPECT_EQ(values_of(step(dims, cache2, {changed}, params)), values_of(out));

  LayerKvCache cache3 = make_cache(dims);
  prefill_history(dims, cache3, {changed});
  Tensor full = step(dims, cache3, {changed}, AttentionParams{0.5f, {}});
  EXPECT_NE(values_of(full), values_of(out));
  // A window of 1 attends to the token itself: out = its own value row.
  LayerKvCache cache4 = make_cache(dims);
  prefill_history(dims, cache4, {s});
  auto self = values_of(step(dims, cache4, {s}, AttentionParams{0.5f, 1}));
  for (int64_t i = 0; i < s.n; ++i)
    for (int64_t h = 0; h < dims.hq; ++h)
      for (int64_t e = 0; e < dims.d; ++e)
        EXPECT_FLOAT_EQ(self[(i * dims.hq + h) * dims.d + e],
                        s.v[((s.past + i) * dims.hkv + h / (dims.hq / dims.hkv)) * dims.d + e]);
}

TEST_F(AttentionTest, LongContextIsStableAndThreaded) {
  // Large logits (scale 8) would overflow exp() without subtracting the max.
  Dims dims{8, 2, 32, 2, 300};
  std::vector<SeqData> seqs = {make_seq(dims, 0, 250, 40, 41), make_seq(dims, 1, 0, 7, 42)};
  LayerKvCache cache = make_cache(dims);
  prefill_history(dims, cache, seqs);
  Tensor out = step(dims, cache, seqs, AttentionParams{8.0f, {}});
  expect_close(rows(out, 0, 40), reference(dims, seqs[0], 8.0f, 0), 1e-4, 1e-5, "long");
  expect_close(rows(out, 40, 7), reference(dims, seqs[1], 8.0f, 0), 1e-4, 1e-5, "short");
}

TEST_F(AttentionTest, BoundsAreChecked) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Dims dims{2, 1, 4, 2, 8};
  LayerKvCache cache = make_cache(dims);
  Tensor q = alloc({3, 2, 4});
  Tensor kv = alloc({3, 1, 4});
  Tensor out = alloc({3, 2, 4});
  const AttentionParams params{1.0f, {}};
  // A sequence may run on from its slot into the next (paged KV), not past the cache's end, and
  // no two sequences may share rows.
  std::vector<SeqSpan> too_long = {{1, 6, 3, 0}};
  EXPECT_DEATH(backend_->attention(q, kv, kv, cache, too_long, params, out), "runs past the cache");
  std::vector<SeqSpan> sharing = {{0, 7, 2, 0}, {1, 0, 1, 2}};
  EXPECT_DEATH(backend_->attention(q, kv, kv, cache, sharing, params, out), "share KV rows");
  std::vector<SeqSpan> bad_slot = {{2, 0, 3, 0}};
  EXPECT_DEATH(backend_->attention(q, kv, kv, cache, bad_slot, params, out), "slot 2 outside");
  std::vector<SeqSpan> bad_rows = {{0, 0, 2, 2}};
  EXPECT_DEATH(backend_->attention(q, kv, kv, cache, bad_rows, params, out), "outside T");
}

}  // namespace
}  // namespace strata::compute
