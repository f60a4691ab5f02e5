// int4-g64 kernels of the CUDA backend (w4a16). A weight [n, k] is the blob of compute/int4.h in
// device memory: codes [n, k/2] bytes, then fp16 scales [n, k/64], then fp16 mins [n, k/64].
//   - launch_gemv_int4 (int4_gemv.cu, int4_gemv_mma.cu): y[m, n] = x[m, k] · dequant(w)^T
//     (+ bias) for decode-sized m, the codes dequantised in registers (F16: fp16 weights into
//     tensor-core products with fp32 sums; BF16: fp32 on the CUDA cores);
//   - launch_dequantise_int4: the dense [n, k] weight in the activation dtype, each value the
//     reference value q * scale + min (fp32, no fused multiply-add) rounded once;
//   - launch_quantise_int4: the reference quantiser (compute::quantise_int4) on the GPU, byte for
//     byte the same blob; counts non-finite inputs into *bad.
// Device pointers; enqueued on `stream`. Internal to src/cuda/.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "common/dtype.h"
#include "cuda/gemv.h"

namespace strata::cuda {

// Pointers into one device blob of an [n, k] weight.
struct Int4Device {
  const uint8_t* codes = nullptr;
  const uint16_t* scales = nullptr;
  const uint16_t* mins = nullptr;
  int64_t n = 0, k = 0;
};

#ifdef __CUDACC__
__host__ __device__
#endif
    inline Int4Device
    int4_device_view(const void* blob, int64_t n, int64_t k) {
  Int4Device v;
  const auto* base = static_cast<const uint8_t*>(blob);
  const int64_t code_bytes = n * k / 2, groups = n * (k / 64);
  v.codes = base;
  v.scales = reinterpret_cast<const uint16_t*>(base + code_bytes);
  v.mins = reinterpret_cast<const uint16_t*>(base + code_bytes + groups * 2);
  v.n = n;
  v.k = k;
  return v;
}

// True when the shapes and pointers suit launch_gemv_int4 for activations of dtype dt: k a
// multiple of 64, x rows 16-byte aligned, m <= kGemvMaxRows, or up to kGemvMmaMaxRows for F16 on
// a device with mma.sync.
bool gemv_int4_supported(DType dt, int64_t m, int64_t k, const void* x);
// The segments' w are int4 blobs of [n, k] weights (see cuda/gemv.h for batches). F16 batches of
// 2 rows and more with a default `variant` (and gated batches) run the tensor-core kernel where
// the device has it; batch 1, BF16 or a given variant the CUDA-core kernel (at most kGemvMaxRows
// rows), which at batch 1 streams the codes faster (bench/gemv_sweep).
void launch_gemv_int4(DType dt, const void* x, const GemvBatch& batch, int64_t m, int64_t k,
                      bool relu, cudaStream_t stream, GemvVariant variant = {});
// The warps splitting k that the CUDA-core kernel takes by default for `rows` weight rows in all.
int gemv_int4_split_k(int64_t rows, int rows_per_warp);
// The tensor-core kernel (int4_gemv_mma.cu), F16 activations, 1 <= m <= kGemvMmaMaxRows: 16
// weight rows a block of 4 or 8 warps, 1 or 2 chunks of 32 codes a lane, row and step.
inline constexpr GemvMmaVariant kGemvInt4MmaDefault{4, 1};
void launch_gemv_int4_mma(const void* x, const GemvBatch& batch, int64_t m, int64_t k, bool relu,
                          cudaStream_t stream, GemvMmaVariant variant = {});

void launch_dequantise_int4(DType dt, const Int4Device& w, void* out, cudaStream_t stream);

// w [n, k] of dtype src_dt (F32, F16 or BF16) -> blob (int4_blob_bytes(n, k) bytes).
void launch_quantise_int4(DType src_dt, const void* w, int64_t n, int64_t k, void* blob,
                          unsigned* bad, cudaStream_t stream);

}  // namespace strata::cuda
