// Helpers shared by the planner tests: named shapes as ModelSpecs, catalogue profiles.
#pragma once

#include <string>

#include "common/check.h"
#include "common/units.h"
#include "model/shapes.h"
#include "planner/hardware.h"
#include "planner/model_spec.h"

namespace strata::planner::testing {

inline ModelSpec spec_of(const std::string& shape) {
  auto cfg = model::named_shape(shape);
  STRATA_CHECK(cfg.is_ok(), cfg.status().to_string());
  auto spec = make_model_spec(*cfg, shape);
  STRATA_CHECK(spec.is_ok(), spec.status().to_string());
  return std::move(spec).value();
}

inline HardwareProfile hardware(const std::string& name) {
  auto hw = catalogue_hardware(name);
  STRATA_CHECK(hw.is_ok(), hw.status().to_string());
  return *hw;
}

// A machine of round numbers (GPU 40 GiB, GEMM 100 / 50 TFLOP/s, HBM 1000 GB/s; 16 cores, DRAM
// 256 GiB at 100 GB/s, attention 100 GFLOP/s; links 10 GB/s; disk 2 / 1 GB/s) so expected times
// are worked out by hand.
inline HardwareProfile round_machine() {
  HardwareProfile hw;
  hw.name = "round";
  hw.gpu = {"gpu", 40 * kGiB, 100, 50, 1000, 0};
  hw.cpu = {"cpu", 16, 256 * kGiB, 100, 1, 100, 0};
  hw.links = {10, 10, 10};
  hw.disk = {"disk", 1000 * kGiB, 2, 1};
  return hw;
}

}  // namespace strata::planner::testing
