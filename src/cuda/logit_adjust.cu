// Sampling's row adjustments, whole-row draws and value look-ups on the GPU. One block per row:
// the adjustment copies its row with the mask applied, then applies the token edits (a masked
// token stays -inf under every edit, so the order against compute::adjust_row's is immaterial),
// then min_p against the block's maximum. The draw sums 256 runs of its row in double, one thread
// each (a token its mask does not allow weighs 0), then one thread adds the runs' sums in order
// and walks the run the target falls in.
#include <cmath>
#include <string>

#include "cuda/cuda_backend_impl.h"
#include "cuda/cuda_check.h"
#include "cuda/logit_adjust.h"

namespace strata::cuda {
namespace {

using compute::RowAdjustment;
using compute::RowDraw;

constexpr int kAdjustThreads = 512;
constexpr int kDrawRuns = 256;

struct DeviceEdit {
  int32_t token;
  float penalty;
  float subtract;
  float add;
  int32_t refuse;
};

struct DeviceRow {
  int64_t source;       // row of the logits
  int64_t mask_word;    // first word of its mask in the masks array, -1: none
  int32_t edit_begin;   // its edits: [edit_begin, edit_end)
  int32_t edit_end;
  float min_p_offset;
  int32_t min_p;
};

__global__ void __launch_bounds__(kAdjustThreads)
    adjust_kernel(const float* __restrict__ logits, int64_t vocab, const DeviceRow* __restrict__ rows,
                  const uint64_t* __restrict__ masks, const DeviceEdit* __restrict__ edits,
                  float* __restrict__ out) {
  __shared__ float s_max[32];
  const DeviceRow r = rows[blockIdx.x];
  const float* x = logits + r.source * vocab;
  float* y = out + static_cast<int64_t>(blockIdx.x) * vocab;
  const uint64_t* mask = r.mask_word >= 0 ? masks + r.mask_word : nullptr;
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) {
    const bool kept = mask == nullptr || ((mask[i / 64] >> (i % 64)) & 1) != 0;
    y[i] = kept ? x[i] : -INFINITY;
  }
  __syncthreads();
  for (int32_t e = r.edit_begin + threadIdx.x; e < r.edit_end; e += blockDim.x) {
    const DeviceEdit d = edits[e];
    float v = y[d.token];
    // Rounded operations the compiler may not fuse, as the host computes them.
    if (d.penalty != 1.0f) v = v > 0 ? __fdiv_rn(v, d.penalty) : __fmul_rn(v, d.penalty);
    if (d.subtract != 0.0f) v = __fsub_rn(v, d.subtract);
    if (d.add != 0.0f) v = __fadd_rn(v, d.add);
    if (d.refuse) v = -INFINITY;
    y[d.token] = v;
  }
  if (!r.min_p) return;
  __syncthreads();
  float m = -INFINITY;
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) m = fmaxf(m, y[i]);
  for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) s_max[warp] = m;
  __syncthreads();
  if (threadIdx.x == 0) {
    float all = -INFINITY;
    for (int w = 0; w < static_cast<int>(blockDim.x / 32); ++w) all = fmaxf(all, s_max[w]);
    s_max[0] = all;
  }
  __syncthreads();
  const float floor = __fadd_rn(s_max[0], r.min_p_offset);
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x)
    if (y[i] < floor) y[i] = -INFINITY;
}

struct DeviceDraw {
  int64_t row;
  int64_t mask_word;  // first word of its mask in the masks array, -1: none
  double inv_t;
  double max_t;  // max_logit / T
  double target;
};

struct Drawn {
  int32_t token;
  float logit;
};

// exp(x / T - max / T) as the host computes it (a rounded product, then a rounded difference);
// 0 for a token the draw's mask does not allow.
__device__ __forceinline__ double weight(const float* x, int64_t i, const uint64_t* mask, const DeviceDraw& d) {
  if (mask != nullptr && ((mask[i / 64] >> (i % 64)) & 1) == 0) return 0.0;
  return exp(__dsub_rn(__dmul_rn(static_cast<double>(x[i]), d.inv_t), d.max_t));
}

