// Loading a model onto a Context's backend: from a Hugging Face directory or a strata weight store
// (strata convert), or from a named shape (models/shapes/) with seeded synthetic weights for
// benchmarks and plans.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "common/status.h"
#include "compute/transformer.h"
#include "model/model_dir.h"
#include "runtime/context.h"

namespace strata::runtime {

Result<std::unique_ptr<compute::Transformer>> load_model_dir(Context& ctx,
                                                             const std::filesystem::path& dir);

// The config and weight source of a Hugging Face directory or a strata weight store, without
// reading tensor data (for the offloading engine, which places the weights itself).
Result<model::ModelFiles> open_model_files(Context& ctx, const std::filesystem::path& dir);

Result<std::unique_ptr<compute::Transformer>> load_synthetic_model(Context& ctx,
                                                                   const std::string& shape_name,
                                                                   uint64_t seed, DType dtype);

}  // namespace strata::runtime
