// attention_int4_kv (cuda/int4_kv.h) on the CUDA backend: validates the ragged batch, runs the
// fp16 attention of prompts (past_len 0, several tokens) over a scratch fp16 cache of their own
// keys and values, quantises every new key and value into the int4 cache, then runs the int4
// decode kernel for the rows of every other sequence (they overwrite what the fp16 pass wrote for
// them in a mixed batch).
#include <algorithm>
#include <string>
#include <vector>

#include "compute/op_checks.h"
#include "cuda/attention.h"
#include "cuda/cuda_backend_impl.h"
#include "cuda/cuda_check.h"
#include "cuda/int4_kv.h"
#include "cuda/int4_kv_kernels.h"

namespace strata::cuda {

namespace {

bool is_prompt(const compute::SeqSpan& sp) { return sp.past_len == 0 && sp.num_tokens > 1; }

Status check_tensor(const Tensor& t, DType act, const Shape& want, const char* name) {
  if (t.defined() && t.memory() == MemoryKind::kGpu && t.dtype() == act && t.shape() == want)
    return Status::ok();
  return invalid_argument(std::string("attention_int4_kv: ") + name + " must be a " +
                          std::string(dtype_name(act)) + " device tensor " + shape_string(want) +
                          ", got " +
                          (t.defined() ? std::string(dtype_name(t.dtype())) + " " +
                                             shape_string(t.shape()) +
                                             (t.memory() == MemoryKind::kGpu ? "" : " on the host")
                                       : std::string("none")));
}

}  // namespace

Status attention_int4_kv(compute::Backend& backend, const Tensor& q, const Tensor& k_new,
                         const Tensor& v_new, Int4KvCache& cache,
                         std::span<const compute::SeqSpan> seqs,
                         const compute::AttentionParams& params, Tensor& out) {
  CudaBackend* b = as_cuda(backend);
  if (b == nullptr)
    return invalid_argument("attention_int4_kv: needs the cuda backend, not " + backend.name());
  return b->attention_int4_kv(q, k_new, v_new, cache, seqs, params, out);
}

Status CudaBackend::attention_int4_kv(const Tensor& q, const Tensor& k, const Tensor& v,
                                      Int4KvCache& cache, std::span<const compute::SeqSpan> seqs,
                                      const compute::AttentionParams& params, Tensor& out) {
  flush_pending();
  STRATA_RETURN_IF_ERROR(check_int4_kv_cache(cache));
  const int64_t hkv = cache.kv_heads, d = cache.head_dim;
  if (!q.defined() || q.rank() != 3 || q.dim(2) != d)
    return invalid_argument("attention_int4_kv: q must be [T, heads, " + std::to_string(d) +
                            "], got " + (q.defined() ? shape_string(q.shape()) : "none"));
  const int64_t t_count = q.dim(0), hq = q.dim(1);
  STRATA_RETURN_IF_ERROR(check_tensor(q, act_, {t_count, hq, d}, "q"));
  STRATA_RETURN_IF_ERROR(check_tensor(k, act_, {t_count, hkv, d}, "k"));
  STRATA_RETURN_IF_ERROR(check_tensor(v, act_, {t_count, hkv, d}, "v"));
  STRATA_RETURN_IF_ERROR(check_tensor(out, act_, {t_count, hq, d}, "out"));
  if (!int4_kv_decode_supported(hq, hkv, d))
    return invalid_argument("attention_int4_kv: no kernel for " + std::to_string(hq) +
                            " query heads over " + std::to_string(hkv) + " kv heads of head_dim " +
                            std::to_string(d) +
                            " (up to 8 query heads per kv head, head_dim 64 to 256 by 64)");
  if (params.sliding_window && *params.sliding_window <= 0)
    return invalid_argument("attention_int4_kv: sliding window must be positive, got " +
                            std::to_string(*params.sliding_window));

  // Row -> sequence; the rows the int4 kernel computes; the fp16 pass's sequences.
  std::vector<int32_t> token_seq(static_cast<size_t>(t_count), -1);
  std::vector<int32_t> int4_rows;
  std::vector<compute::SeqSpan> fp16_seqs;
  bool any_prompt = false;
  int64_t max_context = 0;
  for (size_t s = 0; s < seqs.size(); ++s) {
    const compute::SeqSpan& sp = seqs[s];
    compute::check_seq_span(s, sp, cache.slots, cache.max_len, t_count);
    for (int32_t i = 0; i < sp.num_tokens; ++i) {
      int32_t& owner = token_seq[static_cast<size_t>(sp.offset + i)];
      STRATA_CHECK(owner < 0, "attention_int4_kv: sequence " + std::to_string(s) +
                                  " overlaps another sequence at row " +
                                  std::to_string(sp.offset + i));
      owner = static_cast<int32_t>(s);
      if (!is_prompt(sp)) int4_rows.push_back(sp.offset + i);
    }
    any_prompt = any_prompt || is_prompt(sp);
    if (!is_prompt(sp))
      max_context = std::max<int64_t>(max_context, int64_t{sp.past_len} + sp.num_tokens);
    // In the fp16 pass every sequence's new rows sit at their own rows of a scratch cache of one
    // position a slot (a sequence runs on over the slots after its first): the scratch is as
    // big as the batch's new keys, however the sequences' lengths differ.
    fp16_seqs.push_back({sp.offset, 0, sp.num_tokens, sp.offset});
  }
  for (int64_t t = 0; t < t_count; ++t)
    STRATA_CHECK(token_seq[static_cast<size_t>(t)] >= 0,
                 "attention_int4_kv: row " + std::to_string(t) + " belongs to no sequence");
  compute::check_seq_rows_apart(seqs, cache.max_len);
  if (t_count == 0) return Status::ok();

  // 1. Prompts attend in fp16 to their own new keys and values. Run first: attention() stages its
  // own arguments and may recycle the staging ring.
  if (any_prompt) {
    compute::LayerKvCache scratch_kv{scratch(act_, {t_count, 1, hkv, d}), scratch(act_, {t_count, 1, hkv, d})};
    attention(q, k, v, scratch_kv, fp16_seqs, params, out);
  }

  // 2. Every new key and value into the int4 cache.
  const size_t seq_bytes = seqs.size_bytes();
  reserve_staging(seq_bytes + token_seq.size() * 4 + int4_rows.size() * 4 + 3 * 256);
  const SeqDesc* dev_seqs = static_cast<const SeqDesc*>(stage(seqs.data(), seq_bytes));
  const int32_t* dev_token_seq = stage(std::span<const int32_t>(token_seq));
  cudaStream_t s = stream();
  const int64_t cache_rows = cache.slots * cache.max_len;
  launch_int4_kv_append(act_, k.raw(), v.raw(), cache.k.raw(), cache.v.raw(), dev_seqs,
                        dev_token_seq, t_count, hkv * d, cache.max_len, cache_rows, s);
  if (int4_rows.empty()) return Status::ok();

  // 3. The other rows attend to the dequantised cache.
  Int4KvDecodeArgs a;
  a.dtype = act_;
  a.q = q.raw();
  a.out = out.raw();
  a.k_blob = cache.k.raw();
  a.v_blob = cache.v.raw();
  a.seqs = dev_seqs;
  a.token_seq = dev_token_seq;
  a.rows = stage(std::span<const int32_t>(int4_rows));
  a.num_rows = static_cast<int64_t>(int4_rows.size());
  a.hq = hq;
  a.hkv = hkv;
  a.head_dim = d;
  a.max_len = cache.max_len;
  a.cache_rows = cache_rows;
  a.scale = params.scale;
  a.window = params.sliding_window.value_or(0);
  const int64_t context = a.window > 0 ? std::min(max_context, a.window) : max_context;
  const int splits = decode_splits(a.num_rows, hkv, context, sm_count_);
  Tensor workspace;
  if (splits > 1) workspace = scratch(DType::kF32, {decode_workspace_floats(t_count, hq, d, splits)});
  launch_int4_kv_decode(a, splits, workspace.defined() ? workspace.data<float>() : nullptr, s);
  return Status::ok();
}

}  // namespace strata::cuda
