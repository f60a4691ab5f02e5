// Logit statistics on the GPU: one block per row for the argmax (and the best allowed token under
// a mask) and the two softmax sums (double accumulation), then, for rows that want candidates, CUB's segmented radix sort of (logit, token)
// pairs, which is stable (equal logits keep token order; -0 and +0 count as equal), so the order
// is runtime::Sampler's: logit descending, then token ascending.
#include <cub/device/device_segmented_radix_sort.cuh>

#include <algorithm>
#include <cmath>
#include <string>

#include "compute/logit_adjust.h"
#include "cuda/cuda_backend_impl.h"
#include "cuda/cuda_check.h"
#include "cuda/logit_stats.h"

namespace strata::cuda {
namespace {

constexpr int kThreads = 512;

struct RowOut {
  double log_sum;
  double temperature_sum;
  float max_logit;
  int32_t argmax;
  float allowed_max;
  int32_t allowed_argmax;
};

__device__ __forceinline__ void better(float& best, int64_t& idx, float v, int64_t i) {
  if (v > best || (v == best && i < idx)) {
    best = v;
    idx = i;
  }
}

// The block's best (value, first index) of each thread's, in every thread.
__device__ void block_best(float& best, int64_t& idx, float* s_best, int64_t* s_idx) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  for (int o = 16; o > 0; o >>= 1) {
    const float ob = __shfl_xor_sync(0xffffffffu, best, o);
    const int64_t oi = __shfl_xor_sync(0xffffffffu, idx, o);
    better(best, idx, ob, oi);
  }
  __syncthreads();  // the shared slots' last readers are done
  if (lane == 0) {
    s_best[warp] = best;
    s_idx[warp] = idx;
  }
  __syncthreads();
  if (warp == 0) {
    best = lane < warps ? s_best[lane] : -INFINITY;
    idx = lane < warps ? s_idx[lane] : INT64_MAX;
    for (int o = 16; o > 0; o >>= 1) {
      const float ob = __shfl_xor_sync(0xffffffffu, best, o);
      const int64_t oi = __shfl_xor_sync(0xffffffffu, idx, o);
      better(best, idx, ob, oi);
    }
    if (lane == 0) {
      s_best[0] = best;
      s_idx[0] = idx;
    }
  }
  __syncthreads();
  best = s_best[0];
  idx = s_idx[0];
}

// One block per row. A row with a mask (mask_words[row] >= 0, its first word in `masks`) also
// takes its best allowed logit, and its temperature sum runs over the allowed tokens from it.
__global__ void __launch_bounds__(kThreads)
    row_stats_kernel(const float* __restrict__ logits, int64_t vocab,
                     const float* __restrict__ temperatures, const int64_t* __restrict__ mask_words,
                     const uint64_t* __restrict__ masks, RowOut* __restrict__ out) {
  __shared__ float s_best[32];
  __shared__ int64_t s_idx[32];
  __shared__ double s_sum[32], s_tsum[32];
  const float* x = logits + blockIdx.x * vocab;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  const uint64_t* mask = mask_words[blockIdx.x] >= 0 ? masks + mask_words[blockIdx.x] : nullptr;
  auto allows = [mask](int64_t i) { return mask == nullptr || ((mask[i / 64] >> (i % 64)) & 1) != 0; };

  float mx = -INFINITY, amx = -INFINITY;
  int64_t arg = INT64_MAX, aarg = INT64_MAX;
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) {
    better(mx, arg, x[i], i);
    if (mask != nullptr && allows(i)) better(amx, aarg, x[i], i);
  }
  block_best(mx, arg, s_best, s_idx);
  if (mask != nullptr) {
    block_best(amx, aarg, s_best, s_idx);
  } else {
    amx = mx;
    aarg = arg;
  }

  const float t = temperatures[blockIdx.x];
  const bool tempered = t > 0.0f && (mask == nullptr || amx > -INFINITY);
  const double inv_t = t > 0.0f ? 1.0 / static_cast<double>(t) : 0.0;
  const double mx_t = static_cast<double>(amx) * inv_t;
  double sum = 0.0, tsum = 0.0;
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) {
    const double v = static_cast<double>(x[i]);
    sum += exp(v - static_cast<double>(mx));
    if (tempered && allows(i)) tsum += exp(v * inv_t - mx_t);
  }
  for (int o = 16; o > 0; o >>= 1) {
    sum += __shfl_xor_sync(0xffffffffu, sum, o);
    tsum += __shfl_xor_sync(0xffffffffu, tsum, o);
  }
  if (lane == 0) {
    s_sum[warp] = sum;
    s_tsum[warp] = tsum;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    double a = 0.0, b = 0.0;
    for (int w = 0; w < warps; ++w) {
      a += s_sum[w];
      b += s_tsum[w];
    }
    RowOut r;
    r.log_sum = log(a);
    r.temperature_sum = b;
    r.max_logit = mx;
    r.argmax = static_cast<int32_t>(arg == INT64_MAX ? 0 : arg);
    r.allowed_max = amx;
    r.allowed_argmax = static_cast<int32_t>(aarg == INT64_MAX ? 0 : aarg);
    out[blockIdx.x] = r;
  }
}

