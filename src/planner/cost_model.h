// The cost model: for a model, a workload, a machine, a batch shape and the compression and
// attention choices, the seconds each resource is busy per layer in one prefill step and in one
// decode step (at the mean decode context) of a whole block, as affine functions of the placement
// fractions. Layer time is the max over the bounds the zig-zag schedule overlaps. The LP minimises
// exactly these functions and predictions evaluate them, so the two cannot disagree.
// FlexGen's model (paper section 4.3) corrected: weight loading overlaps compute in decode too,
// compression changes the bytes moved and adds dequantisation work, GQA shrinks the KV cache,
// Llama MLPs have three matrices, and where attention over off-GPU KV runs is a choice.
// Pure functions, thread safe. Units: seconds, bytes.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "planner/hardware.h"
#include "planner/model_spec.h"
#include "planner/policy.h"

namespace strata::planner {

// constant + sum(coef[i] * fractions[i]).
struct Affine {
  double constant = 0;
  Fractions coef{};

  double eval(const Fractions& f) const;
  Affine& add(Frac i, double c) {
    coef[i] += c;
    return *this;
  }
  Affine& operator+=(const Affine& o);
  Affine operator*(double s) const;
};

enum Resource { kDiskRead, kDiskWrite, kH2d, kD2h, kGpuCompute, kCpuCompute, kDram, kNumResources };
const char* resource_name(int r);  // "disk_read", "disk_write", "h2d", "d2h", "gpu_compute", ...

struct Bound {
  std::string name;  // "disk", "h2d", "d2h", "pcie_duplex", "gpu_compute", "cpu_compute", "dram"
  Affine seconds;
};

struct PhaseModel {
  std::array<Affine, kNumResources> seconds;  // per layer, the whole block
  std::vector<Bound> bounds;                  // layer time = max over these
};

struct CostModel {
  PhaseModel prefill, decode;
  int64_t layers = 0;
  int64_t decode_steps = 0;  // gen_len - 1
  int64_t block = 0;         // sequences per block
  int64_t gen_len = 0;
};

CostModel build_cost_model(const ModelSpec& spec, const Workload& workload,
                           const HardwareProfile& hw, const BatchShape& batch,
                           const Choices& choices);

// Resource and bound times of one phase at `f`; layer_s is the largest bound.
PhaseTimes evaluate_phase(const PhaseModel& phase, const Fractions& f);
// Times of a block at `f` (bytes and job_s are left for the caller).
Prediction predict(const CostModel& model, const Fractions& f, const Workload& workload);

}  // namespace strata::planner