__global__ void __launch_bounds__(kDrawRuns)
    draw_kernel(const float* __restrict__ logits, int64_t vocab, const DeviceDraw* __restrict__ draws,
                const uint64_t* __restrict__ masks, Drawn* __restrict__ out) {
  __shared__ double s_sum[kDrawRuns];
  __shared__ int64_t s_last[kDrawRuns];
  const DeviceDraw d = draws[blockIdx.x];
  const float* x = logits + d.row * vocab;
  const uint64_t* mask = d.mask_word >= 0 ? masks + d.mask_word : nullptr;
  const int64_t run = (vocab + kDrawRuns - 1) / kDrawRuns;
  const int64_t begin = threadIdx.x * run, end = min(vocab, begin + run);
  double sum = 0;
  int64_t last = -1;
  for (int64_t i = begin; i < end; ++i) {
    const double w = weight(x, i, mask, d);
    if (w <= 0) continue;
    sum += w;
    last = i;
  }
  s_sum[threadIdx.x] = sum;
  s_last[threadIdx.x] = last;
  __syncthreads();
  if (threadIdx.x != 0) return;
  auto put = [&](int64_t t) { out[blockIdx.x] = {static_cast<int32_t>(t), x[t]}; };
  double acc = 0;
  int64_t any = -1;
  for (int j = 0; j < kDrawRuns; ++j) {
    if (s_last[j] < 0) continue;
    any = s_last[j];
    if (d.target < acc + s_sum[j]) {
      // The run holds the target: walk it from the runs' sum before it.
      const int64_t b = j * run, e = min(vocab, b + run);
      for (int64_t i = b; i < e; ++i) {
        const double w = weight(x, i, mask, d);
        if (w <= 0) continue;
        acc += w;
        if (d.target < acc) {
          put(i);
          return;
        }
      }
      put(s_last[j]);  // rounding: the run's last token of weight
      return;
    }
    acc += s_sum[j];
  }
  put(any < 0 ? 0 : any);
}

__global__ void values_kernel(const float* __restrict__ logits, int64_t vocab, const int64_t* __restrict__ at,
                              int64_t n, float* __restrict__ out) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x)
    out[i] = logits[at[2 * i] * vocab + at[2 * i + 1]];
}

// The CUDA backend of `backend`, with `logits` checked as its F32 [R, V] device tensor.
Result<CudaBackend*> backend_for(compute::Backend& backend, const Tensor& logits, const char* op) {
  CudaBackend* b = as_cuda(backend);
  if (b == nullptr) return invalid_argument(std::string(op) + ": needs the cuda backend, not " + backend.name());
  STRATA_RETURN_IF_ERROR(compute::check_logits(logits, false, op));
  if (logits.memory() != MemoryKind::kGpu)
    return invalid_argument(std::string(op) + ": the logits must be on the GPU");
  if (logits.dim(1) == 0 || logits.numel() > 0x7fffffffffffLL)
    return invalid_argument(std::string(op) + ": " + shape_string(logits.shape()) + " logits");
  return b;
}

template <typename T>
Result<Tensor> upload(CudaBackend& b, const std::vector<T>& v) {
  const int64_t words = static_cast<int64_t>((v.size() * sizeof(T) + 3) / 4);
  STRATA_ASSIGN_OR_RETURN(Tensor d, b.allocate_uninitialized(DType::kI32, {std::max<int64_t>(words, 1)}));
  if (!v.empty())
    STRATA_CUDA_CHECK(cudaMemcpyAsync(d.raw(), v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice, b.stream()));
  return d;
}

}  // namespace

Result<Tensor> adjust_logits(compute::Backend& backend, const Tensor& logits,
                             std::span<const RowAdjustment> adjustments) {
  STRATA_ASSIGN_OR_RETURN(CudaBackend * b, backend_for(backend, logits, "adjust_logits"));
  STRATA_RETURN_IF_ERROR(compute::check_adjustments(logits, adjustments));
  const int64_t A = static_cast<int64_t>(adjustments.size()), V = logits.dim(1);
  STRATA_ASSIGN_OR_RETURN(Tensor out, b->allocate_uninitialized(DType::kF32, {A, V}));
  if (A == 0) return out;
  std::vector<DeviceRow> rows;
  std::vector<DeviceEdit> edits;
  std::vector<uint64_t> masks;
  rows.reserve(static_cast<size_t>(A));
  for (const RowAdjustment& a : adjustments) {
    DeviceRow r{a.row, -1, static_cast<int32_t>(edits.size()), 0, a.min_p_offset, a.min_p ? 1 : 0};
    for (const compute::TokenEdit& e : a.edits) edits.push_back({e.token, e.penalty, e.subtract, e.add, e.refuse ? 1 : 0});
    r.edit_end = static_cast<int32_t>(edits.size());
    if (!a.allowed.empty()) {
      r.mask_word = static_cast<int64_t>(masks.size());
      masks.insert(masks.end(), a.allowed.begin(), a.allowed.end());
    }
    rows.push_back(r);
  }
  STRATA_ASSIGN_OR_RETURN(Tensor d_rows, upload(*b, rows));
  STRATA_ASSIGN_OR_RETURN(Tensor d_edits, upload(*b, edits));
  STRATA_ASSIGN_OR_RETURN(Tensor d_masks, upload(*b, masks));
  adjust_kernel<<<static_cast<unsigned>(A), kAdjustThreads, 0, b->stream()>>>(
      logits.data<float>(), V, static_cast<const DeviceRow*>(d_rows.raw()),
      static_cast<const uint64_t*>(d_masks.raw()), static_cast<const DeviceEdit*>(d_edits.raw()), out.data<float>());
  STRATA_CUDA_CHECK_LAUNCH();
  // The uploads are freed stream-ordered when they go: after the kernel.
  return out;
}

