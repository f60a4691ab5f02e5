#include "compute/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <string>

#include "common/check.h"
#include "compute/op_checks.h"
#include "common/thread_pool.h"
#include "common/units.h"

namespace strata::compute {
namespace {

// Below this many elements an op runs on the calling thread.
constexpr int64_t kParallelMinWork = int64_t{1} << 15;

// Inputs and outputs of every op: defined F32 host tensors.
void check_f32(const Tensor& t, const char* op, const char* name) {
  STRATA_CHECK(t.defined() && t.dtype() == DType::kF32 && t.memory() != MemoryKind::kGpu,
               std::string(op) + ": " + name + " must be a defined F32 host tensor");
}

// Rows of a tensor read as [rows, cols] (cols is the last dimension).
int64_t rows_of(const Tensor& t, int64_t cols) { return cols == 0 ? 0 : t.numel() / cols; }

Result<Tensor> host_alloc(DType dtype, const Shape& shape) {
  STRATA_ASSIGN_OR_RETURN(const uint64_t elems, checked_numel(shape, "cpu backend"));
  size_t bytes = static_cast<size_t>(elems) * dtype_size(dtype);
  size_t rounded = std::max<size_t>(64, (bytes + 63) / 64 * 64);
  void* p = std::aligned_alloc(64, rounded);
  if (p == nullptr)
    return out_of_memory("cpu backend: cannot allocate " + format_bytes(bytes) +
                         " for a tensor of shape " + shape_string(shape));
  std::memset(p, 0, rounded);
  std::shared_ptr<void> owner(p, [](void* q) { std::free(q); });
  return Tensor::wrap(p, dtype, shape, MemoryKind::kHost, std::move(owner));
}

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(ThreadPool& pool) {
  return make_cpu_backend(pool, CpuBackendOptions{});
}

std::unique_ptr<Backend> make_cpu_backend(ThreadPool& pool, const CpuBackendOptions& options) {
  return std::make_unique<CpuBackend>(pool, options);
}

CpuBackend::CpuBackend(ThreadPool& pool, const CpuBackendOptions& options)
    : pool_(pool), matmul_(options.allow_bf16_matmul), int4_kv_(options.int4_kv) {}

void CpuBackend::parallel_for(int64_t n, int64_t work_per_item,
                              const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  if (n == 1 || n * std::max<int64_t>(work_per_item, 1) < kParallelMinWork) {
    fn(0, n);
  } else {
    pool_.parallel_for(n, fn);
  }
}

// --- memory ---------------------------------------------------------------------------------

Result<Tensor> CpuBackend::allocate(DType dtype, Shape shape) { return host_alloc(dtype, shape); }

Result<Tensor> CpuBackend::upload(const Tensor& host, WeightKind kind) {
  if (!host.defined() || host.memory() == MemoryKind::kGpu)
    return invalid_argument("cpu backend: upload needs a host tensor");
  if (host.dtype() == DType::kI32)
    return invalid_argument("cpu backend: cannot upload an I32 tensor of shape " +
                            shape_string(host.shape()) + " as a weight");
  if (kind == WeightKind::kLinear) {
    if (host.rank() != 2)
      return invalid_argument("cpu backend: a linear weight must be [out, in], got " +
                              shape_string(host.shape()));
    // BF16 stays BF16 when oneDNN has a bf16 matmul here; otherwise it is widened once, now.
    DType keep =
        host.dtype() == DType::kBF16 && matmul_.bf16_supported() ? DType::kBF16 : DType::kF32;
    STRATA_ASSIGN_OR_RETURN(Tensor out, host_alloc(keep, host.shape()));
    copy_as(host, out);
    return out;
  }
  STRATA_ASSIGN_OR_RETURN(Tensor out, host_alloc(DType::kF32, host.shape()));
  copy_as(host, out);
  return out;
}

void CpuBackend::copy_as(const Tensor& src, Tensor& dst) {
  // Weights can be large and the runtime may upload them every step: copy in parallel blocks.
  constexpr int64_t kBlock = int64_t{1} << 16;  // elements
  const int64_t n = src.numel(), blocks = (n + kBlock - 1) / kBlock;
  const size_t in_size = dtype_size(src.dtype()), out_size = dtype_size(dst.dtype());
  const char* in = static_cast<const char*>(src.raw());
  char* out = static_cast<char*>(dst.raw());
  parallel_for(blocks, kBlock, [&](int64_t b0, int64_t b1) {
    const int64_t begin = b0 * kBlock, count = std::min(n, b1 * kBlock) - begin;
    if (src.dtype() == dst.dtype()) {
      std::memcpy(out + begin * out_size, in + begin * in_size, count * in_size);
    } else {
      convert_to_f32(src.dtype(), in + begin * in_size,
                     reinterpret_cast<float*>(out + begin * out_size), count);
    }
  });
}

Tensor CpuBackend::to_host_f32(const Tensor& t) { return to_f32(t); }

// --- sampling's passes over logits -----------------------------------------------------------

Result<std::vector<LogitStats>> CpuBackend::logit_stats(const Tensor& logits, std::span<const LogitQuery> queries) {
  if (logits.dtype() != DType::kF32 || logits.rank() != 2 || static_cast<int64_t>(queries.size()) != logits.dim(0))
    return logit_stats_on_host(logits, queries);  // its error
  std::vector<LogitStats> out(queries.size());
  Status failed;
  std::mutex mu;
  row_loop(logits)(logits.dim(0), [&](int64_t b, int64_t e) {
    auto part = logit_stats_on_host(logits.slice_rows(b, e), queries.subspan(static_cast<size_t>(b), static_cast<size_t>(e - b)));
    if (!part.is_ok()) {
      std::lock_guard lock(mu);
      failed = part.status();
      return;
    }
    std::move(part->begin(), part->end(), out.begin() + b);
  });
  STRATA_RETURN_IF_ERROR(failed);
  return out;
}

RowLoop CpuBackend::row_loop(const Tensor& logits) {
  const int64_t row_work = logits.rank() == 2 ? logits.dim(1) : 1;
  return [this, row_work](int64_t n, const std::function<void(int64_t, int64_t)>& fn) { parallel_for(n, row_work, fn); };
}

Result<Tensor> CpuBackend::adjust_logits(const Tensor& logits, std::span<const RowAdjustment> adjustments) {
  return adjust_logits_on_host(logits, adjustments, row_loop(logits));
}

Result<std::vector<DrawnToken>> CpuBackend::draw_tokens(const Tensor& logits, std::span<const RowDraw> draws) {
  return draw_tokens_on_host(logits, draws, row_loop(logits));
}

// --- linear ---------------------------------------------------------------------------------

void CpuBackend::linear(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) {
  check_f32(x, "linear", "x");
  check_f32(y, "linear", "y");
  STRATA_CHECK(
      w.defined() && w.rank() == 2 && (w.dtype() == DType::kF32 || w.dtype() == DType::kBF16),
      "linear: w must be an F32 or BF16 [N, K] tensor from upload()");
  const int64_t n = w.dim(0), k = w.dim(1);
  const int64_t m = rows_of(x, k);
  STRATA_CHECK(x.rank() >= 1 && x.dim(-1) == k, "linear: x " + shape_string(x.shape()) +
                                                    " does not match w " + shape_string(w.shape()));
  STRATA_CHECK(y.rank() >= 1 && y.dim(-1) == n && y.numel() == m * n,
               "linear: y " + shape_string(y.shape()) + " is not [" + std::to_string(m) + ", " +
                   std::to_string(n) + "]");
  STRATA_CHECK(x.raw() != y.raw(), "linear: y must not alias x");
  if (bias != nullptr) {
    check_f32(*bias, "linear", "bias");
    STRATA_CHECK(bias->numel() == n,
                 "linear: bias " + shape_string(bias->shape()) + " for N = " + std::to_string(n));
  }
  const float* b = bias != nullptr ? bias->data<float>() : nullptr;
  if (m == 0) return;

  if (w.dtype() == DType::kF32) {
    matmul_.run(x.data<float>(), w.raw(), DType::kF32, b, y.data<float>(), m, n, k);
    return;
  }
  STRATA_CHECK(matmul_.bf16_supported(), "linear: BF16 weight was not produced by upload()");
  x_bf16_.resize(static_cast<size_t>(m * k));
  const float* xs = x.data<float>();
  uint16_t* xb = x_bf16_.data();
  parallel_for(m, k, [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0 * k; i < r1 * k; ++i) xb[i] = f32_to_bf16(xs[i]);
  });
  matmul_.run(xb, w.raw(), DType::kBF16, b, y.data<float>(), m, n, k);
}

// --- norms ----------------------------------------------------------------------------------
// Row reductions are accumulated in double (a little more accurate than torch's f32 sums); the
// per-element arithmetic is f32, in the order transformers uses.

void CpuBackend::layer_norm(const Tensor& x, const Tensor* gamma, const Tensor* beta, float eps,
                            Tensor& y) {
  check_f32(x, "layer_norm", "x");
  check_f32(y, "layer_norm", "y");
  const int64_t c = x.dim(-1), rows = rows_of(x, c);
  STRATA_CHECK(y.numel() == x.numel() && y.dim(-1) == c,
               "layer_norm: y " + shape_string(y.shape()) + " for x " + shape_string(x.shape()));
  if (gamma) check_f32(*gamma, "layer_norm", "gamma");
  if (beta) check_f32(*beta, "layer_norm", "beta");
  STRATA_CHECK(!gamma || gamma->numel() == c, "layer_norm: gamma size");
  STRATA_CHECK(!beta || beta->numel() == c, "layer_norm: beta size");
  const float* xs = x.data<float>();
  float* ys = y.data<float>();
  const float* g = gamma ? gamma->data<float>() : nullptr;
  const float* bt = beta ? beta->data<float>() : nullptr;
  parallel_for(rows, c, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = xs + r * c;
      float* yr = ys + r * c;
      double sum = 0;
      for (int64_t i = 0; i < c; ++i) sum += xr[i];
      const double mean = sum / static_cast<double>(c);
      double sq = 0;
      for (int64_t i = 0; i < c; ++i) sq += (xr[i] - mean) * (xr[i] - mean);
      const float mean_f = static_cast<float>(mean);
      // Biased variance; eps inside the square root.
      const float rstd = static_cast<float>(1.0 / std::sqrt(sq / static_cast<double>(c) + eps));
      for (int64_t i = 0; i < c; ++i) {
        float v = (xr[i] - mean_f) * rstd;
        if (g) v *= g[i];
        if (bt) v += bt[i];
        yr[i] = v;
      }
    }
  });
}

