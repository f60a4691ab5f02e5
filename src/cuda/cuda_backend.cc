// The CUDA backend: device memory, uploads and downloads, the pinned staging ring, and the ops
// other than attention (cuda_backend_attention.cc). Kernels live in the .cu files of this
// directory; this file only validates arguments and enqueues them.
#include <algorithm>
#include <cstring>
#include <limits>
#include <string>

#include <cuda_profiler_api.h>

#include "common/units.h"
#include "compute/op_checks.h"
#include "cuda/cuda_backend_impl.h"
#include "cuda/cuda_check.h"
#include "cuda/elementwise.h"
#include "cuda/gemv.h"
#include "cuda/int4_gemm.h"
#include "cuda/int4_weights.h"
#include "cuda/logit_adjust.h"
#include "cuda/logit_stats.h"
#include "cuda/norm.h"
#include "cuda/rope.h"
#include "cuda/rows.h"

namespace strata::cuda {
namespace {

constexpr size_t kRingBytes = size_t{8} << 20;  // initial staging ring; grows on demand
constexpr size_t kStageAlign = 256;
constexpr size_t kMaxStagedRanges = 16;
constexpr size_t kMaxPinnedBlocks = 4;

int64_t rows_of(const Tensor& t, int64_t cols) { return cols == 0 ? 0 : t.numel() / cols; }

std::shared_ptr<void> host_pinned(size_t bytes) {
  void* p = nullptr;
  if (cudaHostAlloc(&p, bytes, cudaHostAllocDefault) != cudaSuccess) {
    cudaGetLastError();
    return nullptr;
  }
  return std::shared_ptr<void>(p, [](void* q) { cudaFreeHost(q); });
}

}  // namespace

// Blocks above this size go straight back to the pool (weights, KV caches): caching them would
// only hold memory that a differently sized allocation may need.
constexpr size_t kMaxCachedBlock = size_t{256} << 20;
constexpr size_t kMaxCachedBytes = size_t{4} << 30;

void DeviceState::release(void* p, size_t bytes) {
  if (bytes > kMaxCachedBlock || cached_bytes + bytes > kMaxCachedBytes) {
    cudaFreeAsync(p, stream);
    return;
  }
  free_blocks[bytes].push_back(p);
  cached_bytes += bytes;
}

void* DeviceState::reuse(size_t bytes) {
  auto it = free_blocks.find(bytes);
  if (it == free_blocks.end() || it->second.empty()) return nullptr;
  void* p = it->second.back();
  it->second.pop_back();
  cached_bytes -= bytes;
  return p;
}

void DeviceState::drop_cache() {
  for (auto& [bytes, blocks] : free_blocks)
    for (void* p : blocks) cudaFreeAsync(p, stream);
  free_blocks.clear();
  cached_bytes = 0;
}

DeviceState::~DeviceState() {
  if (stream != nullptr) {
    drop_cache();
    cudaStreamSynchronize(stream);
    cudaStreamDestroy(stream);
  }
}

CudaBackend* as_cuda(compute::Backend& backend) { return dynamic_cast<CudaBackend*>(&backend); }

bool is_cuda_backend(const compute::Backend& backend) {
  return dynamic_cast<const CudaBackend*>(&backend) != nullptr;
}

void synchronize(compute::Backend& backend) {
  if (CudaBackend* b = as_cuda(backend)) b->synchronize();
}

void release_cached_memory(compute::Backend& backend) {
  CudaBackend* b = as_cuda(backend);
  if (b == nullptr) return;
  b->release_cached_memory();
}

void drop_cached_blocks(compute::Backend& backend) {
  CudaBackend* b = as_cuda(backend);
  if (b != nullptr) b->drop_cached_blocks();
}

void CudaBackend::release_cached_memory() {
  synchronize();
  state_->drop_cache();
  cudaStreamSynchronize(state_->stream);
  cudaMemPool_t pool = nullptr;
  if (cudaDeviceGetDefaultMemPool(&pool, state_->device) == cudaSuccess) cudaMemPoolTrimTo(pool, 0);
}

Status fill_uniform(compute::Backend& backend, Tensor& t, uint64_t seed, float center,
                    float half) {
  CudaBackend* b = as_cuda(backend);
  if (b == nullptr) return invalid_argument("fill_uniform: needs the CUDA backend");
  if (t.memory() != MemoryKind::kGpu || t.dtype() == DType::kI32)
    return invalid_argument("fill_uniform: needs an F32, F16 or BF16 device tensor");
  launch_fill_uniform(t.dtype(), t.raw(), t.numel(), seed, center, half, b->stream());
  return Status::ok();
}

Status hold_stream(compute::Backend& backend, double microseconds) {
  CudaBackend* b = as_cuda(backend);
  if (b == nullptr) return invalid_argument("hold_stream: needs the CUDA backend");
  if (microseconds < 0) return invalid_argument("hold_stream: a negative time");
  launch_hold(static_cast<uint64_t>(microseconds * 1e3), b->stream());
  return Status::ok();
}

void profiler_capture(compute::Backend& backend, bool on) {
  synchronize(backend);
  if (on) {
    cudaProfilerStart();
  } else {
    cudaProfilerStop();
  }
}

Result<std::unique_ptr<compute::Backend>> make_cuda_backend(const CudaBackendOptions& options) {
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<CudaBackend> b, CudaBackend::create(options));
  return std::unique_ptr<compute::Backend>(std::move(b));
}

