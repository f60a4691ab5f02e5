// The JSON text of models/shapes/*.json, embedded at build time (see CMakeLists.txt and
// shapes_data.cc.in). Internal to the model module; use shapes.h.
#pragma once

#include <span>

namespace strata::model::detail {

struct EmbeddedShape {
  const char* name;  // file name without ".json"
  const char* json;
};

std::span<const EmbeddedShape> embedded_shapes();

}  // namespace strata::model::detail
