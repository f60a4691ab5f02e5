// WeightSource: where the bytes of a model's weights come from. Implementations: a Hugging Face
// safetensors checkpoint (single file or sharded) and a seeded synthetic source for benchmarks.
// load() returns a host tensor in the stored dtype with exactly spec.shape, or an error naming the
// file and tensor. Sources are not thread safe unless they say so.
#pragma once

#include <filesystem>
#include <memory>

#include "common/status.h"
#include "common/tensor.h"
#include "model/config.h"
#include "model/weight_names.h"

namespace strata::model {

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  virtual Result<Tensor> load(const WeightSpec& spec) = 0;
  // Checks that every weight in `specs` is present with the right shape and dtype, without
  // reading tensor data; the error names the first missing or wrong tensor.
  virtual Status check(const std::vector<WeightSpec>& specs) = 0;
  // The names of the tensors the files hold (Hugging Face or canonical names); empty for a source
  // that makes weights up (synthetic).
  virtual std::vector<std::string> tensor_names() const { return {}; }
};

// The number of layers the tensor names of `source` hold: one more than the largest N of a
// "layers.N." in a name; 0 when no name has one.
int64_t stored_layer_count(const WeightSource& source);

// Checks `source` against `config` without reading tensor data: first that the files hold
// exactly config.num_layers layers (before anything is sized by that count), then every weight's
// presence, dtype and shape. `where` names the files in errors.
Status check_weights(const ModelConfig& config, WeightSource& source, const std::string& where);

// Opens `dir`/model.safetensors or the shards listed in `dir`/model.safetensors.index.json,
// validating every header.
Result<std::unique_ptr<WeightSource>> open_safetensors_source(const std::filesystem::path& dir);

// Deterministic pseudo-random weights: the same (seed, name) always gives the same values.
// Linear weights ~ U(-a, a) with a = 1/sqrt(in_features); norm weights near 1; biases small.
std::unique_ptr<WeightSource> make_synthetic_source(uint64_t seed, DType dtype);

}  // namespace strata::model