Result<std::unique_ptr<CudaBackend>> CudaBackend::create(const CudaBackendOptions& options) {
  if (options.activation_dtype != DType::kF16 && options.activation_dtype != DType::kBF16)
    return invalid_argument("cuda backend: activations must be F16 or BF16, not " +
                            std::string(dtype_name(options.activation_dtype)));
  int count = 0;
  if (cudaError_t e = cudaGetDeviceCount(&count); e != cudaSuccess) {
    cudaGetLastError();
    return unsupported(std::string("cuda backend: no usable CUDA device (") +
                       cudaGetErrorString(e) + "); use --device cpu");
  }
  if (options.device < 0 || options.device >= count)
    return invalid_argument("cuda backend: device " + std::to_string(options.device) +
                            " does not exist (" + std::to_string(count) + " found)");
  STRATA_CUDA_CHECK(cudaSetDevice(options.device));
  cudaDeviceProp prop{};
  STRATA_CUDA_CHECK(cudaGetDeviceProperties(&prop, options.device));

  std::unique_ptr<CudaBackend> b(new CudaBackend());
  b->act_ = options.activation_dtype;
  b->fuse_ = options.fuse_ops;
  b->sm_count_ = prop.multiProcessorCount;
  b->device_name_ = prop.name;
  b->state_ = std::make_shared<DeviceState>();
  b->state_->device = options.device;
  STRATA_CUDA_CHECK(cudaStreamCreateWithFlags(&b->state_->stream, cudaStreamNonBlocking));
  // Freed blocks stay in the stream-ordered pool for reuse instead of going back to the driver.
  cudaMemPool_t pool = nullptr;
  STRATA_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, options.device));
  uint64_t threshold = std::numeric_limits<uint64_t>::max();
  STRATA_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold));
  STRATA_RETURN_IF_ERROR(b->gemm_.init(b->state_->stream));

  b->ring_bytes_ = kRingBytes;
  b->ring_host_ = host_pinned(kRingBytes);
  if (b->ring_host_ == nullptr || cudaMalloc(&b->ring_device_, kRingBytes) != cudaSuccess) {
    cudaGetLastError();
    b->ring_device_ = nullptr;
    return out_of_memory("cuda backend: no room for the 8 MiB staging buffers");
  }
  return b;
}

CudaBackend::~CudaBackend() {
  if (state_) {
    flush_pending();
    cudaStreamSynchronize(state_->stream);
  }
  if (ring_device_ != nullptr) cudaFree(ring_device_);
}

void CudaBackend::synchronize() {
  flush_pending();
  STRATA_CUDA_CHECK(cudaStreamSynchronize(state_->stream));
}

// --- memory ---------------------------------------------------------------------------------

Result<Tensor> CudaBackend::allocate(DType dtype, Shape shape) {
  return allocate_impl(dtype, std::move(shape), true);
}

Result<Tensor> CudaBackend::allocate_uninitialized(DType dtype, Shape shape) {
  return allocate_impl(dtype, std::move(shape), false);
}

