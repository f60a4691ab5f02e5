// CudaBackend: the class behind make_cuda_backend(). It owns one CUDA stream (every op is
// enqueued there), the cuBLAS state, a pinned staging ring through which the host spans the
// transformer passes (token ids, positions, rows, sequence spans) reach the device, and a small
// pool of pinned buffers that to_host_f32() returns logits in. It holds back one op at a time so
// that the next can join it in one launch (skinny products sharing x; a bias with the ReLU after
// it; a residual add with the norm after it; the RoPE of q and k with the attention's cache write
// after it): every entry point that enqueues work or hands out memory launches what is held first,
// so the order of work on the stream is the order of calls.
// Not thread safe. Internal to src/cuda/ (it includes CUDA headers).
#pragma once

#include <cuda_runtime.h>

#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "compute/backend.h"
#include "cuda/cuda_backend.h"
#include "cuda/gemm.h"
#include "cuda/gemv.h"
#include "cuda/int4_kv.h"

namespace strata::cuda {

// What device allocations need after the backend is gone: the stream they are freed on, and a
// cache of freed blocks by size. Every op runs on the one stream, so a block freed by one op can
// be handed to the next allocation at once (stream order protects it): decode steps allocate the
// same activation sizes every layer and step, and this keeps cudaMallocAsync/cudaFreeAsync out of
// the per-op cost. Used from the thread that issues ops.
struct DeviceState {
  int device = 0;
  cudaStream_t stream = nullptr;
  std::unordered_map<size_t, std::vector<void*>> free_blocks;  // by size in bytes
  size_t cached_bytes = 0;

  void release(void* p, size_t bytes);
  void* reuse(size_t bytes);
  void drop_cache();  // hands every cached block back to the pool
  ~DeviceState();
};

// Host memory allocated with cudaHostAlloc, freed with cudaFreeHost.
struct PinnedBlock {
  std::shared_ptr<void> ptr;
  size_t bytes = 0;
};

class CudaBackend final : public compute::Backend {
 public:
  static Result<std::unique_ptr<CudaBackend>> create(const CudaBackendOptions& options);
  ~CudaBackend() override;

  std::string name() const override { return "cuda"; }
  MemoryKind memory_kind() const override { return MemoryKind::kGpu; }
  DType activation_dtype() const override { return act_; }

  Result<Tensor> allocate(DType dtype, Shape shape) override;
  Result<Tensor> allocate_uninitialized(DType dtype, Shape shape) override;
  Result<Tensor> upload(const Tensor& host, compute::WeightKind kind) override;
  Tensor to_host_f32(const Tensor& t) override;

  void linear(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) override;
  void layer_norm(const Tensor& x, const Tensor* gamma, const Tensor* beta, float eps,
                  Tensor& y) override;
  void rms_norm(const Tensor& x, const Tensor& gamma, float eps, Tensor& y) override;
  void add(const Tensor& a, const Tensor& b, Tensor& y) override;
  void relu(Tensor& x) override;
  void silu_mul(const Tensor& gate, const Tensor& up, Tensor& y) override;
  void embedding(const Tensor& table, std::span<const int32_t> ids, Tensor& y) override;
  void gather_rows(const Tensor& x, std::span<const int32_t> rows, Tensor& y) override;
  void scatter_add_rows(const Tensor& x, std::span<const int32_t> rows,
                        std::span<const float> weights, Tensor& y) override;
  void rope(Tensor& x, std::span<const int32_t> positions,
            const compute::RopeTable& table) override;
  // Defined in cuda_backend_attention.cc.
  void attention(const Tensor& q, const Tensor& k, const Tensor& v, compute::LayerKvCache& cache,
                 std::span<const compute::SeqSpan> seqs, const compute::AttentionParams& params,
                 Tensor& out) override;
  // On the device copy the logits came from (cuda/logit_stats.h).
  Result<std::vector<compute::LogitStats>> logit_stats(
      const Tensor& logits, std::span<const compute::LogitQuery> queries) override;
  // An F32 device copy (t itself when it is F32 already).
  Tensor f32_copy(const Tensor& t) override;
  // On the device (cuda/logit_adjust.h); host logits get the host's reference computations.
  Result<Tensor> adjust_logits(const Tensor& logits, std::span<const compute::RowAdjustment> adjustments) override;
  Result<std::vector<compute::DrawnToken>> draw_tokens(const Tensor& logits, std::span<const compute::RowDraw> draws) override;
  Result<std::vector<float>> logit_values(const Tensor& logits,
                                          std::span<const std::pair<int64_t, int32_t>> at) override;
  // Attention over an int4-g64 KV cache (cuda/int4_kv.h); defined in int4_kv_attention.cc.
  Status attention_int4_kv(const Tensor& q, const Tensor& k, const Tensor& v, Int4KvCache& cache,
                           std::span<const compute::SeqSpan> seqs,
                           const compute::AttentionParams& params, Tensor& out);

