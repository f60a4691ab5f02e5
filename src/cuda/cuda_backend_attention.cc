// CudaBackend::attention: validates the ragged batch, stages its description (sequence spans,
// the sequence of every row, the prefill tiles) and picks a kernel: the tensor-core prefill
// kernel when some sequence brings more than a few new tokens, else the decode kernel. The cache
// write joins a held RoPE of q and k (rope.h) when every row's position is its cache position.
#include <algorithm>
#include <initializer_list>
#include <string>
#include <vector>

#include "compute/op_checks.h"
#include "cuda/attention.h"
#include "cuda/cuda_backend_impl.h"
#include "cuda/cuda_check.h"
#include "cuda/rope.h"

namespace strata::cuda {

static_assert(sizeof(SeqDesc) == sizeof(compute::SeqSpan), "SeqDesc mirrors compute::SeqSpan");

namespace {
// Up to this many new tokens per sequence, the decode kernel (one block per row) is used.
constexpr int32_t kDecodeMaxTokens = 4;
}  // namespace

void CudaBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v,
                            compute::LayerKvCache& cache, std::span<const compute::SeqSpan> seqs,
                            const compute::AttentionParams& params, Tensor& out) {
  for (const Tensor* t : std::initializer_list<const Tensor*>{&q, &k, &v, &cache.k, &cache.v, &out})
    check_act(*t, "attention", "q, k, v, the cache and out");
  compute::check_attention_shapes(q, k, v, cache, out, params);
  const int64_t t_count = q.dim(0), hq = q.dim(1), d = q.dim(2), hkv = k.dim(1);
  const int64_t slots = cache.k.dim(0), max_len = cache.k.dim(1);
  STRATA_CHECK(d % 8 == 0 && d <= 256,
               "attention: the cuda backend needs head_dim a multiple of 8 up to 256, got " +
                   std::to_string(d));

  // Row -> sequence, prefill tiles, and the longest context.
  std::vector<int32_t> token_seq(static_cast<size_t>(t_count), -1);
  std::vector<int32_t> tiles;
  int32_t max_new = 0;
  int64_t max_context = 0;
  for (size_t s = 0; s < seqs.size(); ++s) {
    const compute::SeqSpan& sp = seqs[s];
    compute::check_seq_span(s, sp, slots, max_len, t_count);
    auto which = [s] { return "attention: sequence " + std::to_string(s) + " "; };
    for (int32_t i = 0; i < sp.num_tokens; ++i) {
      int32_t& owner = token_seq[static_cast<size_t>(sp.offset + i)];
      STRATA_CHECK(owner < 0,
                   which() + "overlaps another sequence at row " + std::to_string(sp.offset + i));
      owner = static_cast<int32_t>(s);
    }
    for (int32_t r = 0; r < sp.num_tokens; r += kPrefillTileRows) {
      tiles.push_back(static_cast<int32_t>(s));
      tiles.push_back(r);
    }
    max_new = std::max(max_new, sp.num_tokens);
    max_context = std::max<int64_t>(max_context, int64_t{sp.past_len} + sp.num_tokens);
  }
  for (int64_t t = 0; t < t_count; ++t)
    STRATA_CHECK(token_seq[static_cast<size_t>(t)] >= 0,
                 "attention: row " + std::to_string(t) + " belongs to no sequence");
  compute::check_seq_rows_apart(seqs, max_len);
  const bool rope_joins = joins_rope(q, k, v, seqs);
  if (!rope_joins) flush_pending();
  if (t_count == 0) return;

  const size_t seq_bytes = seqs.size_bytes();
  reserve_staging(seq_bytes + token_seq.size() * 4 + tiles.size() * 4 + 3 * 256);
  const SeqDesc* dev_seqs = static_cast<const SeqDesc*>(stage(seqs.data(), seq_bytes));
  const int32_t* dev_token_seq = stage(std::span<const int32_t>(token_seq));

  cudaStream_t s = state_->stream;
  AttentionArgs a;
  a.dtype = act_;
  a.q = q.raw();
  a.out = out.raw();
  a.k_cache = cache.k.raw();
  a.v_cache = cache.v.raw();
  a.seqs = dev_seqs;
  a.token_seq = dev_token_seq;
  a.tokens = t_count;
  a.hq = hq;
  a.hkv = hkv;
  a.head_dim = d;
  a.max_len = max_len;
  a.scale = params.scale;
  a.window = params.sliding_window.value_or(0);
  a.sm_count = sm_count_;

  if (rope_joins && pending_.kind == Pending::Kind::kRope) {  // not launched by reserve_staging
    RopeKvWrite r;
    r.attn = a;
    r.k = k.raw();
    r.v = v.raw();
    r.positions = pending_.positions;
    r.inv_freq = pending_.inv_freq;
    launch_rope_kv_write(r, s);
    clear_pending();
  } else {
    flush_pending();
    launch_kv_write(act_, k.raw(), v.raw(), cache.k.raw(), cache.v.raw(), dev_seqs, dev_token_seq,
                    t_count, hkv, d, max_len, s);
  }

  const bool decode_ok = decode_supported(hq, hkv, d);
  const bool use_prefill = prefill_supported(d) && (max_new > kDecodeMaxTokens || !decode_ok);
  if (use_prefill) {
    const int32_t* dev_tiles = stage(std::span<const int32_t>(tiles));
    launch_attention_prefill(a, dev_tiles, static_cast<int64_t>(tiles.size() / 2), s);
    return;
  }
  STRATA_CHECK(decode_ok, "attention: no cuda kernel for " + std::to_string(hq) +
                              " query heads over " + std::to_string(hkv) +
                              " kv heads of head_dim " + std::to_string(d));
  const int64_t context = a.window > 0 ? std::min(max_context, a.window) : max_context;
  const int splits = decode_mma_supported(hq, hkv, d)
                         ? decode_mma_splits(t_count, hkv, context, sm_count_)
                         : decode_splits(t_count, hkv, context, sm_count_);
  Tensor workspace;
  if (splits > 1) {
    workspace = scratch(DType::kF32, {decode_workspace_floats(t_count, hq, d, splits)});
    a.counters = decode_counters(t_count * hkv);
  }
  launch_attention_decode(a, splits, workspace.defined() ? workspace.data<float>() : nullptr, s);
}

bool CudaBackend::joins_rope(const Tensor& q, const Tensor& k, const Tensor& v,
                             std::span<const compute::SeqSpan> seqs) const {
  const Pending& p = pending_;
  if (p.kind != Pending::Kind::kRope || p.rope_count != 2 || p.rope_x[0] != q.raw() ||
      p.rope_x[1] != k.raw() || p.rows != q.dim(0) || p.cols != q.dim(2) ||
      p.rope_heads[0] != q.dim(1) || p.rope_heads[1] != k.dim(1) || overlap(v, q) || overlap(v, k))
    return false;
  for (const compute::SeqSpan& sp : seqs)
    for (int32_t i = 0; i < sp.num_tokens; ++i)
      if (p.host_positions[static_cast<size_t>(sp.offset + i)] != sp.past_len + i) return false;
  return true;
}

unsigned* CudaBackend::decode_counters(int64_t n) {
  if (!decode_counters_.defined() || decode_counters_.numel() < n) {
    decode_counters_ = Tensor();
    Result<Tensor> t = allocate_impl(DType::kI32, {std::max<int64_t>(n, 4096)}, true);
    STRATA_CHECK(t.is_ok(), t.status().to_string());
    decode_counters_ = std::move(t).value();
  }
  return static_cast<unsigned*>(decode_counters_.raw());
}

}  // namespace strata::cuda
