#include "run_calibration.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "planner/cost_model.h"
#include "planner/memory_plan.h"

namespace strata::tools {

using planner::kNumCalibrated;

Result<planner::RunSample> run_sample(const offload::OffloadReport& report, const planner::ModelSpec& spec,
                                      const planner::Policy& policy, const planner::HardwareProfile& hw) {
  if (report.prefill_steps < 1 || report.prefill_tokens < 1)
    return invalid_argument("recalibration needs a run with a prefill step");
  planner::RunSample s;
  for (const offload::ResourceUse& u : report.resources)
    for (int r = 0; r < kNumCalibrated; ++r) {
      if (u.name != planner::calibrated_resource_name(r)) continue;
      s.measured.prefill.seconds[r] = u.prefill_busy_s / static_cast<double>(report.prefill_steps);
      if (report.decode_steps > 0) s.measured.decode.seconds[r] = u.decode_busy_s / static_cast<double>(report.decode_steps);
    }
  const int64_t block = policy.batch.block();
  const double steps = static_cast<double>(std::max<int64_t>(report.prefill_steps, 1));
  planner::Workload w;
  w.prompt_len = std::max<int64_t>(1, std::llround(static_cast<double>(report.prefill_tokens) / steps / block));
  w.gen_len = std::max<int64_t>(2, report.decode_steps / report.prefill_steps + 1);
  const planner::Placement placement = planner::realise(spec, policy);
  const planner::CostModel cm = planner::build_cost_model(spec, w, hw, policy.batch, policy.choices);
  const planner::Prediction p = planner::predict(cm, placement.realised, w);
  s.predicted = planner::predicted_busy(p, spec.num_layers);
  if (report.decode_steps > 0) {
    // With paged KV a decode step may hold more sequences than the block's slots: the decode
    // prediction is for GPU batches of as many as it held on average.
    const double per_step = static_cast<double>(report.decode_tokens) / static_cast<double>(report.decode_steps);
    planner::BatchShape decode_batch = policy.batch;
    if (per_step > static_cast<double>(block)) {
      decode_batch.gpu_batch_size = static_cast<int64_t>(
          std::ceil(per_step / static_cast<double>(policy.batch.num_gpu_batches)));
      const planner::CostModel wide = planner::build_cost_model(spec, w, hw, decode_batch, policy.choices);
      s.predicted.decode = planner::predicted_busy(planner::predict(wide, placement.realised, w), spec.num_layers).decode;
    }
    // Decode steps where sequences had stopped ran fewer GPU batches than the model's full block.
    const double activity = std::min(1.0, per_step / static_cast<double>(decode_batch.block()));
    for (double& v : s.predicted.decode.seconds) v *= activity;
  } else {
    s.predicted.decode = {};
  }
  return s;
}

std::vector<std::string> describe_sample(const planner::RunSample& sample) {
  std::vector<std::string> out;
  for (int phase = 0; phase < 2; ++phase) {
    const auto& m = phase == 0 ? sample.measured.prefill : sample.measured.decode;
    const auto& p = phase == 0 ? sample.predicted.prefill : sample.predicted.decode;
    for (int r = 0; r < kNumCalibrated; ++r) {
      if (m.seconds[r] < 1e-6 && p.seconds[r] < 1e-6) continue;
      char buf[160];
      std::snprintf(buf, sizeof buf, "%s %s: measured %.4g s, predicted %.4g s a step",
                    phase == 0 ? "prefill" : "decode", planner::calibrated_resource_name(r), m.seconds[r],
                    p.seconds[r]);
      out.emplace_back(buf);
    }
  }
  return out;
}

}  // namespace strata::tools