Result<Tensor> CudaBackend::allocate_impl(DType dtype, Shape shape, bool zero) {
  STRATA_ASSIGN_OR_RETURN(const uint64_t elems, checked_numel(shape, "cuda backend"));
  const size_t bytes = static_cast<size_t>(elems) * dtype_size(dtype);
  const size_t rounded = std::max<size_t>(256, (bytes + 255) / 256 * 256);
  cudaStream_t s = state_->stream;
  void* p = state_->reuse(rounded);
  if (p == nullptr && cudaMallocAsync(&p, rounded, s) != cudaSuccess) {
    // Give cached blocks back to the driver and try once more before reporting.
    cudaGetLastError();
    state_->drop_cache();
    STRATA_CUDA_CHECK(cudaStreamSynchronize(s));
    cudaMemPool_t pool = nullptr;
    STRATA_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, state_->device));
    STRATA_CUDA_CHECK(cudaMemPoolTrimTo(pool, 0));
    if (cudaMallocAsync(&p, rounded, s) != cudaSuccess) {
      cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      return out_of_memory("cuda backend: cannot allocate " + format_bytes(bytes) +
                           " for a tensor of shape " + shape_string(shape) + " on " +
                           device_name_ + " (" + format_bytes(free_b) + " free of " +
                           format_bytes(total_b) +
                           "); use a smaller batch or context, or a larger GPU");
    }
  }
  if (zero) STRATA_CUDA_CHECK(cudaMemsetAsync(p, 0, rounded, s));
  std::shared_ptr<DeviceState> state = state_;
  std::shared_ptr<void> owner(p, [state, rounded](void* q) { state->release(q, rounded); });
  return Tensor::wrap(p, dtype, std::move(shape), MemoryKind::kGpu, std::move(owner));
}

Tensor CudaBackend::scratch(DType dtype, Shape shape) {
  auto t = allocate_impl(dtype, std::move(shape), false);
  STRATA_CHECK(t.is_ok(), t.status().to_string());
  return std::move(t).value();
}

Result<Tensor> CudaBackend::upload(const Tensor& host, compute::WeightKind kind) {
  if (!host.defined() || host.memory() == MemoryKind::kGpu)
    return invalid_argument("cuda backend: upload needs a host tensor");
  if (host.dtype() == DType::kI32)
    return invalid_argument("cuda backend: cannot upload an I32 tensor of shape " +
                            shape_string(host.shape()) + " as a weight");
  if (kind == compute::WeightKind::kLinear && host.rank() != 2)
    return invalid_argument("cuda backend: a linear weight must be [out, in], got " +
                            shape_string(host.shape()));
  const DType want = kind == compute::WeightKind::kVector ? DType::kF32 : act_;
  STRATA_ASSIGN_OR_RETURN(Tensor out, allocate(want, host.shape()));
  cudaStream_t s = stream();
  if (host.dtype() == want) {
    STRATA_CUDA_CHECK(cudaMemcpyAsync(out.raw(), host.raw(), host.bytes(), cudaMemcpyHostToDevice, s));
  } else {
    STRATA_ASSIGN_OR_RETURN(Tensor raw, allocate(host.dtype(), host.shape()));
    STRATA_CUDA_CHECK(cudaMemcpyAsync(raw.raw(), host.raw(), host.bytes(), cudaMemcpyHostToDevice, s));
    launch_convert(host.dtype(), raw.raw(), want, out.raw(), host.numel(), s);
  }
  // The host tensor may be freed as soon as we return: wait for the copy.
  synchronize();
  return out;
}

PinnedBlock& CudaBackend::pinned_block(size_t bytes) {
  for (PinnedBlock& b : pinned_)
    if (b.ptr.use_count() == 1 && b.bytes >= bytes) return b;
  // Drop an unreferenced block that is too small, or grow the pool.
  for (size_t i = 0; i < pinned_.size(); ++i) {
    if (pinned_[i].ptr.use_count() == 1) {
      pinned_.erase(pinned_.begin() + static_cast<std::ptrdiff_t>(i));
      break;
    }
  }
  PinnedBlock b;
  b.bytes = std::max<size_t>(bytes, 1 << 20);
  b.ptr = host_pinned(b.bytes);
  STRATA_CHECK(b.ptr != nullptr, "cuda backend: cannot allocate " + format_bytes(b.bytes) +
                                     " of pinned host memory for a download");
  if (pinned_.size() >= kMaxPinnedBlocks) pinned_.erase(pinned_.begin());
  pinned_.push_back(std::move(b));
  return pinned_.back();
}

