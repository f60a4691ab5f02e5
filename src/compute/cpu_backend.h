// CpuBackend: the Backend on host memory. Activations are F32 host tensors; linear() goes through
// CpuMatmul (oneDNN); the other ops are plain loops split over rows on the ThreadPool. The backend
// borrows the pool (which must outlive it) and owns its matmul state and scratch buffers, so it is
// not thread safe: one thread issues ops. Private to src/compute/: use make_cpu_backend().
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "compute/backend.h"
#include "compute/cpu_matmul.h"

namespace strata::compute {

class CpuBackend final : public Backend {
 public:
  CpuBackend(ThreadPool& pool, const CpuBackendOptions& options);

  std::string name() const override { return "cpu"; }
  MemoryKind memory_kind() const override { return MemoryKind::kHost; }
  DType activation_dtype() const override { return DType::kF32; }

  Result<Tensor> allocate(DType dtype, Shape shape) override;
  Result<Tensor> upload(const Tensor& host, WeightKind kind) override;
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
  // Defined in rope.cc.
  void rope(Tensor& x, std::span<const int32_t> positions, const RopeTable& table) override;
  // Defined in cpu_attention.cc.
  void attention(const Tensor& q, const Tensor& k, const Tensor& v, LayerKvCache& cache,
                 std::span<const SeqSpan> seqs, const AttentionParams& params,
                 Tensor& out) override;
  // Sampling's passes over rows of logits, rows split over the pool.
  Result<std::vector<LogitStats>> logit_stats(const Tensor& logits, std::span<const LogitQuery> queries) override;
  Result<Tensor> adjust_logits(const Tensor& logits, std::span<const RowAdjustment> adjustments) override;
  Result<std::vector<DrawnToken>> draw_tokens(const Tensor& logits, std::span<const RowDraw> draws) override;

 private:
  // Runs fn(begin, end) over [0, n) items of `work_per_item` elements each: inline when the total
  // is small (threads would cost more than they save), else split over the pool.
  void parallel_for(int64_t n, int64_t work_per_item,
                    const std::function<void(int64_t, int64_t)>& fn);
  // dst = src converted to dst's dtype (the same dtype, or F32), element for element.
  void copy_as(const Tensor& src, Tensor& dst);

  // Sampling's loop over rows of `logits`, split over the pool when they are many.
  RowLoop row_loop(const Tensor& logits);
  // Replaces rows [T', head_dim] of the cache by dequantise(quantise(rows)) (CpuBackendOptions::int4_kv).
  void int4_roundtrip_rows(float* rows, int64_t count, int64_t head_dim);

  ThreadPool& pool_;
  CpuMatmul matmul_;
  bool int4_kv_;
  std::vector<uint16_t> x_bf16_;  // linear(): x converted to bf16 for BF16 weights, grown on demand
};

}  // namespace strata::compute
