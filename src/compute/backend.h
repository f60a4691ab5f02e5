// Backend: the operations a transformer forward needs, implemented once per device (the CPU
// backend here with oneDNN; the CUDA backend in src/cuda/). Tensors passed to an op live in the
// backend's memory (memory_kind()); activations are in activation_dtype(); weights are in the form
// upload() produced. Shapes use T for tokens of a ragged batch (sequences laid end to end).
// A Backend is not thread safe: one thread issues ops; the backend may use threads inside an op.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"
#include "compute/logit_adjust.h"
#include "compute/logit_stats.h"
#include "model/config.h"

namespace strata {
class ThreadPool;
}

namespace strata::compute {

// Rotary embedding frequencies for one head_dim: inv_freq[i] for i in [0, head_dim/2), already
// scaled for `linear` and `llama3` RoPE, computed in fp32 the way transformers computes them.
struct RopeTable {
  int64_t head_dim = 0;
  std::vector<float> inv_freq;
};
RopeTable make_rope_table(const model::RopeConfig& rope, int64_t head_dim);

// One sequence of a ragged batch, for attention.
struct SeqSpan {
  int32_t slot = 0;        // KV cache slot holding this sequence's keys and values (its rows are
                           // slot * max_len + position: a longer sequence runs on into the next
                           // slots, which no other sequence of the batch may then use)
  int32_t past_len = 0;    // tokens already in the cache before this step
  int32_t num_tokens = 0;  // new tokens this step (prompt length at prefill, 1 when decoding)
  int32_t offset = 0;      // row of this sequence's first new token in the T dimension
};

struct AttentionParams {
  float scale = 1.0f;                      // usually 1/sqrt(head_dim)
  std::optional<int64_t> sliding_window;   // attend to at most this many most recent keys
};

// The KV cache of one layer: k and v are [slots, max_len, kv_heads, head_dim] in the backend's
// memory and activation dtype.
struct LayerKvCache {
  Tensor k;
  Tensor v;
};

enum class WeightKind {
  kLinear,   // [out, in] matrix consumed by linear()
  kTable,    // embedding table consumed by embedding()
  kVector,   // norm scale/shift or bias
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual std::string name() const = 0;
  virtual MemoryKind memory_kind() const = 0;
  virtual DType activation_dtype() const = 0;

  // Zero-filled tensor in backend memory; kOutOfMemory when it does not fit.
  virtual Result<Tensor> allocate(DType dtype, Shape shape) = 0;
  // Like allocate() for a tensor the caller fully overwrites before reading (activations): the
  // contents are unspecified, which spares a GPU backend one fill per op.
  virtual Result<Tensor> allocate_uninitialized(DType dtype, Shape shape) {
    return allocate(dtype, std::move(shape));
  }
  // Backend copy of a host weight in the form the ops consume (may change dtype).
  virtual Result<Tensor> upload(const Tensor& host, WeightKind kind) = 0;
  // Host F32 copy of a backend tensor.
  virtual Tensor to_host_f32(const Tensor& t) = 0;

