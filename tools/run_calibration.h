// A run of the offloading engine beside the cost model's prediction for it, per phase and
// resource, for planner::recalibrate: what `strata generate` checks after its first block and
// `strata bench --save-calibration` writes. Pure functions over a finished run's report.
// Units: seconds.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "offload/accounting.h"
#include "planner/hardware.h"
#include "planner/model_spec.h"
#include "planner/policy.h"
#include "planner/recalibrate.h"

namespace strata::tools {

// The measured busy seconds of one prefill step and one decode step (the report's per-phase busy
// time over its steps), and the cost model's for a block of the same shape under `hw`: the
// policy's batch, the mean prompt of the report's prefill, its decode steps, and the decode steps'
// share of full GPU batches (sequences that stop early leave batches idle). kInvalidArgument when
// the report has no prefill step.
Result<planner::RunSample> run_sample(const offload::OffloadReport& report, const planner::ModelSpec& spec,
                                      const planner::Policy& policy, const planner::HardwareProfile& hw);

// One line per resource that matters: "decode h2d: measured 0.41 s, predicted 0.30 s".
std::vector<std::string> describe_sample(const planner::RunSample& sample);

}  // namespace strata::tools
