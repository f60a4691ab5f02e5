// FlexGen's OPT-175B policy on its T4 machine, checked against FlexGen's own cost model (Sheng et
// al., ICML 2023: the per-layer equations of its cost model with its fitted T4 constants, GB =
// 2^30) and its published throughput (0.69 token/s at 512 + 32 tokens, effective batch 256).
// bench/notes/planner-flexgen-t4.md tells the story.
#include <gtest/gtest.h>

#include <algorithm>

#include "common/units.h"
#include "planner/search.h"
#include "planner_test_util.h"

namespace strata::planner {
namespace {

using testing::hardware;
using testing::spec_of;

// FlexGen's policy: --percent 0 50 0 0 0 100 --gpu-batch-size 32 --num-gpu-batches 8 --cpu.
Policy flexgen_policy() {
  Policy p;
  p.model = "opt-175b";
  p.workload = {512, 32, 0};
  p.batch = {32, 8};
  p.choices.attention = Attention::kCpu;
  p.choices.prefetch_slots = 2;
  p.fractions = {0, 0.5, 0.5, 0, 0, 1, 0, 1};
  return p;
}

const Budgets kT4{16 * kGiB, 200 * kGiB, 1500 * kGiB};

// FlexGen's cost model for OPT-175B under this policy, per layer (seconds).
struct FlexGenTimes {
  double prefill_layer, decode_layer, dtocg;
};
FlexGenTimes flexgen_model() {
  const double GB = 1 << 30, T = 1e12;
  const double ctog = 12.89 * GB, gtoc_cache = 0.97 * GB, gtoc_hidden = 4.82 * GB, dtoc = 0.473 * GB;
  const double ctod_cache_p = 0.746 * GB, ctod_g = 2.015 * GB, mm_p = 21.24 * T, mm_g = 4.3 * T, bmm_p = 9.97 * T, cpu = 0.0123 * T;
  const double h1 = 12288, h2 = 49152, s = 512, n = 32, bls = 256;
  const double wi = 8 * h1 * h1 + 4 * h1 * h2;  // bytes of a layer's fp16 weights
  const double wc = 0.5, wn = 0.5, cn = 1, hc = 1;
  // Prefill.
  const double ctogp = (wi * (wc + wn) + 2 * s * h1 * bls * hc) / ctog;
  const double gtocp = 4 * (s + 1) * h1 * bls * cn / gtoc_cache + 2 * s * h1 * bls * hc / gtoc_hidden;
  const double dtocp = wi * wn / dtoc;
  const double ctodp = 4 * bls * (s + 1) * h1 * cn / ctod_cache_p;
  const double compp = bls * (8 * s * h1 * h1 + 4 * s * h1 * h2) / mm_p + 4 * bls * s * s * h1 / bmm_p;
  const double tpre = std::max({ctogp + dtocp, gtocp + ctodp, compp});
  // Decode: the KV read from disk every step, the disk half of the weights at 95% of the rate.
  const double ctogg = (wi * (wc + wn) + 2 * h1 * bls * hc) / ctog;
  const double gtocg = 2 * h1 * bls * hc / gtoc_hidden;
  const double dtocg = 4 * bls * (s + n / 2) * h1 * cn / dtoc + wi * wn / (dtoc * 0.95);
  const double compg = bls * (8 * h1 * h1 + 4 * h1 * h2) / mm_g + 4 * bls * (s + n / 2) * h1 * cn / cpu;
  const double ctodg = 4 * bls * h1 * cn / ctod_g;
  const double tgen = ctogg + std::max({gtocg, dtocg, ctodg, compg});
  return {tpre, tgen, dtocg};
}

double tokens_per_s(const FlexGenTimes& t) { return 256.0 * 32 / (96 * t.prefill_layer + 31 * 96 * t.decode_layer); }

TEST(FlexGenReference, OurModelAgreesWithFlexGensOwnForItsPolicy) {
  auto r = evaluate_policy(spec_of("opt-175b"), flexgen_policy(), hardware("t4-flexgen"), kT4);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  const Prediction& q = r->policy.predicted;
  const FlexGenTimes f = flexgen_model();
  double disk_read = 0;
  for (const auto& [name, s] : q.decode.resources)
    if (name == "disk_read") disk_read = s;
  // Decode is the disk: 6.6 GB of KV and 1.8 GB of weights per layer at 0.508 GB/s.
  EXPECT_EQ(q.decode.bottleneck, "disk_read");
  EXPECT_NEAR(disk_read / f.dtocg, 1, 0.02);
  EXPECT_NEAR(q.decode.layer_s / f.decode_layer, 1, 0.03);
  EXPECT_NEAR(q.prefill.layer_s / f.prefill_layer, 1, 0.03);
  EXPECT_NEAR(q.tokens_per_s / tokens_per_s(f), 1, 0.05);  // both about 0.155 token/s
  // ... while FlexGen published 0.69 token/s for this run: 4x what either model allows at its
  // disk constant.
  EXPECT_LT(tokens_per_s(f), 0.69 / 4);
}

TEST(FlexGenReference, TheSearchDoesNotMissABetterPolicy) {
  const auto spec = spec_of("opt-175b");
  for (double read_gbps : {0.508, 2.6}) {
    HardwareProfile hw = hardware("t4-flexgen");
    hw.disk.read_gbps = read_gbps;
    auto given = evaluate_policy(spec, flexgen_policy(), hw, kT4);
    auto best = plan_policy(spec, {512, 32, 0}, hw, kT4, {});
    ASSERT_TRUE(given.is_ok() && best.is_ok());
    EXPECT_GE(best->policy.predicted.tokens_per_s, given->policy.predicted.tokens_per_s) << read_gbps;
    if (read_gbps == 0.508) {
      // With FlexGen's disk constant nothing reaches its published figure.
      EXPECT_LT(best->policy.predicted.tokens_per_s, 0.69 / 3);
    } else {
      // KV reads at 2.6 GB/s are what the published 0.69 token/s takes under our model.
      EXPECT_NEAR(given->policy.predicted.tokens_per_s, 0.69, 0.02);
    }
  }
}

}  // namespace
}  // namespace strata::planner
