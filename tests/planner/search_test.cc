#include "planner/search.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/units.h"
#include "planner/policy.h"
#include "planner_test_util.h"

namespace strata::planner {
namespace {

using testing::hardware;
using testing::spec_of;

// FlexGen's T4 machine: 16 GB GPU (15 GiB usable), 208 GB DRAM, 1.5 TB SSD.
Budgets flexgen_budgets() { return {15 * kGiB, 200 * kGiB, 1500 * kGiB}; }

Policy hand_policy(const char* model, int64_t gbs, int64_t nb, Fractions f, Attention att) {
  Policy p;
  p.model = model;
  p.workload = {512, 32, 0};
  p.batch = {gbs, nb};
  p.choices.attention = att;
  p.fractions = f;
  return p;
}

TEST(Search, Opt30bOnFlexGensT4KeepsWeightsAndKvOnTheCpuWithCpuAttention) {
  auto spec = spec_of("opt-30b");
  auto hw = hardware("t4-flexgen");
  auto r = plan_policy(spec, {512, 32, 0}, hw, flexgen_budgets(), {});
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  const Policy& p = r->policy;
  // FlexGen's regime (its policy: weights 20% GPU / 80% CPU, KV 100% CPU, CPU attention).
  EXPECT_GT(p.fractions[kWc], 0.5);
  EXPECT_GT(p.fractions[kWc], p.fractions[kWg]);
  EXPECT_EQ(p.fractions[kWd], 0);
  EXPECT_GT(p.fractions[kCc], 0.75);
  EXPECT_EQ(p.fractions[kCd], 0);
  EXPECT_EQ(p.choices.attention, Attention::kCpu);
  EXPECT_EQ(p.predicted.decode.bottleneck, "cpu_compute");  // attention on the CPU

  // FlexGen's batch shape with its KV and activation placement is in the search space; the search
  // must do at least as well. (Its 20% of the weights on the GPU does not fit next to strata's
  // two prefetch slots and double-buffered KV staging, so the weights stay on the CPU here.)
  auto flexgen = evaluate_policy(
      spec, hand_policy("opt-30b", 48, 3, {0, 1, 0, 0, 1, 0, 1, 0}, Attention::kCpu), hw,
      flexgen_budgets());
  ASSERT_TRUE(flexgen.is_ok()) << flexgen.status().to_string();
  EXPECT_GE(p.predicted.tokens_per_s, flexgen->policy.predicted.tokens_per_s);
}

TEST(Search, Opt175bOnFlexGensT4SplitsWeightsBetweenCpuAndDisk) {
  auto spec = spec_of("opt-175b");
  auto hw = hardware("t4-flexgen");
  auto r = plan_policy(spec, {512, 32, 0}, hw, flexgen_budgets(), {});
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  const Policy& p = r->policy;
  EXPECT_GT(p.fractions[kWc], 0.3);
  EXPECT_GT(p.fractions[kWd], 0.3);
  EXPECT_LT(p.fractions[kWg], 0.05);
  EXPECT_GT(p.fractions[kCd], 0.5);  // 350 GB of weights leave no DRAM for a big block's KV

  // FlexGen double-buffers weights: two GPU slots (a third would not fit next to its batch).
  Policy fp = hand_policy("opt-175b", 32, 8, {0, 0.5, 0.5, 0, 0, 1, 0, 1}, Attention::kCpu);
  fp.choices.prefetch_slots = 2;
  auto flexgen = evaluate_policy(spec, fp, hw, flexgen_budgets());
  ASSERT_TRUE(flexgen.is_ok()) << flexgen.status().to_string();
  EXPECT_GE(p.predicted.tokens_per_s, flexgen->policy.predicted.tokens_per_s);
}

TEST(Search, EverythingOnTheGpuWhenItFits) {
  auto r = plan_policy(spec_of("opt-1.3b"), {128, 16, 64}, hardware("h100-test-host"),
                       {70 * kGiB, 100 * kGiB, 50 * kGiB}, {});
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  const Policy& p = r->policy;
  EXPECT_EQ(p.fractions[kWg], 1);
  EXPECT_EQ(p.fractions[kCg], 1);
  EXPECT_EQ(p.fractions[kHg], 1);
  EXPECT_LE(p.batch.block(), 64);  // never a block larger than the job
  EXPECT_EQ(p.predicted.bytes[2], 0u);
}

TEST(Search, InfeasibleBudgetsNameTheShortTierAndTheShortfall) {
  auto spec = spec_of("opt-175b");
  auto hw = hardware("t4-flexgen");
  // 2.5 GiB of GPU: a 3.6 GB layer cannot even be streamed through two prefetch slots.
  auto gpu = plan_policy(spec, {512, 32, 0}, hw, {2 * kGiB + kGiB / 2, 200 * kGiB, 1500 * kGiB}, {});
  ASSERT_FALSE(gpu.is_ok());
  EXPECT_EQ(gpu.status().code(), StatusCode::kInfeasible);
  EXPECT_NE(gpu.status().message().find("gpu tier short by"), std::string::npos) << gpu.status().message();
  EXPECT_NE(gpu.status().message().find("--gpu-mem"), std::string::npos);

  // 326 GiB of fp16 weights; 15 GiB GPU + 100 GiB DRAM + 100 GiB disk cannot hold them.
  auto disk = plan_policy(spec, {512, 32, 0}, hw, {15 * kGiB, 100 * kGiB, 100 * kGiB}, {});
  ASSERT_FALSE(disk.is_ok());
  EXPECT_EQ(disk.status().code(), StatusCode::kInfeasible);
  const std::string& m = disk.status().message();
  EXPECT_NE(m.find("disk tier short by"), std::string::npos) << m;
  // Weights alone: 324.5 GiB; room: 100 + 100 GiB + what the GPU spares (< 15 GiB): > 109 GiB.
  // The GPU keeps at least its prefetch slots, working buffers and the CUDA context: < 3 GiB.
  const double shortfall_gib = std::stod(m.substr(m.find("short by ") + 9));
  EXPECT_GT(shortfall_gib, 324.5 - 215);
  EXPECT_LT(shortfall_gib, 324.5 - 200 + 3);
}

TEST(Search, BadWorkloadIsAnError) {
  auto r = plan_policy(spec_of("opt-1.3b"), {0, 32, 0}, hardware("l4"), {20 * kGiB, 50 * kGiB, 0}, {});
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
}

TEST(Search, CompressionIsChosenWhenAllowedAndItHelps) {
  // llama-2-70b (138 GB fp16) on an L4 with 128 GiB of DRAM and a slow disk: int4 weights
  // (39 GB) fit in DRAM and cut the bytes streamed per step by 3.5x.
  auto spec = spec_of("llama-2-70b");
  auto hw = hardware("l4");
  hw.disk.read_gbps = 1.0;
  SearchOptions any;
  any.weight_compression = {Compression::kNone, Compression::kInt4};
  any.kv_compression = {Compression::kNone, Compression::kInt4};
  const Budgets b{22 * kGiB, 110 * kGiB, 1000 * kGiB};
  auto plain = plan_policy(spec, {512, 32, 0}, hw, b, {});
  auto packed = plan_policy(spec, {512, 32, 0}, hw, b, any);
  ASSERT_TRUE(plain.is_ok()) << plain.status().to_string();
  ASSERT_TRUE(packed.is_ok()) << packed.status().to_string();
  EXPECT_EQ(packed->policy.choices.weights, Compression::kInt4);
  EXPECT_GT(packed->policy.predicted.tokens_per_s, 1.5 * plain->policy.predicted.tokens_per_s);
}

// The runners-up: the next candidates by predicted time, each evaluated again to the same
// prediction, each a different run (batch, compression, attention or placement), within the
// budgets; asking for them does not change the choice.
TEST(Search, RunnersUpAreTheNextDistinctCandidatesInOrder) {
  auto spec = spec_of("llama-3-8b");
  auto hw = hardware("h100-test-host");
  const Budgets b{40 * kGiB, 60 * kGiB, 0};
  const Workload w{1024, 64, 0};
  SearchOptions o;
  o.attention = {Attention::kCpu, Attention::kGpu};
  auto alone = plan_policy(spec, w, hw, b, o);
  ASSERT_TRUE(alone.is_ok());
  EXPECT_TRUE(alone->runners_up.empty());
  o.runners_up = 5;
  auto r = plan_policy(spec, w, hw, b, o);
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(policy_to_json(r->policy), policy_to_json(alone->policy));
  ASSERT_EQ(r->runners_up.size(), 5u);
  double last = r->policy.predicted.tokens_per_s;
  std::vector<std::string> seen = {policy_to_json(r->policy).dump()};
  for (const Policy& p : r->runners_up) {
    EXPECT_LE(p.predicted.tokens_per_s, last * (1 + 1e-9));
    last = p.predicted.tokens_per_s;
    auto again = evaluate_policy(spec, p, hw, b);
    ASSERT_TRUE(again.is_ok()) << again.status().to_string();
    EXPECT_NEAR(again->policy.predicted.tokens_per_s, p.predicted.tokens_per_s, 1e-6 * p.predicted.tokens_per_s);
    // A different run: the attention choice only counts with KV off the GPU.
    Policy key = p;
    if (again->placement.realised[kCg] >= 1) key.choices.attention = Attention::kCpu;
    key.predicted = {};
    const std::string k = policy_to_json(key).dump();
    for (const auto& other : seen) EXPECT_NE(k, other);
    seen.push_back(k);
  }
}

TEST(Search, APlanTakesWellUnderASecond) {
  auto r = plan_policy(spec_of("llama-3-70b"), {1024, 128, 0}, hardware("h100-pcie"),
                       default_budgets(hardware("h100-pcie")), {});
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_GT(r->lps_solved, 100);
  EXPECT_GT(r->candidates_feasible, 10);
}

}  // namespace
}  // namespace strata::planner
