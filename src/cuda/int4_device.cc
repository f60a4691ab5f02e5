// The CUDA side of cuda/int4_weights.h: uploads, GPU quantisation and downloads of int4-g64
// weights on a CudaBackend.
#include <cstring>
#include <string>

#include "cuda/cuda_backend_impl.h"
#include "cuda/cuda_check.h"
#include "cuda/int4_gemm.h"
#include "cuda/int4_weights.h"

namespace strata::cuda {

Result<Tensor> upload_int4(compute::Backend& backend, const compute::Int4View& q) {
  CudaBackend* b = as_cuda(backend);
  if (b == nullptr) return invalid_argument("upload_int4: needs the cuda backend, not " + backend.name());
  if (q.codes == nullptr || q.rows <= 0 || q.cols <= 0 || q.cols % compute::kInt4GroupSize != 0)
    return invalid_argument("upload_int4: not a view made by compute::int4_view");
  const Shape shape = int4_weight_shape(q.rows, q.cols);
  STRATA_ASSIGN_OR_RETURN(Tensor out, b->allocate_uninitialized(DType::kI32, shape));
  // The three parts of a view need not be contiguous on the host; on the device they are.
  const size_t code_bytes = static_cast<size_t>(q.rows * q.cols / 2);
  const size_t part_bytes = static_cast<size_t>(q.rows * (q.cols / compute::kInt4GroupSize)) * 2;
  char* dst = static_cast<char*>(out.raw());
  cudaStream_t s = b->stream();
  STRATA_CUDA_CHECK(cudaMemcpyAsync(dst, q.codes, code_bytes, cudaMemcpyHostToDevice, s));
  STRATA_CUDA_CHECK(cudaMemcpyAsync(dst + code_bytes, q.scales, part_bytes, cudaMemcpyHostToDevice, s));
  STRATA_CUDA_CHECK(cudaMemcpyAsync(dst + code_bytes + part_bytes, q.mins, part_bytes,
                                    cudaMemcpyHostToDevice, s));
  b->synchronize();  // the host blob may go as soon as we return
  return out;
}

Result<Tensor> quantise_int4_on_device(compute::Backend& backend, const Tensor& w) {
  CudaBackend* b = as_cuda(backend);
  if (b == nullptr) return invalid_argument("quantise_int4_on_device: needs the cuda backend");
  if (!w.defined() || w.memory() != MemoryKind::kGpu || w.dtype() == DType::kI32)
    return invalid_argument("int4-g64: quantise_int4_on_device needs an F32, F16 or BF16 device tensor");
  if (!compute::int4_eligible(w.shape()))
    return invalid_argument("int4-g64: shape " + shape_string(w.shape()) +
                            " is not [rows, cols] with cols a multiple of 64");
  const int64_t n = w.dim(0), k = w.dim(1);
  STRATA_ASSIGN_OR_RETURN(Tensor out, b->allocate_uninitialized(DType::kI32, int4_weight_shape(n, k)));
  STRATA_ASSIGN_OR_RETURN(Tensor bad, b->allocate(DType::kI32, {1}));
  launch_quantise_int4(w.dtype(), w.raw(), n, k, out.raw(), static_cast<unsigned*>(bad.raw()),
                       b->stream());
  unsigned bad_groups = 0;
  STRATA_CUDA_CHECK(cudaMemcpyAsync(&bad_groups, bad.raw(), sizeof bad_groups,
                                    cudaMemcpyDeviceToHost, b->stream()));
  b->synchronize();
  if (bad_groups != 0)
    return invalid_argument("int4-g64: " + std::to_string(bad_groups) + " groups of the " +
                            shape_string(w.shape()) +
                            " weight hold a non-finite value; fix the checkpoint");
  return out;
}

Status quantise_int4_async(compute::Backend& backend, const Tensor& x, Tensor& out) {
  CudaBackend* b = as_cuda(backend);
  if (b == nullptr) return invalid_argument("quantise_int4_async: needs the cuda backend");
  if (!x.defined() || x.memory() != MemoryKind::kGpu || x.dtype() == DType::kI32 ||
      !compute::int4_eligible(x.shape()))
    return invalid_argument("int4-g64: quantise_int4_async needs [rows, cols] device rows, cols a multiple of 64");
  if (out.memory() != MemoryKind::kGpu || out.dtype() != DType::kI32 ||
      out.shape() != int4_weight_shape(x.dim(0), x.dim(1)))
    return invalid_argument("int4-g64: quantise_int4_async output must be an I32 device tensor " +
                            shape_string(int4_weight_shape(x.dim(0), x.dim(1))));
  STRATA_ASSIGN_OR_RETURN(Tensor bad, b->allocate(DType::kI32, {1}));
  launch_quantise_int4(x.dtype(), x.raw(), x.dim(0), x.dim(1), out.raw(),
                       static_cast<unsigned*>(bad.raw()), b->stream());
  return Status::ok();
}

Result<std::vector<std::byte>> download_int4(compute::Backend& backend, const Tensor& w) {
  CudaBackend* b = as_cuda(backend);
  if (b == nullptr || !is_int4_weight(w))
    return invalid_argument("download_int4: needs an int4 weight of the cuda backend");
  std::vector<std::byte> blob(compute::int4_blob_bytes(w.dim(0), int4_weight_cols(w)));
  STRATA_CHECK(blob.size() == w.bytes(), "download_int4: blob size mismatch");
  STRATA_CUDA_CHECK(cudaMemcpyAsync(blob.data(), w.raw(), blob.size(), cudaMemcpyDeviceToHost,
                                    b->stream()));
  b->synchronize();
  return blob;
}

}  // namespace strata::cuda