Tensor CudaBackend::device_copy_of(const Tensor& host) const {
  if (!last_download_device_.defined() || host.raw() != last_download_host_ ||
      host.shape() != last_download_device_.shape())
    return Tensor();
  return last_download_device_;
}

Result<std::vector<compute::LogitStats>> CudaBackend::logit_stats(
    const Tensor& logits, std::span<const compute::LogitQuery> queries) {
  if (logits.memory() != MemoryKind::kGpu && !device_copy_of(logits).defined())
    return compute::logit_stats_on_host(logits, queries);
  return cuda::logit_stats(*this, logits, queries);
}

Tensor CudaBackend::f32_copy(const Tensor& t) {
  if (t.memory() != MemoryKind::kGpu) return compute::Backend::f32_copy(t);
  if (t.dtype() == DType::kF32) return t;
  auto out = allocate_uninitialized(DType::kF32, t.shape());
  STRATA_CHECK(out.is_ok(), "cuda backend: no room for an F32 copy of " + shape_string(t.shape()) + ": " +
                                out.status().to_string());
  launch_convert(t.dtype(), t.raw(), DType::kF32, out->raw(), t.numel(), stream());
  return *out;
}

Result<Tensor> CudaBackend::adjust_logits(const Tensor& logits, std::span<const compute::RowAdjustment> adjustments) {
  if (logits.memory() != MemoryKind::kGpu) return compute::adjust_logits_on_host(logits, adjustments);
  return cuda::adjust_logits(*this, logits, adjustments);
}

Result<std::vector<compute::DrawnToken>> CudaBackend::draw_tokens(const Tensor& logits, std::span<const compute::RowDraw> draws) {
  if (logits.memory() != MemoryKind::kGpu) return compute::draw_tokens_on_host(logits, draws);
  return cuda::draw_tokens(*this, logits, draws);
}

Result<std::vector<float>> CudaBackend::logit_values(const Tensor& logits,
                                                     std::span<const std::pair<int64_t, int32_t>> at) {
  if (logits.memory() != MemoryKind::kGpu) return compute::logit_values_on_host(logits, at);
  return cuda::logit_values(*this, logits, at);
}

Tensor CudaBackend::to_host_f32(const Tensor& t) {
  if (t.memory() != MemoryKind::kGpu) return to_f32(t);
  cudaStream_t s = stream();
  Tensor f32 = t;
  if (t.dtype() != DType::kF32) {
    f32 = scratch(DType::kF32, t.shape());
    launch_convert(t.dtype(), t.raw(), DType::kF32, f32.raw(), t.numel(), s);
  }
  const size_t bytes = f32.bytes();
  PinnedBlock& block = pinned_block(bytes);
  if (bytes > 0) STRATA_CUDA_CHECK(cudaMemcpyAsync(block.ptr.get(), f32.raw(), bytes,
                                                   cudaMemcpyDeviceToHost, s));
  synchronize();
  reset_staging();
  last_download_device_ = f32.reshape(t.shape());
  last_download_host_ = block.ptr.get();
  return Tensor::wrap(block.ptr.get(), DType::kF32, t.shape(), MemoryKind::kPinned, block.ptr);
}

// --- staging ----------------------------------------------------------------------------------

void CudaBackend::reset_staging() {
  ring_used_ = 0;
  staged_.clear();
}

void CudaBackend::reserve_staging(size_t bytes) {
  const size_t need = (bytes + kStageAlign - 1) / kStageAlign * kStageAlign;
  if (ring_used_ + need <= ring_bytes_) return;
  // Every earlier copy out of the ring must finish before its bytes are overwritten.
  synchronize();
  reset_staging();
  if (need <= ring_bytes_) return;
  const size_t grown = std::max(need, 2 * ring_bytes_);
  std::shared_ptr<void> h = host_pinned(grown);
  void* d = nullptr;
  STRATA_CHECK(h != nullptr && cudaMalloc(&d, grown) == cudaSuccess,
               "cuda backend: cannot grow the staging buffers to " + format_bytes(grown));
  STRATA_CUDA_CHECK(cudaFree(ring_device_));
  ring_host_ = std::move(h);
  ring_device_ = d;
  ring_bytes_ = grown;
}