__global__ void token_ids_kernel(int32_t* ids, int64_t n, int64_t vocab) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    ids[i] = static_cast<int32_t>(i % vocab);
}

// out[s, j] = sorted[begin[s] + j] for j < c.
__global__ void gather_top_kernel(const float* keys, const int32_t* vals, const int* begin, int c,
                                  float* out_keys, int32_t* out_vals) {
  const int s = blockIdx.x;
  for (int j = threadIdx.x; j < c; j += blockDim.x) {
    out_keys[int64_t{s} * c + j] = keys[begin[s] + j];
    out_vals[int64_t{s} * c + j] = vals[begin[s] + j];
  }
}

}  // namespace

Result<std::vector<LogitStats>> logit_stats(compute::Backend& backend, const Tensor& logits,
                                            std::span<const LogitQuery> queries) {
  CudaBackend* b = as_cuda(backend);
  if (b == nullptr) return invalid_argument("logit_stats: needs the cuda backend, not " + backend.name());
  Tensor dev = logits.memory() == MemoryKind::kGpu ? logits : b->device_copy_of(logits);
  if (!dev.defined() || dev.dtype() != DType::kF32 || dev.rank() != 2)
    return invalid_argument("logit_stats: logits must be an F32 [rows, vocab] device tensor or the "
                            "last result of to_host_f32(), got " + shape_string(logits.shape()));
  const int64_t rows = dev.dim(0), vocab = dev.dim(1);
  if (static_cast<int64_t>(queries.size()) != rows)
    return invalid_argument("logit_stats: " + std::to_string(queries.size()) + " queries for " +
                            std::to_string(rows) + " rows");
  std::vector<LogitStats> result(static_cast<size_t>(rows));
  if (rows == 0) return result;
  if (vocab == 0 || rows * vocab > 0x7fffffff)
    return invalid_argument("logit_stats: " + shape_string(dev.shape()) +
                            " logits: the vocabulary must be non-empty and rows * vocab < 2^31");
  cudaStream_t s = b->stream();

  std::vector<float> temps(static_cast<size_t>(rows));
  std::vector<int64_t> mask_words(static_cast<size_t>(rows), -1);
  std::vector<uint64_t> masks;
  std::vector<int> begins;
  int32_t c = 0;
  for (int64_t r = 0; r < rows; ++r) {
    temps[r] = queries[r].temperature;
    if (const auto& allowed = queries[r].allowed; !allowed.empty()) {
      STRATA_RETURN_IF_ERROR(compute::check_mask(vocab, allowed, "logit_stats"));
      mask_words[r] = static_cast<int64_t>(masks.size());
      masks.insert(masks.end(), allowed.begin(), allowed.end());
    }
    if (queries[r].candidates > 0) {
      begins.push_back(static_cast<int>(r * vocab));
      c = std::max(c, static_cast<int32_t>(std::min<int64_t>(queries[r].candidates, vocab)));
    }
  }
  STRATA_ASSIGN_OR_RETURN(Tensor d_temps, b->allocate_uninitialized(DType::kF32, {rows}));
  const int64_t out_words = rows * static_cast<int64_t>(sizeof(RowOut) / 4);
  STRATA_ASSIGN_OR_RETURN(Tensor d_out, b->allocate_uninitialized(DType::kI32, {out_words}));
  STRATA_ASSIGN_OR_RETURN(Tensor d_mask_words, b->allocate_uninitialized(DType::kI32, {2 * rows}));
  STRATA_ASSIGN_OR_RETURN(Tensor d_masks, b->allocate_uninitialized(
                                              DType::kI32, {std::max<int64_t>(1, 2 * static_cast<int64_t>(masks.size()))}));
  STRATA_CUDA_CHECK(cudaMemcpyAsync(d_temps.raw(), temps.data(), temps.size() * 4,
                                    cudaMemcpyHostToDevice, s));
  STRATA_CUDA_CHECK(cudaMemcpyAsync(d_mask_words.raw(), mask_words.data(), mask_words.size() * 8,
                                    cudaMemcpyHostToDevice, s));
  if (!masks.empty())
    STRATA_CUDA_CHECK(cudaMemcpyAsync(d_masks.raw(), masks.data(), masks.size() * 8, cudaMemcpyHostToDevice, s));
  row_stats_kernel<<<static_cast<unsigned>(rows), kThreads, 0, s>>>(
      dev.data<float>(), vocab, d_temps.data<float>(), static_cast<const int64_t*>(d_mask_words.raw()),
      static_cast<const uint64_t*>(d_masks.raw()), static_cast<RowOut*>(d_out.raw()));
  STRATA_CUDA_CHECK_LAUNCH();
  std::vector<RowOut> out(static_cast<size_t>(rows));
  STRATA_CUDA_CHECK(cudaMemcpyAsync(out.data(), d_out.raw(), out.size() * sizeof(RowOut),
                                    cudaMemcpyDeviceToHost, s));

  const int segments = static_cast<int>(begins.size());
  std::vector<float> top_keys;
  std::vector<int32_t> top_vals;
  Tensor keep_alive[8];
  if (segments > 0) {
    const int64_t n = rows * vocab;
    STRATA_ASSIGN_OR_RETURN(Tensor ids, b->allocate_uninitialized(DType::kI32, {n}));
    STRATA_ASSIGN_OR_RETURN(Tensor keys_out, b->allocate_uninitialized(DType::kF32, {n}));
    STRATA_ASSIGN_OR_RETURN(Tensor vals_out, b->allocate_uninitialized(DType::kI32, {n}));
    std::vector<int> ends(begins);
    for (int& e : ends) e += static_cast<int>(vocab);
    STRATA_ASSIGN_OR_RETURN(Tensor d_begin, b->allocate_uninitialized(DType::kI32, {segments}));
    STRATA_ASSIGN_OR_RETURN(Tensor d_end, b->allocate_uninitialized(DType::kI32, {segments}));
    STRATA_CUDA_CHECK(cudaMemcpyAsync(d_begin.raw(), begins.data(), begins.size() * 4,
                                      cudaMemcpyHostToDevice, s));
    STRATA_CUDA_CHECK(cudaMemcpyAsync(d_end.raw(), ends.data(), ends.size() * 4,
                                      cudaMemcpyHostToDevice, s));
    token_ids_kernel<<<static_cast<unsigned>(std::min<int64_t>((n + 255) / 256, 65535 * 8)), 256, 0, s>>>(
        ids.data<int32_t>(), n, vocab);
    STRATA_CUDA_CHECK_LAUNCH();
    size_t temp_bytes = 0;
    STRATA_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairsDescending(
        nullptr, temp_bytes, dev.data<float>(), keys_out.data<float>(), ids.data<int32_t>(),
        vals_out.data<int32_t>(), static_cast<int>(n), segments, d_begin.data<int>(),
        d_end.data<int>(), 0, 32, s));
    STRATA_ASSIGN_OR_RETURN(
        Tensor temp, b->allocate_uninitialized(DType::kI32, {static_cast<int64_t>(temp_bytes / 4 + 1)}));
    STRATA_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairsDescending(
        temp.raw(), temp_bytes, dev.data<float>(), keys_out.data<float>(), ids.data<int32_t>(),
        vals_out.data<int32_t>(), static_cast<int>(n), segments, d_begin.data<int>(),
        d_end.data<int>(), 0, 32, s));
    const int64_t top_n = int64_t{segments} * c;
    STRATA_ASSIGN_OR_RETURN(Tensor d_keys, b->allocate_uninitialized(DType::kF32, {top_n}));
    STRATA_ASSIGN_OR_RETURN(Tensor d_vals, b->allocate_uninitialized(DType::kI32, {top_n}));
    gather_top_kernel<<<static_cast<unsigned>(segments), 256, 0, s>>>(
        keys_out.data<float>(), vals_out.data<int32_t>(), d_begin.data<int>(), c,
        d_keys.data<float>(), d_vals.data<int32_t>());
    STRATA_CUDA_CHECK_LAUNCH();
    top_keys.resize(static_cast<size_t>(top_n));
    top_vals.resize(static_cast<size_t>(top_n));
    STRATA_CUDA_CHECK(cudaMemcpyAsync(top_keys.data(), d_keys.raw(), top_n * 4,
                                      cudaMemcpyDeviceToHost, s));
    STRATA_CUDA_CHECK(cudaMemcpyAsync(top_vals.data(), d_vals.raw(), top_n * 4,
                                      cudaMemcpyDeviceToHost, s));
    // The scratch is freed stream-ordered when these go; keep it until the copies are done.
    Tensor held[] = {ids, keys_out, vals_out, d_begin, d_end, temp, d_keys, d_vals};
    std::copy(std::begin(held), std::end(held), keep_alive);
  }
  b->synchronize();

  int seg = 0;
  for (int64_t r = 0; r < rows; ++r) {
    LogitStats& st = result[static_cast<size_t>(r)];
    st.argmax = out[r].argmax;
    st.max_logit = out[r].max_logit;
    st.log_sum = out[r].log_sum;
    st.temperature_sum = out[r].temperature_sum;
    st.allowed_argmax = out[r].allowed_argmax;
    st.allowed_max = out[r].allowed_max;
    if (queries[r].candidates > 0) {
      const int32_t want = static_cast<int32_t>(std::min<int64_t>(queries[r].candidates, vocab));
      st.top.reserve(static_cast<size_t>(want));
      for (int32_t j = 0; j < want; ++j)
        st.top.emplace_back(top_keys[static_cast<size_t>(seg) * c + j],
                            top_vals[static_cast<size_t>(seg) * c + j]);
      ++seg;
    }
  }
  return result;
}

}  // namespace strata::cuda
