// Named model shapes: the config.json of well-known models (opt-6.7b, llama-3-8b, qwen2-72b, ...)
// kept in models/shapes/*.json and compiled into the library, so benchmarks and plans need no
// download and the binary works from any directory. Pure functions, thread safe.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "model/config.h"

namespace strata::model {

// The config of shape `name` (case-insensitive, e.g. "opt-30b"); kNotFound lists the known names.
Result<ModelConfig> named_shape(std::string_view name);
// Every known shape name, sorted.
std::vector<std::string> named_shape_names();

}  // namespace strata::model