Result<std::vector<compute::DrawnToken>> draw_tokens(compute::Backend& backend, const Tensor& logits,
                                                     std::span<const RowDraw> draws) {
  STRATA_ASSIGN_OR_RETURN(CudaBackend * b, backend_for(backend, logits, "draw_tokens"));
  STRATA_RETURN_IF_ERROR(compute::check_draws(logits, draws));
  std::vector<compute::DrawnToken> result(draws.size());
  if (draws.empty()) return result;
  std::vector<DeviceDraw> d;
  std::vector<uint64_t> masks;
  d.reserve(draws.size());
  for (const RowDraw& r : draws) {
    const double inv_t = 1.0 / r.temperature;
    int64_t mask_word = -1;
    if (!r.allowed.empty()) {
      mask_word = static_cast<int64_t>(masks.size());
      masks.insert(masks.end(), r.allowed.begin(), r.allowed.end());
    }
    d.push_back({r.row, mask_word, inv_t, static_cast<double>(r.max_logit) * inv_t, r.target});
  }
  STRATA_ASSIGN_OR_RETURN(Tensor d_draws, upload(*b, d));
  STRATA_ASSIGN_OR_RETURN(Tensor d_masks, upload(*b, masks));
  std::vector<Drawn> out(draws.size());
  STRATA_ASSIGN_OR_RETURN(Tensor d_out, b->allocate_uninitialized(DType::kI32, {2 * static_cast<int64_t>(out.size())}));
  draw_kernel<<<static_cast<unsigned>(draws.size()), kDrawRuns, 0, b->stream()>>>(
      logits.data<float>(), logits.dim(1), static_cast<const DeviceDraw*>(d_draws.raw()),
      static_cast<const uint64_t*>(d_masks.raw()), static_cast<Drawn*>(d_out.raw()));
  STRATA_CUDA_CHECK_LAUNCH();
  STRATA_CUDA_CHECK(cudaMemcpyAsync(out.data(), d_out.raw(), out.size() * sizeof(Drawn), cudaMemcpyDeviceToHost, b->stream()));
  b->synchronize();
  for (size_t i = 0; i < out.size(); ++i) result[i] = {out[i].token, out[i].logit};
  return result;
}

Result<std::vector<float>> logit_values(compute::Backend& backend, const Tensor& logits,
                                        std::span<const std::pair<int64_t, int32_t>> at) {
  STRATA_ASSIGN_OR_RETURN(CudaBackend * b, backend_for(backend, logits, "logit_values"));
  STRATA_RETURN_IF_ERROR(compute::check_values(logits, at));
  std::vector<float> out(at.size());
  if (at.empty()) return out;
  std::vector<int64_t> flat;
  flat.reserve(2 * at.size());
  for (const auto& [row, token] : at) {
    flat.push_back(row);
    flat.push_back(token);
  }
  const auto n = static_cast<int64_t>(at.size());
  STRATA_ASSIGN_OR_RETURN(Tensor d_at, upload(*b, flat));
  STRATA_ASSIGN_OR_RETURN(Tensor d_out, b->allocate_uninitialized(DType::kF32, {n}));
  values_kernel<<<static_cast<unsigned>(std::min<int64_t>((n + 255) / 256, 1024)), 256, 0, b->stream()>>>(
      logits.data<float>(), logits.dim(1), static_cast<const int64_t*>(d_at.raw()), n, d_out.data<float>());
  STRATA_CUDA_CHECK_LAUNCH();
  STRATA_CUDA_CHECK(cudaMemcpyAsync(out.data(), d_out.raw(), out.size() * 4, cudaMemcpyDeviceToHost, b->stream()));
  b->synchronize();
  return out;
}

}  // namespace strata::cuda
