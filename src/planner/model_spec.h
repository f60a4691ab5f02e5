// ModelSpec: the planner's view of a model: the tensors of one layer and of the rest, their bytes
// with or without int4-g64 compression, the GEMM work per token (a mixture-of-experts layer holds
// every expert but a token runs only experts_per_token of them), and the KV cache's bytes per
// token. Built from a ModelConfig whose layers are all alike; pure functions, thread safe.
// Units: bytes, elements, FLOPs.
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
  bool expert = false;  // a matrix of one of a sparse layer's experts
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
  // Mixture of experts (all 0 for a dense model): each layer's MLP is a router and num_experts
  // SwiGLU experts of width expert_ffn, of which each token runs experts_per_token.
  int64_t num_experts = 0;
  int64_t experts_per_token = 0;
  int64_t expert_ffn = 0;

  std::vector<TensorSpec> layer_tensors;  // the tensors of one layer (every layer has the same)
  std::vector<TensorSpec> other_tensors;  // embeddings, final norm, projections, head
  // GEMM work in matrix elements, 2 FLOPs each per row multiplied. A layer's GEMMs are a dense
  // part that every row runs through (attention's projections, and the router or a dense MLP)
  // and, in a sparse layer, experts that each run over the rows routed to them.
  int64_t layer_gemm_params = 0;        // what one token runs through: dense part + k experts
  int64_t layer_dense_gemm_params = 0;  // the dense part (== layer_gemm_params when dense)
  int64_t expert_gemm_params = 0;       // one expert's gate, up and down; 0 when dense
  int64_t head_gemm_params = 0;  // elements of the GEMMs after the last layer (project_out, head)

  bool is_moe() const { return num_experts > 0; }
  // Bytes of one layer: every tensor, all the experts included.
  uint64_t layer_bytes(Compression c) const;
  // Bytes of one expert's tensors (0 when dense).
  uint64_t expert_bytes(Compression c) const;
  uint64_t other_bytes(Compression c) const;
  // The non-layer tensors the GPU reads (the head): streamed like one more layer.
  uint64_t head_bytes(Compression c) const;
  uint64_t total_weight_bytes(Compression c) const;
  // Elements of one layer's compressible matrices (what int4 dequantisation touches), and of one
  // expert's (0 when dense).
  int64_t layer_compressible_elements() const;
  int64_t expert_compressible_elements() const;
  // Keys and values of `tokens` positions in one layer, stored as `c`.
  uint64_t kv_bytes(int64_t tokens, Compression c) const;
  // Whether the KV cache can be stored as int4-g64 (head_dim a multiple of 64).
  bool kv_compressible() const { return head_dim % 64 == 0; }
};

// Fails (kUnsupported) for a model whose layers differ (a mixture of experts with dense layers
// among its sparse ones): the planner and the offloading engine handle one layer's tensors for all.
Result<ModelSpec> make_model_spec(const model::ModelConfig& config, std::string name);

}  // namespace strata::planner