void CpuBackend::rms_norm(const Tensor& x, const Tensor& gamma, float eps, Tensor& y) {
  check_f32(x, "rms_norm", "x");
  check_f32(y, "rms_norm", "y");
  check_f32(gamma, "rms_norm", "gamma");
  const int64_t c = x.dim(-1), rows = rows_of(x, c);
  STRATA_CHECK(y.numel() == x.numel() && y.dim(-1) == c,
               "rms_norm: y " + shape_string(y.shape()) + " for x " + shape_string(x.shape()));
  STRATA_CHECK(gamma.numel() == c, "rms_norm: gamma size");
  const float* xs = x.data<float>();
  const float* g = gamma.data<float>();
  float* ys = y.data<float>();
  parallel_for(rows, c, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = xs + r * c;
      float* yr = ys + r * c;
      double sq = 0;
      for (int64_t i = 0; i < c; ++i) sq += static_cast<double>(xr[i]) * xr[i];
      // LlamaRMSNorm: variance = mean(x^2) in f32; x * rsqrt(variance + eps); then * weight.
      const float variance = static_cast<float>(sq / static_cast<double>(c));
      const float inv = 1.0f / std::sqrt(variance + eps);
      for (int64_t i = 0; i < c; ++i) yr[i] = g[i] * (xr[i] * inv);
    }
  });
}