  // y[T, N] = x[T, K] · w[N, K]^T (+ bias[N]).
  virtual void linear(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) = 0;
  // y[T, C] = LayerNorm(x[T, C]) * gamma + beta; gamma/beta may be null (no affine part).
  virtual void layer_norm(const Tensor& x, const Tensor* gamma, const Tensor* beta, float eps,
                          Tensor& y) = 0;
  // y[T, C] = x / sqrt(mean(x^2) + eps) * gamma.
  virtual void rms_norm(const Tensor& x, const Tensor& gamma, float eps, Tensor& y) = 0;
  // y = a + b, elementwise, same shapes; y may alias a or b.
  virtual void add(const Tensor& a, const Tensor& b, Tensor& y) = 0;
  // x = max(x, 0), in place.
  virtual void relu(Tensor& x) = 0;
  // y[T, F] = silu(gate[T, F]) * up[T, F]; y may alias gate or up.
  virtual void silu_mul(const Tensor& gate, const Tensor& up, Tensor& y) = 0;
  // y[T, C] = table[ids[t], C]; ids are host values, each in [0, table.dim(0)).
  virtual void embedding(const Tensor& table, std::span<const int32_t> ids, Tensor& y) = 0;
  // y[i, C] = x[rows[i], C]; rows are host values.
  virtual void gather_rows(const Tensor& x, std::span<const int32_t> rows, Tensor& y) = 0;
  // y[rows[i], C] += weights[i] * x[i, C] for each i: adds a mixture-of-experts expert's outputs
  // into the rows of the tokens routed to it. rows are host values, distinct, each in [0, y.dim(0)).
  virtual void scatter_add_rows(const Tensor& x, std::span<const int32_t> rows,
                                std::span<const float> weights, Tensor& y) = 0;
  // Rotates x[T, heads, head_dim] in place at the host positions[T] (rotate-half convention).
  virtual void rope(Tensor& x, std::span<const int32_t> positions, const RopeTable& table) = 0;
  // Causal attention over a ragged batch with grouped-query heads. q [T, Hq, D]; k, v [T, Hkv, D]
  // are this step's new keys and values: they are first written into `cache` at positions
  // [past_len, past_len + num_tokens) of each sequence's slot; then token i of a sequence attends
  // to cache positions [0, past_len + i] (within the sliding window, if any). out [T, Hq, D].
  virtual void attention(const Tensor& q, const Tensor& k, const Tensor& v, LayerKvCache& cache,
                         std::span<const SeqSpan> seqs, const AttentionParams& params,
                         Tensor& out) = 0;
  // Statistics of each row of `logits` for sampling (compute/logit_stats.h): F32 [R, V] in this
  // backend's memory (or, for a GPU backend, the host copy its last to_host_f32() returned):
  // computed on the host here; a GPU backend computes them on the device.
  virtual Result<std::vector<LogitStats>> logit_stats(const Tensor& logits,
                                                      std::span<const LogitQuery> queries) {
    return logit_stats_on_host(logits, queries);
  }
  // An F32 copy of `t` in this backend's memory (t itself when it is F32 already): the logits
  // sampling reads where they were computed.
  virtual Tensor f32_copy(const Tensor& t) {
    return t.dtype() == DType::kF32 && t.memory() != MemoryKind::kGpu ? t : to_host_f32(t);
  }
  // Sampling's work on logits F32 [R, V] in this backend's memory (compute/logit_adjust.h): the
  // adjusted copies of some rows (in this backend's memory, for logit_stats and draw_tokens), a
  // draw over whole rows, the values at (row, token) pairs. On the host here; a GPU backend
  // works on the device, where the logits are.
  virtual Result<Tensor> adjust_logits(const Tensor& logits, std::span<const RowAdjustment> adjustments) {
    return adjust_logits_on_host(logits, adjustments);
  }
  virtual Result<std::vector<DrawnToken>> draw_tokens(const Tensor& logits, std::span<const RowDraw> draws) {
    return draw_tokens_on_host(logits, draws);
  }
  virtual Result<std::vector<float>> logit_values(const Tensor& logits,
                                                  std::span<const std::pair<int64_t, int32_t>> at) {
    return logit_values_on_host(logits, at);
  }
};

// The CPU backend (oneDNN matmul, threaded kernels). Activations are F32; linear weights are kept
// as F32 or BF16 (F16 is widened to F32); other weights become F32. The backend keeps a reference
// to `pool`, which must outlive it.
std::unique_ptr<Backend> make_cpu_backend(ThreadPool& pool);

struct CpuBackendOptions {
  // false: BF16 linear weights are widened to F32 at upload, as on a CPU where oneDNN has no
  // bf16 matmul (the backend detects that case by itself; this forces it, for tests and benches).
  bool allow_bf16_matmul = true;
  // true: keys and values pass through int4-g64 (compute/int4.h, groups of 64 along head_dim) as
  // they enter the KV cache, so attention reads exactly what an int4 KV cache would hold. The
  // cache itself stays F32; this measures the quality cost of int4 KV, not its memory saving.
  // head_dim must be a multiple of 64.
  bool int4_kv = false;
};
std::unique_ptr<Backend> make_cpu_backend(ThreadPool& pool, const CpuBackendOptions& options);

}  // namespace strata::compute