const void* CudaBackend::stage(const void* data, size_t bytes) {
  if (bytes == 0) return ring_device_;
  char* host = static_cast<char*>(ring_host_.get());
  for (const StagedRange& r : staged_)
    if (r.bytes == bytes && std::memcmp(host + r.offset, data, bytes) == 0)
      return static_cast<char*>(ring_device_) + r.offset;
  const size_t need = (bytes + kStageAlign - 1) / kStageAlign * kStageAlign;
  STRATA_CHECK(ring_used_ + need <= ring_bytes_, "cuda backend: staging used without a reservation");
  const size_t off = ring_used_;
  ring_used_ += need;
  std::memcpy(host + off, data, bytes);
  char* dev = static_cast<char*>(ring_device_) + off;
  STRATA_CUDA_CHECK(cudaMemcpyAsync(dev, host + off, bytes, cudaMemcpyHostToDevice, state_->stream));
  if (staged_.size() >= kMaxStagedRanges) staged_.erase(staged_.begin());
  staged_.push_back({off, bytes});
  return dev;
}

// --- ops --------------------------------------------------------------------------------------

void CudaBackend::check_act(const Tensor& t, const char* op, const char* what) const {
  STRATA_CHECK(t.defined() && t.memory() == MemoryKind::kGpu && t.dtype() == act_,
               std::string(op) + ": " + what + " must be a " + std::string(dtype_name(act_)) +
                   " tensor of the cuda backend");
}

static void check_f32_vector(const Tensor* t, int64_t n, const char* op, const char* what) {
  if (t == nullptr) return;
  STRATA_CHECK(t->memory() == MemoryKind::kGpu && t->dtype() == DType::kF32 && t->numel() == n,
               std::string(op) + ": " + what + " must be an F32 device vector of " +
                   std::to_string(n) + " (from upload())");
}

void CudaBackend::flush_pending() {
  Pending& p = pending_;
  if (p.kind == Pending::Kind::kNone) return;
  cudaStream_t s = state_->stream;
  switch (p.kind) {
    case Pending::Kind::kGemv:
      if (p.int4)
        launch_gemv_int4(act_, p.x, p.batch, p.m, p.k, false, s);
      else
        launch_gemv(act_, p.x, p.batch, p.m, p.k, false, s);
      break;
    case Pending::Kind::kBias: launch_add_bias(act_, p.y, p.bias, p.rows, p.cols, false, s); break;
    case Pending::Kind::kAdd: launch_add(act_, p.a, p.b, p.y, p.rows * p.cols, s); break;
    case Pending::Kind::kRope:
      for (int i = 0; i < p.rope_count; ++i)
        launch_rope(act_, p.rope_x[i], p.positions, p.inv_freq, p.rows, p.rope_heads[i], p.cols, s);
      break;
    case Pending::Kind::kNone: break;
  }
  clear_pending();
}

void CudaBackend::clear_pending() {
  Pending& p = pending_;
  p.kind = Pending::Kind::kNone;
  p.batch = GemvBatch{};
  p.rope_count = 0;
  p.hold.clear();
}

