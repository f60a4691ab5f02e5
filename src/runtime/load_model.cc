#include "runtime/load_model.h"

#include "model/model_dir.h"
#include "model/shapes.h"
#include "model/weight_source.h"
#include "runtime/weight_store_source.h"
#include "storage/weight_store.h"

namespace strata::runtime {

Result<model::ModelFiles> open_model_files(Context& ctx, const std::filesystem::path& dir) {
  // A strata weight store (strata convert) or a Hugging Face directory.
  return storage::is_weight_store(dir) ? open_weight_store_dir(dir, ctx.logger) : model::open_model_dir(dir);
}

Result<std::unique_ptr<compute::Transformer>> load_model_dir(Context& ctx,
                                                             const std::filesystem::path& dir) {
  STRATA_ASSIGN_OR_RETURN(model::ModelFiles files, open_model_files(ctx, dir));
  STRATA_ASSIGN_OR_RETURN(compute::ModelWeights weights,
                          compute::load_weights(files.config, *files.weights, *ctx.backend));
  return std::make_unique<compute::Transformer>(std::move(files.config), *ctx.backend,
                                                std::move(weights));
}

Result<std::unique_ptr<compute::Transformer>> load_synthetic_model(Context& ctx,
                                                                   const std::string& shape_name,
                                                                   uint64_t seed, DType dtype) {
  STRATA_ASSIGN_OR_RETURN(model::ModelConfig config, model::named_shape(shape_name));
  auto source = model::make_synthetic_source(seed, dtype);
  STRATA_ASSIGN_OR_RETURN(compute::ModelWeights weights,
                          compute::load_weights(config, *source, *ctx.backend));
  return std::make_unique<compute::Transformer>(std::move(config), *ctx.backend, std::move(weights));
}

}  // namespace strata::runtime
