// int4-g64 linear weights on the CUDA backend. An [N, K] weight is kept as the blob of
// compute/int4.h (codes, then fp16 scales, then fp16 mins) in one device allocation, typed as an
// I32 tensor of shape [N, 9 * K / 64] (the blob's 4.5 bits per element counted in 32-bit words, so
// bytes() is the blob size). CudaBackend::linear() takes such a tensor wherever it takes an
// F16/BF16 weight: up to 8 rows through a GEMV that dequantises in registers, more rows through a
// dequantised copy and cuBLAS. Functions here fail with a Status for other backends and bad
// shapes; they are not thread safe (they enqueue on the backend's stream). No CUDA header here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"
#include "compute/backend.h"
#include "compute/int4.h"
#include "compute/transformer.h"
#include "model/config.h"
#include "model/weight_names.h"

namespace strata::cuda {

// The I32 shape that holds an int4-g64 [rows, cols] weight (cols a multiple of 64).
Shape int4_weight_shape(int64_t rows, int64_t cols);
// True for a device tensor in the int4-g64 form above.
bool is_int4_weight(const Tensor& w);
// K, the input features of an int4 weight (rows are w.dim(0)).
int64_t int4_weight_cols(const Tensor& w);

// Copies a quantised blob (from compute::quantise_int4 or a weight store) to the backend.
Result<Tensor> upload_int4(compute::Backend& backend, const compute::Int4View& q);

// Quantises a dense F32/F16/BF16 device weight [N, K] (K a multiple of 64) on the GPU by the
// reference rule of compute::quantise_int4: the blob is byte for byte the one the host quantiser
// makes from the same values. kInvalidArgument for another shape or a non-finite value.
Result<Tensor> quantise_int4_on_device(compute::Backend& backend, const Tensor& w);

// Enqueues the same quantiser for activations that go to an int4 store (the KV cache): x [N, K]
// F16/BF16/F32 device rows into `out` (int4_weight_shape(N, K), I32). It does not wait and does
// not check for non-finite values (a group holding one dequantises to non-finite values).
Status quantise_int4_async(compute::Backend& backend, const Tensor& x, Tensor& out);

// The blob of an int4 device weight, back on the host (compute::int4_view() reads it).
Result<std::vector<std::byte>> download_int4(compute::Backend& backend, const Tensor& w);

// Which weights quantise_model_weights_int4 converts.
using WeightFilter = std::function<bool(const std::string& name, const Shape& shape)>;
// Every [N, K] linear weight with K a multiple of 64, the head included; not the embedding tables.
bool int4_every_linear(const std::string& name, const Shape& shape);

// Replaces, one at a time (so at most one dense and one int4 copy of a weight exist at once), the
// dense device weights of `weights` that `which` selects with int4-g64 copies made on the GPU.
// A tied head is quantised apart from the token table it shares values with.
Status quantise_model_weights_int4(const model::ModelConfig& config, compute::Backend& backend,
                                   compute::ModelWeights& weights,
                                   const WeightFilter& which = int4_every_linear);

}  // namespace strata::cuda
