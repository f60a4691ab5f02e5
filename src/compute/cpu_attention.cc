// CPU causal attention over a ragged batch with grouped-query heads and a KV cache: writes this
// step's keys and values into the cache, then runs one softmax(scale · q·k) · v per (sequence,
// new token, query head), split over the ThreadPool. Arithmetic is f32 with a max-subtracted
// softmax.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <string>
#include <vector>

#include "common/check.h"
#include "compute/dot.h"
#include "compute/cpu_backend.h"
#include "compute/int4.h"
#include "compute/op_checks.h"

namespace strata::compute {
namespace {

// One query row of one sequence.
struct TokenRef {
  int32_t seq;    // index into seqs
  int32_t index;  // new-token index within the sequence
};

}  // namespace

void CpuBackend::int4_roundtrip_rows(float* rows, int64_t count, int64_t head_dim) {
  if (count == 0) return;
  Tensor t = Tensor::wrap(rows, DType::kF32, {count, head_dim}, MemoryKind::kHost, nullptr);
  std::vector<std::byte> blob(int4_blob_bytes(count, head_dim));
  Status st = quantise_int4(t, blob);
  STRATA_CHECK(st.is_ok(), "int4 KV: " + st.to_string());
  auto view = int4_view(blob, t.shape());
  STRATA_CHECK(view.is_ok(), view.status().to_string());
  Tensor back = dequantise_int4(*view);
  std::memcpy(rows, back.raw(), t.bytes());
}

void CpuBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v, LayerKvCache& cache,
                           std::span<const SeqSpan> seqs, const AttentionParams& params,
                           Tensor& out) {
  for (const Tensor* t :
       std::initializer_list<const Tensor*>{&q, &k, &v, &cache.k, &cache.v, &out}) {
    STRATA_CHECK(t->defined() && t->dtype() == DType::kF32 && t->memory() != MemoryKind::kGpu,
                 "attention: tensors must be F32 host tensors");
  }
  check_attention_shapes(q, k, v, cache, out, params);
  const int64_t t_count = q.dim(0), hq = q.dim(1), d = q.dim(2);
  const int64_t hkv = k.dim(1);
  const int64_t slots = cache.k.dim(0), max_len = cache.k.dim(1);

  const int64_t row = hkv * d;  // floats per token in k, v and each cache position
  float* ck = cache.k.data<float>();
  float* cv = cache.v.data<float>();
  std::vector<TokenRef> tokens;
  tokens.reserve(static_cast<size_t>(t_count));
  int64_t max_context = 0;
  for (size_t s = 0; s < seqs.size(); ++s) {
    const SeqSpan& sp = seqs[s];
    check_seq_span(s, sp, slots, max_len, t_count);
    // This step's keys and values go to positions [past_len, past_len + num_tokens) of the slot;
    // they are contiguous there, so one copy each.
    const int64_t dst = (int64_t{sp.slot} * max_len + sp.past_len) * row;
    const size_t bytes = static_cast<size_t>(sp.num_tokens * row) * sizeof(float);
    std::memcpy(ck + dst, k.data<float>() + int64_t{sp.offset} * row, bytes);
    std::memcpy(cv + dst, v.data<float>() + int64_t{sp.offset} * row, bytes);
    if (int4_kv_) {
      int4_roundtrip_rows(ck + dst, sp.num_tokens * hkv, d);
      int4_roundtrip_rows(cv + dst, sp.num_tokens * hkv, d);
    }
    for (int32_t i = 0; i < sp.num_tokens; ++i) tokens.push_back({static_cast<int32_t>(s), i});
    max_context = std::max<int64_t>(max_context, int64_t{sp.past_len} + sp.num_tokens);
  }
  check_seq_rows_apart(seqs, max_len);

  const int64_t group = hq / hkv;
  const int64_t window = params.sliding_window.value_or(0);
  const float scale = params.scale;
  const float* qs = q.data<float>();
  float* os = out.data<float>();
  const int64_t items = static_cast<int64_t>(tokens.size()) * hq;

  parallel_for(items, max_context * d * 2, [&](int64_t w0, int64_t w1) {
    std::vector<float> scores(static_cast<size_t>(max_context));  // per chunk scratch
    for (int64_t w = w0; w < w1; ++w) {
      const TokenRef tok = tokens[static_cast<size_t>(w / hq)];
      const int64_t h = w % hq;
      const SeqSpan& sp = seqs[static_cast<size_t>(tok.seq)];
      const int64_t p = int64_t{sp.past_len} + tok.index;  // absolute position of this token
      const int64_t lo = window > 0 ? std::max<int64_t>(0, p - window + 1) : 0;
      const int64_t t = int64_t{sp.offset} + tok.index;
      const float* qv = qs + (t * hq + h) * d;
      // Key j of this kv head lives at kbase + j * row.
      const int64_t kv_off = int64_t{sp.slot} * max_len * row + (h / group) * d;
      const float* kbase = ck + kv_off;
      const float* vbase = cv + kv_off;

      float mx = -INFINITY;
      for (int64_t j = lo; j <= p; ++j) {
        const float s = scale * dot(qv, kbase + j * row, d);
        scores[j - lo] = s;
        mx = std::max(mx, s);
      }
      float sum = 0.0f;
      for (int64_t j = 0; j <= p - lo; ++j) {
        scores[j] = std::exp(scores[j] - mx);
        sum += scores[j];
      }
      float* o = os + (t * hq + h) * d;
      std::fill(o, o + d, 0.0f);
      for (int64_t j = lo; j <= p; ++j) {
        const float pj = scores[j - lo];
        const float* vj = vbase + j * row;
        for (int64_t e = 0; e < d; ++e) o[e] += pj * vj[e];
      }
      const float inv_sum = 1.0f / sum;
      for (int64_t e = 0; e < d; ++e) o[e] *= inv_sum;
    }
  });
}

}  // namespace strata::compute