// --- elementwise ----------------------------------------------------------------------------

void CpuBackend::add(const Tensor& a, const Tensor& b, Tensor& y) {
  check_f32(a, "add", "a");
  check_f32(b, "add", "b");
  check_f32(y, "add", "y");
  STRATA_CHECK(a.numel() == b.numel() && a.numel() == y.numel(),
               "add: shapes " + shape_string(a.shape()) + ", " + shape_string(b.shape()) + " -> " +
                   shape_string(y.shape()));
  const float* as = a.data<float>();
  const float* bs = b.data<float>();
  float* ys = y.data<float>();
  parallel_for(a.numel(), 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) ys[i] = as[i] + bs[i];
  });
}

void CpuBackend::relu(Tensor& x) {
  check_f32(x, "relu", "x");
  float* xs = x.data<float>();
  parallel_for(x.numel(), 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) xs[i] = xs[i] > 0.0f ? xs[i] : 0.0f;
  });
}

void CpuBackend::silu_mul(const Tensor& gate, const Tensor& up, Tensor& y) {
  check_f32(gate, "silu_mul", "gate");
  check_f32(up, "silu_mul", "up");
  check_f32(y, "silu_mul", "y");
  STRATA_CHECK(gate.numel() == up.numel() && gate.numel() == y.numel(),
               "silu_mul: shapes " + shape_string(gate.shape()) + ", " + shape_string(up.shape()) +
                   " -> " + shape_string(y.shape()));
  const float* g = gate.data<float>();
  const float* u = up.data<float>();
  float* ys = y.data<float>();
  // exp() costs ~10 adds: count each element as 16 units of work.
  parallel_for(gate.numel(), 16, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) ys[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
  });
}

