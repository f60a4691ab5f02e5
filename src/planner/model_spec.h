// ModelSpec: the planner's view of a model: the tensors of one layer and of the rest, their bytes
// with or without int4-g64 compression, the GEMM work per token, and the KV cache's bytes per
// token. Built from a ModelConfig; pure functions, thread safe. Units: bytes, elements, FLOPs.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"
#include "model/config.h"

namespace strata::planner {

// How a kind of data is stored. kInt4 is group-wise asymmetric int4 with groups of 64 and an fp16
// scale and minimum per group (4.5 bits per element); everything else is fp16.
enum class Compression { kNone, kInt4 };

std::string_view compression_name(Compression c);  // "none", "int4-g64"
std::optional<Compression> compression_from_name(std::string_view name);

// Bytes of an int4-g64 [rows, cols] matrix: 4-bit codes plus an fp16 scale and minimum per group
// of 64 along cols (cols must be a multiple of 64).
uint64_t int4_matrix_bytes(int64_t rows, int64_t cols);

struct TensorSpec {
  std::string name;      // canonical weight name ("layers.0.q.weight", "lm_head.weight", ...)
  Shape shape;
  bool compressible = false;  // a GEMM matrix whose input dimension is a multiple of 64
  // Read by a GPU kernel, so it is copied to the GPU when not resident there (every layer tensor
  // and the head); false for embedding tables, which the host looks rows up in.
  bool gpu_consumed = true;
  uint64_t bytes(Compression c) const;
};

struct ModelSpec {
  std::string name;
  model::Family family = model::Family::kOpt;
  int64_t num_layers = 0;
  int64_t hidden = 0;
  int64_t q_dim = 0;
  int64_t kv_dim = 0;
  int64_t ffn = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t vocab = 0;
  int64_t embed_dim = 0;

  std::vector<TensorSpec> layer_tensors;  // the tensors of one layer (every layer has the same)
  std::vector<TensorSpec> other_tensors;  // embeddings, final norm, projections, head
  int64_t layer_gemm_params = 0;  // elements of one layer's GEMM matrices (2 FLOPs each per token)
  int64_t head_gemm_params = 0;   // elements of the GEMMs after the last layer (project_out, head)

  uint64_t layer_bytes(Compression c) const;
  uint64_t other_bytes(Compression c) const;
  // The non-layer tensors the GPU reads (the head): streamed like one more layer.
  uint64_t head_bytes(Compression c) const;
  uint64_t total_weight_bytes(Compression c) const;
  // Elements of one layer's compressible matrices (what int4 dequantisation touches).
  int64_t layer_compressible_elements() const;
  // Keys and values of `tokens` positions in one layer, stored as `c`.
  uint64_t kv_bytes(int64_t tokens, Compression c) const;
  // Whether the KV cache can be stored as int4-g64 (head_dim a multiple of 64).
  bool kv_compressible() const { return head_dim % 64 == 0; }
};

ModelSpec make_model_spec(const model::ModelConfig& config, std::string name);

}  // namespace strata::planner