void CudaBackend::linear(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) {
  check_act(x, "linear", "x");
  check_act(y, "linear", "y");
  const bool int4 = is_int4_weight(w);
  STRATA_CHECK(int4 || (w.defined() && w.rank() == 2 && w.dtype() == act_ &&
                        w.memory() == MemoryKind::kGpu),
               "linear: w must be a [N, K] weight from upload() or an int4 weight");
  const int64_t n = w.dim(0), k = int4 ? int4_weight_cols(w) : w.dim(1), m = rows_of(x, k);
  STRATA_CHECK(x.rank() >= 1 && x.dim(-1) == k, "linear: x " + shape_string(x.shape()) +
                                                    " does not match w " + shape_string(w.shape()));
  STRATA_CHECK(y.rank() >= 1 && y.dim(-1) == n && y.numel() == m * n,
               "linear: y " + shape_string(y.shape()) + " is not [" + std::to_string(m) + ", " +
                   std::to_string(n) + "]");
  STRATA_CHECK(x.raw() != y.raw(), "linear: y must not alias x");
  check_f32_vector(bias, n, "linear", "bias");
  if (m == 0) return;
  const bool skinny = int4 ? gemv_int4_supported(act_, m, k, x.raw())
                           : gemv_supported(m, k, x.raw(), w.raw());
  if (skinny) {  // decode-sized: stream w once, bias fused; joins the held product if x is shared
    Pending& p = pending_;
    const bool joins = p.kind == Pending::Kind::kGemv && p.x == x.raw() && p.m == m && p.k == k &&
                       p.int4 == int4 && p.batch.count < kGemvMaxSegments;
    if (!joins) {
      flush_pending();
      p.kind = Pending::Kind::kGemv;
      p.x = x.raw();
      p.m = m;
      p.k = k;
      p.int4 = int4;
      p.hold.push_back(x);
    }
    p.batch.seg[p.batch.count++] = {w.raw(), bias ? bias->data<float>() : nullptr, y.raw(), n};
    p.hold.push_back(w);
    p.hold.push_back(y);
    if (bias) p.hold.push_back(*bias);
    if (!fuse_) flush_pending();
    return;
  }
  flush_pending();
  if (int4) {
    linear_int4(x, w, y, m, n, k);
  } else {
    gemm_.run(act_, x.raw(), w.raw(), y.raw(), m, n, k);
  }
  if (bias != nullptr) {  // held back: a ReLU right after it joins it
    Pending& p = pending_;
    p.kind = Pending::Kind::kBias;
    p.y = y.raw();
    p.bias = bias->data<float>();
    p.rows = m;
    p.cols = n;
    p.hold = {y, *bias};
    if (!fuse_) flush_pending();
  }
}

void CudaBackend::linear_int4(const Tensor& x, const Tensor& w, Tensor& y, int64_t m, int64_t n,
                              int64_t k) {
  // Past the skinny range: the dense weight in a scratch buffer, then cuBLAS. Running the skinny
  // kernel over 8 rows at a time instead measured slower at 16 rows (it is bound by its
  // dequantising arithmetic, not by the weight bytes: bench/RESULTS.md).
  Tensor dense = scratch(act_, {n, k});
  launch_dequantise_int4(act_, int4_device_view(w.raw(), n, k), dense.raw(), state_->stream);
  gemm_.run(act_, x.raw(), dense.raw(), y.raw(), m, n, k);
}

void CudaBackend::layer_norm(const Tensor& x, const Tensor* gamma, const Tensor* beta, float eps,
                             Tensor& y) {
  check_act(x, "layer_norm", "x");
  check_act(y, "layer_norm", "y");
  const int64_t c = x.dim(-1);
  STRATA_CHECK(y.numel() == x.numel() && y.dim(-1) == c,
               "layer_norm: y " + shape_string(y.shape()) + " for x " + shape_string(x.shape()));
  check_f32_vector(gamma, c, "layer_norm", "gamma");
  check_f32_vector(beta, c, "layer_norm", "beta");
  const float* g = gamma ? gamma->data<float>() : nullptr;
  const float* b = beta ? beta->data<float>() : nullptr;
  if (joins_add(x)) {  // the residual add just before: one pass for both
    launch_add_layer_norm(act_, pending_.a, pending_.b, pending_.y, g, b, eps, y.raw(),
                          rows_of(x, c), c, state_->stream);
    clear_pending();
    return;
  }
  flush_pending();
  launch_layer_norm(act_, x.raw(), gamma ? gamma->data<float>() : nullptr,
                    beta ? beta->data<float>() : nullptr, eps, y.raw(), rows_of(x, c), c, stream());
}

