// Recalibration against a simulated machine: the "true" profile's cost model plays the measured
// engine, a deliberately wrong profile plays what the planner believed.
#include "planner/recalibrate.h"

#include <gtest/gtest.h>

#include "common/units.h"
#include "planner/cost_model.h"
#include "planner/search.h"
#include "planner_test_util.h"

namespace strata::planner {
namespace {

using testing::hardware;
using testing::spec_of;

// The test host with per-call costs, as a measured profile would have them.
HardwareProfile true_machine() {
  HardwareProfile hw = hardware("h100-test-host");
  hw.gpu.fixed = {250, 120, 200};
  hw.cpu.attention_fp16 = {60, 1.5, 90};
  hw.links.h2d_latency_us = 4;
  hw.links.d2h_latency_us = 2.5;
  return hw;
}

// Believes the links twice as fast, the GPU 1.5x faster (every rate, and its fixed costs shorter
// by as much), the CPU attention 40% slower and the disk 3x faster than they are.
HardwareProfile wrong_machine() {
  HardwareProfile hw = true_machine();
  hw.links.h2d_gbps *= 2;
  hw.links.d2h_gbps *= 2;
  hw.links.duplex_gbps *= 2;
  hw.links.h2d_latency_us /= 2;
  hw.links.d2h_latency_us /= 2;
  for (double* rate : {&hw.gpu.gemm_prefill_tflops, &hw.gpu.gemm_decode_tflops, &hw.gpu.hbm_gbps, &hw.gpu.dequant_gelems})
    *rate *= 1.5;
  hw.gpu.fixed = {250 / 1.5, 120 / 1.5, 200 / 1.5};
  hw.cpu.attention_fp16 = {60 / 0.6, 1.5 / 0.6, 90 * 0.6};
  hw.disk.read_gbps *= 3;
  hw.disk.write_gbps *= 3;
  return hw;
}

struct Case {
  const char* model;
  Workload work;
  BatchShape batch;
  Fractions f;
  Attention attention;
};

// Placements that load every resource the profile gets wrong: weights streamed from DRAM and disk,
// KV on the host with CPU attention, KV on disk with GPU attention, hidden states on the host.
std::vector<Case> cases() {
  return {{"llama-2-13b", {512, 64, 0}, {8, 8}, {0.3, 0.7, 0, 0, 1, 0, 1, 0}, Attention::kCpu},
          {"opt-13b", {512, 32, 0}, {32, 4}, {0.2, 0.6, 0.2, 0.2, 0.5, 0.3, 0.5, 0.5}, Attention::kGpu},
          {"llama-3-8b", {256, 64, 0}, {24, 12}, {0.1, 0.9, 0, 0.5, 0.5, 0, 1, 0}, Attention::kCpu}};
}

Prediction predict_case(const Case& c, const HardwareProfile& hw) {
  Choices ch;
  ch.attention = c.attention;
  return predict(build_cost_model(spec_of(c.model), c.work, hw, c.batch, ch), c.f, c.work);
}

RunSample run_of(const Case& c, const HardwareProfile& believed) {
  const int64_t L = spec_of(c.model).num_layers;
  return {predicted_busy(predict_case(c, believed), L), predicted_busy(predict_case(c, true_machine()), L)};
}

TEST(Recalibrate, AWrongProfileConvergesToTheMachine) {
  HardwareProfile hw = wrong_machine();
  // Before: the wrong profile is far off on every case.
  for (const Case& c : cases())
    EXPECT_GT(std::abs(predict_case(c, hw).tokens_per_s / predict_case(c, true_machine()).tokens_per_s - 1), 0.1)
        << c.model;
  // Calibrate from the first case's run, as generate does from its first block; repeat while any
  // resource is more than 10% off.
  int rounds = 0;
  for (; rounds < 5; ++rounds) {
    auto r = recalibrate(hw, {run_of(cases()[rounds % 3], hw)});
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    hw = r->profile;
    if (!r->off) break;
  }
  EXPECT_LE(rounds, 3);
  // After: every case, also those never measured, within 2% of the machine.
  for (const Case& c : cases()) {
    const Prediction got = predict_case(c, hw), want = predict_case(c, true_machine());
    EXPECT_NEAR(got.tokens_per_s / want.tokens_per_s, 1, 0.02) << c.model;
    EXPECT_NEAR(got.decode_step_s / want.decode_step_s, 1, 0.02) << c.model;
    EXPECT_NEAR(got.prefill_s / want.prefill_s, 1, 0.02) << c.model;
  }
  // The planner's choice with the calibrated profile predicts what the machine does with it.
  const auto spec = spec_of("llama-2-13b");
  const Budgets b{12 * kGiB, 80 * kGiB, 0};
  auto plan = plan_policy(spec, {512, 64, 0}, hw, b, {});
  auto truth = plan_policy(spec, {512, 64, 0}, true_machine(), b, {});
  ASSERT_TRUE(plan.is_ok() && truth.is_ok());
  EXPECT_NEAR(plan->policy.predicted.tokens_per_s / truth->policy.predicted.tokens_per_s, 1, 0.02);
}

TEST(Recalibrate, SeveralRunsAreFittedTogether) {
  const HardwareProfile wrong = wrong_machine();
  std::vector<RunSample> runs;
  for (const Case& c : cases()) runs.push_back(run_of(c, wrong));
  auto r = recalibrate(wrong, runs);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_TRUE(r->off);
  EXPECT_FALSE(r->notes.empty());
  // The links were believed twice as fast: their factor is 2 in both phases.
  EXPECT_NEAR(r->profile.calibration.of(kDecode, kCalH2d), 2, 0.01);
  EXPECT_NEAR(r->profile.calibration.of(kPrefill, kCalD2h), 2, 0.01);
  EXPECT_NEAR(r->profile.calibration.of(kDecode, kCalGpu), 1.5, 0.01);
  for (const Case& c : cases())
    EXPECT_NEAR(predict_case(c, r->profile).tokens_per_s / predict_case(c, true_machine()).tokens_per_s, 1, 0.02);
}

TEST(Recalibrate, ACorrectProfileIsLeftAlone) {
  const HardwareProfile right = true_machine();
  for (const Case& c : cases()) {
    RunSample run = run_of(c, right);
    // Measurement noise within the tolerance.
    for (double& s : run.measured.decode.seconds) s *= 1.04;
    for (double& s : run.measured.prefill.seconds) s *= 0.97;
    auto r = recalibrate(right, {run});
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    EXPECT_FALSE(r->off) << c.model;
    EXPECT_TRUE(r->notes.empty());
    EXPECT_TRUE(r->profile.calibration.identity());
  }
}

TEST(Recalibrate, WorkTheModelDoesNotExpectIsReportedNotScaled) {
  const HardwareProfile hw = true_machine();
  RunSample run = run_of(cases()[0], hw);  // no disk in this placement
  ASSERT_EQ(run.predicted.decode.seconds[kCalDiskRead], 0);
  run.measured.decode.seconds[kCalDiskRead] = run.measured.decode.seconds[kCalGpu];
  auto r = recalibrate(hw, {run});
  ASSERT_TRUE(r.is_ok());
  EXPECT_TRUE(r->off);
  ASSERT_EQ(r->notes.size(), 1u);
  EXPECT_NE(r->notes[0].find("decode disk_read"), std::string::npos) << r->notes[0];
  EXPECT_EQ(r->profile.calibration.of(kDecode, kCalDiskRead), 1);

  run = run_of(cases()[0], hw);
  run.measured.prefill.seconds[kCalH2d] = -1;
  auto bad = recalibrate(hw, {run});
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("run 0: prefill h2d: measured"), std::string::npos);
  EXPECT_FALSE(recalibrate(hw, {}).is_ok());
}

}  // namespace
}  // namespace strata::planner
