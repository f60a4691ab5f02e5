// Helpers shared by the planner tests: named shapes as ModelSpecs, catalogue profiles.
#pragma once

#include <string>

#include "common/check.h"
#include "model/shapes.h"
#include "planner/hardware.h"
#include "planner/model_spec.h"

namespace strata::planner::testing {

inline ModelSpec spec_of(const std::string& shape) {
  auto cfg = model::named_shape(shape);
  STRATA_CHECK(cfg.is_ok(), cfg.status().to_string());
  return make_model_spec(*cfg, shape);
}

inline HardwareProfile hardware(const std::string& name) {
  auto hw = catalogue_hardware(name);
  STRATA_CHECK(hw.is_ok(), hw.status().to_string());
  return *hw;
}

}  // namespace strata::planner::testing
