// A run's report set beside the cost model's prediction for a block of its shape: a report made
// from the prediction itself recalibrates nothing; one whose decode h2d took 1.5x as long is refit
// by 1.5 on that resource alone, and the refit profile then predicts the run.
#include "run_calibration.h"

#include <gtest/gtest.h>

#include "model/shapes.h"
#include "planner/cost_model.h"
#include "planner/memory_plan.h"
#include "planner/search.h"

namespace strata::tools {
namespace {

using planner::kNumCalibrated;

struct Fixture {
  planner::ModelSpec spec;
  planner::HardwareProfile hw;
  planner::Policy policy;
};

Fixture planned() {
  Fixture f;
  f.spec = planner::make_model_spec(model::named_shape("opt-13b").value(), "opt-13b").value();
  f.hw = planner::catalogue_hardware("h100-test-host").value();
  planner::Budgets b;
  b.gpu = 8ull << 30;
  b.cpu = 80ull << 30;
  b.disk = 0;
  auto plan = planner::plan_policy(f.spec, {512, 32, 0}, f.hw, b, {});
  EXPECT_TRUE(plan.is_ok()) << plan.status().to_string();
  f.policy = plan->policy;
  return f;
}

// An engine report of one block of the policy, each resource busy per step for `busy` seconds.
offload::OffloadReport report_of(const planner::RunBusy& busy, const planner::Policy& p, double h2d_decode_scale) {
  offload::OffloadReport r;
  const int64_t block = p.batch.block();
  r.prefill_steps = 1;
  r.prefill_tokens = block * p.workload.prompt_len;
  r.decode_steps = p.workload.gen_len - 1;
  r.decode_tokens = r.decode_steps * block;
  for (int c = 0; c < kNumCalibrated; ++c) {
    offload::ResourceUse u;
    u.name = planner::calibrated_resource_name(c);
    u.prefill_busy_s = busy.prefill.seconds[c];
    u.decode_busy_s = busy.decode.seconds[c] * static_cast<double>(r.decode_steps) *
                      (c == planner::kCalH2d ? h2d_decode_scale : 1.0);
    u.busy_s = u.prefill_busy_s + u.decode_busy_s;
    r.resources.push_back(u);
  }
  return r;
}

planner::RunBusy predicted(const Fixture& f) {
  const auto placement = planner::realise(f.spec, f.policy);
  const auto cm = planner::build_cost_model(f.spec, f.policy.workload, f.hw, f.policy.batch, f.policy.choices);
  return planner::predicted_busy(planner::predict(cm, placement.realised, f.policy.workload), f.spec.num_layers);
}

TEST(RunCalibration, ARunAsPredictedChangesNothing) {
  const Fixture f = planned();
  const planner::RunBusy busy = predicted(f);
  auto sample = run_sample(report_of(busy, f.policy, 1.0), f.spec, f.policy, f.hw);
  ASSERT_TRUE(sample.is_ok()) << sample.status().to_string();
  for (int c = 0; c < kNumCalibrated; ++c) {
    EXPECT_NEAR(sample->measured.decode.seconds[c], busy.decode.seconds[c], 1e-9 + 1e-9 * busy.decode.seconds[c]);
    EXPECT_NEAR(sample->predicted.decode.seconds[c], busy.decode.seconds[c], 1e-9 + 1e-9 * busy.decode.seconds[c]);
    EXPECT_NEAR(sample->measured.prefill.seconds[c], busy.prefill.seconds[c], 1e-9 + 1e-9 * busy.prefill.seconds[c]);
  }
  auto rec = planner::recalibrate(f.hw, {*sample});
  ASSERT_TRUE(rec.is_ok());
  EXPECT_FALSE(rec->off);
  EXPECT_FALSE(describe_sample(*sample).empty());
}

TEST(RunCalibration, ASlowLinkIsRefitOnThatResource) {
  const Fixture f = planned();
  const planner::RunBusy busy = predicted(f);
  ASSERT_GT(busy.decode.seconds[planner::kCalH2d], 0);
  auto sample = run_sample(report_of(busy, f.policy, 1.5), f.spec, f.policy, f.hw);
  ASSERT_TRUE(sample.is_ok());
  auto rec = planner::recalibrate(f.hw, {*sample});
  ASSERT_TRUE(rec.is_ok());
  EXPECT_TRUE(rec->off);
  EXPECT_NEAR(rec->profile.calibration.of(planner::kDecode, planner::kCalH2d), 1.5, 1e-6);
  EXPECT_NEAR(rec->profile.calibration.of(planner::kDecode, planner::kCalGpu), 1.0, 1e-6);
  // The refit profile predicts what was measured.
  auto again = run_sample(report_of(busy, f.policy, 1.5), f.spec, f.policy, rec->profile);
  ASSERT_TRUE(again.is_ok());
  EXPECT_NEAR(again->predicted.decode.seconds[planner::kCalH2d], again->measured.decode.seconds[planner::kCalH2d],
              1e-6 * again->measured.decode.seconds[planner::kCalH2d]);
}

TEST(RunCalibration, StoppedSequencesScaleTheDecodePrediction) {
  const Fixture f = planned();
  const planner::RunBusy busy = predicted(f);
  offload::OffloadReport r = report_of(busy, f.policy, 1.0);
  r.decode_tokens /= 2;  // half the sequences stopped at once
  auto sample = run_sample(r, f.spec, f.policy, f.hw);
  ASSERT_TRUE(sample.is_ok());
  EXPECT_NEAR(sample->predicted.decode.seconds[planner::kCalGpu], busy.decode.seconds[planner::kCalGpu] / 2,
              1e-9 + 1e-9 * busy.decode.seconds[planner::kCalGpu]);
  offload::OffloadReport none;
  EXPECT_FALSE(run_sample(none, f.spec, f.policy, f.hw).is_ok());
}

// Paged KV: decode steps held twice the block's sequences. The decode prediction is that of GPU
// batches twice as large (the same run predicted so recalibrates nothing).
TEST(RunCalibration, DecodeStepsOfPagedKvArePredictedForTheSequencesTheyHeld) {
  const Fixture f = planned();
  const planner::RunBusy busy = predicted(f);
  planner::Policy wide = f.policy;
  wide.batch.gpu_batch_size *= 2;
  const auto placement = planner::realise(f.spec, f.policy);
  const auto cm = planner::build_cost_model(f.spec, f.policy.workload, f.hw, wide.batch, f.policy.choices);
  const planner::RunBusy twice =
      planner::predicted_busy(planner::predict(cm, placement.realised, f.policy.workload), f.spec.num_layers);
  offload::OffloadReport r = report_of(busy, f.policy, 1.0);
  r.decode_tokens *= 2;
  for (auto& u : r.resources) {
    for (int c = 0; c < kNumCalibrated; ++c)
      if (u.name == planner::calibrated_resource_name(c))
        u.decode_busy_s = twice.decode.seconds[c] * static_cast<double>(r.decode_steps);
  }
  auto sample = run_sample(r, f.spec, f.policy, f.hw);
  ASSERT_TRUE(sample.is_ok());
  ASSERT_GT(twice.decode.seconds[planner::kCalGpu], busy.decode.seconds[planner::kCalGpu]);
  for (int c = 0; c < kNumCalibrated; ++c)
    EXPECT_NEAR(sample->predicted.decode.seconds[c], twice.decode.seconds[c], 1e-9 + 1e-9 * twice.decode.seconds[c]) << c;
  auto rec = planner::recalibrate(f.hw, {*sample});
  ASSERT_TRUE(rec.is_ok());
  EXPECT_FALSE(rec->off);
}

}  // namespace
}  // namespace strata::tools