void CudaBackend::rms_norm(const Tensor& x, const Tensor& gamma, float eps, Tensor& y) {
  check_act(x, "rms_norm", "x");
  check_act(y, "rms_norm", "y");
  const int64_t c = x.dim(-1);
  STRATA_CHECK(y.numel() == x.numel() && y.dim(-1) == c,
               "rms_norm: y " + shape_string(y.shape()) + " for x " + shape_string(x.shape()));
  check_f32_vector(&gamma, c, "rms_norm", "gamma");
  if (joins_add(x)) {
    launch_add_rms_norm(act_, pending_.a, pending_.b, pending_.y, gamma.data<float>(), eps,
                        y.raw(), rows_of(x, c), c, state_->stream);
    clear_pending();
    return;
  }
  flush_pending();
  launch_rms_norm(act_, x.raw(), gamma.data<float>(), eps, y.raw(), rows_of(x, c), c, stream());
}

void CudaBackend::add(const Tensor& a, const Tensor& b, Tensor& y) {
  check_act(a, "add", "a");
  check_act(b, "add", "b");
  check_act(y, "add", "y");
  STRATA_CHECK(a.numel() == b.numel() && a.numel() == y.numel(),
               "add: shapes " + shape_string(a.shape()) + ", " + shape_string(b.shape()) + " -> " +
                   shape_string(y.shape()));
  flush_pending();
  // Held back: a norm of y right after it (the next sublayer's input) joins it.
  Pending& p = pending_;
  p.kind = Pending::Kind::kAdd;
  p.a = a.raw();
  p.b = b.raw();
  p.y = y.raw();
  p.rows = 1;
  p.cols = a.numel();
  p.hold = {a, b, y};
  if (!fuse_) flush_pending();
}

void CudaBackend::relu(Tensor& x) {
  check_act(x, "relu", "x");
  Pending& p = pending_;
  if (p.kind == Pending::Kind::kBias && p.y == x.raw() && p.rows * p.cols == x.numel()) {
    launch_add_bias(act_, p.y, p.bias, p.rows, p.cols, true, state_->stream);
    clear_pending();
    return;
  }
  if (p.kind == Pending::Kind::kGemv && p.batch.count == 1 && p.batch.seg[0].y == x.raw() &&
      p.m * p.batch.seg[0].n == x.numel()) {
    if (p.int4)
      launch_gemv_int4(act_, p.x, p.batch, p.m, p.k, true, state_->stream);
    else
      launch_gemv(act_, p.x, p.batch, p.m, p.k, true, state_->stream);
    clear_pending();
    return;
  }
  flush_pending();
  launch_relu(act_, x.raw(), x.numel(), stream());
}

void CudaBackend::silu_mul(const Tensor& gate, const Tensor& up, Tensor& y) {
  check_act(gate, "silu_mul", "gate");
  check_act(up, "silu_mul", "up");
  check_act(y, "silu_mul", "y");
  STRATA_CHECK(gate.numel() == up.numel() && gate.numel() == y.numel(),
               "silu_mul: shapes " + shape_string(gate.shape()) + ", " + shape_string(up.shape()) +
                   " -> " + shape_string(y.shape()));
  // The held gate and up products of the same rows: silu(gate) * up in their epilogue, rounded as
  // the separate launches round it, where one launch is faster: on the tensor cores from 2 rows,
  // and for int4 at batch 1 (a warp's two rows a gate row and its up row). Dense batch 1 keeps
  // its launches: the CUDA-core kernel's two-row variant is slower there (6.6 against 6.06 ms
  // a llama-3-8b step).
  Pending& p = pending_;
  const bool gated =
      p.kind == Pending::Kind::kGemv && p.batch.count == 2 && p.batch.seg[0].y == gate.raw() &&
      p.batch.seg[1].y == up.raw() && p.batch.seg[0].n == p.batch.seg[1].n &&
      p.m * p.batch.seg[0].n == gate.numel() &&
      (p.int4 ? p.m == 1 || (act_ == DType::kF16 && gemv_mma_supported(p.m))
              : p.m >= 2 && gemv_mma_supported(p.m)) &&
      !overlap(y, p.hold[0]) &&
      (y.raw() == gate.raw() || y.raw() == up.raw() || (!overlap(y, gate) && !overlap(y, up)));
  if (gated) {
    p.batch.gated = true;
    p.batch.seg[0].y = y.raw();
    p.hold.push_back(y);
    flush_pending();
    return;
  }
  flush_pending();
  launch_silu_mul(act_, gate.raw(), up.raw(), y.raw(), gate.numel(), stream());
}