  void synchronize();
  void release_cached_memory();
  void drop_cached_blocks() { state_->drop_cache(); }
  // The stream every op runs on; launches any held-back op first, so that work the caller
  // enqueues comes after it.
  cudaStream_t stream() {
    flush_pending();
    return state_->stream;
  }
  // The F32 device copy of the tensor the last to_host_f32() returned (of `host`'s data), or an
  // undefined tensor when `host` is not that result. Valid until the next to_host_f32().
  Tensor device_copy_of(const Tensor& host) const;

 private:
  CudaBackend() = default;

  // Device copy of `bytes` host bytes through the pinned ring (enqueued on the stream), within
  // the last reserve_staging(). Repeated uploads of the same bytes since the ring was last reset
  // return the same device pointer.
  const void* stage(const void* data, size_t bytes);
  template <typename T>
  const T* stage(std::span<const T> s) {
    return static_cast<const T*>(stage(s.data(), s.size_bytes()));
  }
  // Makes room for `bytes` (all the stage() calls of one op, each rounded up to 256 bytes) so
  // that none of them recycles the ring while the op's other arguments still wait in it.
  void reserve_staging(size_t bytes);
  void reset_staging();  // after a synchronize: the whole ring is free again
  // A pinned buffer of at least `bytes` that nothing outside the backend references.
  PinnedBlock& pinned_block(size_t bytes);
  Result<Tensor> allocate_impl(DType dtype, Shape shape, bool zero);
  // Device scratch of `bytes`, freed (stream-ordered) when the returned tensor goes.
  Tensor scratch(DType dtype, Shape shape);
  void check_act(const Tensor& t, const char* op, const char* what) const;
  // y = x · dequant(w)^T past the skinny range, for an int4-g64 weight w [n, k]
  // (cuda/int4_weights.h); the caller adds the bias.
  void linear_int4(const Tensor& x, const Tensor& w, Tensor& y, int64_t m, int64_t n, int64_t k);
  // n zeroed arrival counters for a decode attention of several splits (attention.h); the
  // kernel leaves them zero, so the same buffer serves every launch on this stream.
  unsigned* decode_counters(int64_t n);
  // Launches the held-back op, if any, as it is.
  void flush_pending();
  // Forgets the held op (launched by flush_pending, or by an op that joined it).
  void clear_pending();
  // True when the held op is a residual add whose output is x (a norm of x can join it).
  bool joins_add(const Tensor& x) const {
    return pending_.kind == Pending::Kind::kAdd && pending_.y == x.raw() &&
           pending_.rows * pending_.cols == x.numel();
  }
  // True when the held op is the RoPE of this q, then this k, and every row's position is its
  // cache position in `seqs` (validated): the cache write of k and v can join it. Defined in
  // cuda_backend_attention.cc.
  bool joins_rope(const Tensor& q, const Tensor& k, const Tensor& v,
                  std::span<const compute::SeqSpan> seqs) const;

  // The op held back, waiting to see whether the next op joins it.
  struct Pending {
    enum class Kind { kNone, kGemv, kBias, kAdd, kRope };
    Kind kind = Kind::kNone;
    // kGemv: skinny products of x [m, k] (int4 or dense weights).
    const void* x = nullptr;
    int64_t m = 0, k = 0;
    bool int4 = false;
    GemvBatch batch;
    // kBias: y [rows, cols] += bias. kAdd: y = a + b over rows * cols elements.
    const void* a = nullptr;
    const void* b = nullptr;
    void* y = nullptr;
    const float* bias = nullptr;
    int64_t rows = 0, cols = 0;
    // kRope: rope_x[i] [rows, rope_heads[i], cols] rotated in place, i < rope_count (q, then k),
    // by the staged positions [rows] (a host copy beside them) and inv_freq [cols / 2].
    void* rope_x[2] = {};
    int64_t rope_heads[2] = {};
    int rope_count = 0;
    const int32_t* positions = nullptr;
    const float* inv_freq = nullptr;
    std::vector<int32_t> host_positions;
    // Every tensor the held op reads or writes, so that none of them is freed (and its memory
    // handed out again) before the op is launched.
    std::vector<Tensor> hold;
  };
  Pending pending_;

  DType act_ = DType::kF16;
  bool fuse_ = true;
  std::shared_ptr<DeviceState> state_;
  int sm_count_ = 0;
  std::string device_name_;
  Gemm gemm_;
  Tensor decode_counters_;  // I32, see decode_counters()

  struct StagedRange {
    size_t offset = 0, bytes = 0;
  };
  std::shared_ptr<void> ring_host_;  // pinned
  void* ring_device_ = nullptr;
  size_t ring_bytes_ = 0, ring_used_ = 0;
  std::vector<StagedRange> staged_;  // recent uploads, for reuse
  std::vector<PinnedBlock> pinned_;  // to_host_f32 outputs
  Tensor last_download_device_;      // F32 device copy of the last to_host_f32 result
  const void* last_download_host_ = nullptr;
};

// True when the bytes of a and b intersect.
inline bool overlap(const Tensor& a, const Tensor& b) {
  const char* pa = static_cast<const char*>(a.raw());
  const char* pb = static_cast<const char*>(b.raw());
  return pa < pb + b.bytes() && pb < pa + a.bytes();
}

// The CudaBackend behind `backend`, or null.
CudaBackend* as_cuda(compute::Backend& backend);

}  // namespace strata::cuda