// --- row copies -----------------------------------------------------------------------------

void CpuBackend::embedding(const Tensor& table, std::span<const int32_t> ids, Tensor& y) {
  check_f32(table, "embedding", "table");
  check_f32(y, "embedding", "y");
  check_embedding(table, ids, y);
  const int64_t c = table.dim(1), n = static_cast<int64_t>(ids.size());
  const float* ts = table.data<float>();
  float* ys = y.data<float>();
  parallel_for(n, c, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) std::memcpy(ys + i * c, ts + ids[i] * c, c * sizeof(float));
  });
}

void CpuBackend::gather_rows(const Tensor& x, std::span<const int32_t> rows, Tensor& y) {
  check_f32(x, "gather_rows", "x");
  check_f32(y, "gather_rows", "y");
  check_gather_rows(x, rows, y);
  const int64_t nx = x.dim(0), c = nx == 0 ? 0 : x.numel() / nx,
                n = static_cast<int64_t>(rows.size());
  const float* xs = x.data<float>();
  float* ys = y.data<float>();
  const auto y_begin = reinterpret_cast<uintptr_t>(ys), x_begin = reinterpret_cast<uintptr_t>(xs);
  const auto row_bytes = static_cast<uintptr_t>(c) * sizeof(float);
  STRATA_CHECK(
      n == 0 || c == 0 || y_begin + n * row_bytes <= x_begin || x_begin + nx * row_bytes <= y_begin,
      "gather_rows: y must not overlap x");
  parallel_for(n, c, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) std::memcpy(ys + i * c, xs + rows[i] * c, c * sizeof(float));
  });
}

void CpuBackend::scatter_add_rows(const Tensor& x, std::span<const int32_t> rows,
                                  std::span<const float> weights, Tensor& y) {
  check_f32(x, "scatter_add_rows", "x");
  check_f32(y, "scatter_add_rows", "y");
  check_scatter_add_rows(x, rows, weights, y);
  const int64_t c = y.dim(1);
  const float* xs = x.data<float>();
  float* ys = y.data<float>();
  parallel_for(static_cast<int64_t>(rows.size()), c, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      float* out = ys + rows[i] * c;
      const float* in = xs + i * c;
      for (int64_t j = 0; j < c; ++j) out[j] += weights[i] * in[j];
    }
  });
}

}  // namespace strata::compute