void CudaBackend::embedding(const Tensor& table, std::span<const int32_t> ids, Tensor& y) {
  flush_pending();
  check_act(table, "embedding", "table");
  check_act(y, "embedding", "y");
  compute::check_embedding(table, ids, y);
  const int64_t c = table.dim(1), n = static_cast<int64_t>(ids.size());
  if (n == 0) return;
  reserve_staging(ids.size_bytes() + kStageAlign);
  launch_gather_rows(act_, table.raw(), stage(ids), n, c, y.raw(), stream());
}

void CudaBackend::gather_rows(const Tensor& x, std::span<const int32_t> rows, Tensor& y) {
  flush_pending();
  check_act(x, "gather_rows", "x");
  check_act(y, "gather_rows", "y");
  compute::check_gather_rows(x, rows, y);
  const int64_t nx = x.dim(0), c = nx == 0 ? 0 : x.numel() / nx,
                n = static_cast<int64_t>(rows.size());
  STRATA_CHECK(x.raw() != y.raw() || n == 0, "gather_rows: y must not overlap x");
  if (n == 0) return;
  reserve_staging(rows.size_bytes() + kStageAlign);
  launch_gather_rows(act_, x.raw(), stage(rows), n, c, y.raw(), stream());
}

void CudaBackend::scatter_add_rows(const Tensor& x, std::span<const int32_t> rows,
                                   std::span<const float> weights, Tensor& y) {
  flush_pending();
  check_act(x, "scatter_add_rows", "x");
  check_act(y, "scatter_add_rows", "y");
  compute::check_scatter_add_rows(x, rows, weights, y);
  const int64_t n = static_cast<int64_t>(rows.size());
  if (n == 0) return;
  reserve_staging(rows.size_bytes() + weights.size_bytes() + 2 * kStageAlign);
  const int32_t* index = stage(rows);
  const float* weight = stage(weights);
  launch_scatter_add_rows(act_, x.raw(), index, weight, n, y.dim(1), y.raw(), stream());
}

void CudaBackend::rope(Tensor& x, std::span<const int32_t> positions,
                       const compute::RopeTable& table) {
  if (pending_.kind != Pending::Kind::kRope) flush_pending();
  check_act(x, "rope", "x");
  STRATA_CHECK(x.rank() == 3, "rope: x must be [T, heads, head_dim], got " + shape_string(x.shape()));
  const int64_t t_count = x.dim(0), heads = x.dim(1), d = x.dim(2);
  STRATA_CHECK(d == table.head_dim && static_cast<int64_t>(table.inv_freq.size()) == d / 2,
               "rope: table is for head_dim " + std::to_string(table.head_dim) + ", x has " +
                   std::to_string(d));
  STRATA_CHECK(static_cast<int64_t>(positions.size()) == t_count,
               "rope: " + std::to_string(positions.size()) + " positions for " +
                   std::to_string(t_count) + " tokens");
  if (t_count == 0) {
    flush_pending();
    return;
  }
  // May synchronize, which launches what is held.
  reserve_staging(positions.size_bytes() + table.inv_freq.size() * sizeof(float) + 2 * kStageAlign);
  const float* inv_freq = stage(std::span<const float>(table.inv_freq));
  const int32_t* pos = stage(positions);
  // Held back: the attention after the RoPE of q and k may join both to its cache write. The
  // staging ring hands the same bytes the same address, so equal pointers mean equal arguments.
  Pending& p = pending_;
  const bool joins = p.kind == Pending::Kind::kRope && p.rope_count == 1 && p.positions == pos &&
                     p.inv_freq == inv_freq && p.rows == t_count && p.cols == d &&
                     !overlap(x, p.hold[0]);
  if (!joins) {
    flush_pending();
    p.kind = Pending::Kind::kRope;
    p.rope_count = 0;
    p.positions = pos;
    p.inv_freq = inv_freq;
    p.rows = t_count;
    p.cols = d;
    p.host_positions.assign(positions.begin(), positions.end());
  }
  p.rope_x[p.rope_count] = x.raw();
  p.rope_heads[p.rope_count++] = heads;
  p.hold.push_back(x);
  if (!fuse_) flush_pending();
}

}  // namespace strata::cuda
