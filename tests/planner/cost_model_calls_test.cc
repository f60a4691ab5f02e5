// The cost model's per-call terms worked by hand on round numbers: fixed GPU time per layer and
// GPU batch, CPU attention per call, copy and disk request latencies counted as the engine issues
// them, GEMM rate curves, calibration factors and mixes of lengths.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>

#include "common/units.h"
#include "planner/cost_model.h"
#include "planner/search.h"
#include "planner_test_util.h"

namespace strata::planner {
namespace {

using testing::hardware;
using testing::round_machine;
using testing::spec_of;

Fractions at(double wg, double wc, double wd, double cg, double cc, double cd, double hg) {
  return {wg, wc, wd, cg, cc, cd, hg, 1 - hg};
}

// opt-1.3b: 24 layers, hidden = q_dim = kv_dim = 2048; fp16 KV is 8 KiB per token and layer.
const ModelSpec& opt13() {
  static const ModelSpec s = spec_of("opt-1.3b");
  return s;
}
constexpr double kKvToken = 2 * 2048 * 2;
const Workload kWork{100, 20, 0};  // decode attends to 110 positions on average
constexpr double kCtx = 110;

// The difference a profile change makes to one resource of one phase at `f`.
double delta(const HardwareProfile& with, const HardwareProfile& without, const BatchShape& b, const Choices& c,
             bool decode, Resource r, const Fractions& f) {
  const auto m1 = build_cost_model(opt13(), kWork, with, b, c);
  const auto m0 = build_cost_model(opt13(), kWork, without, b, c);
  const auto& p1 = decode ? m1.decode : m1.prefill;
  const auto& p0 = decode ? m0.decode : m0.prefill;
  return p1.seconds[r].eval(f) - p0.seconds[r].eval(f);
}

TEST(CostModelCalls, FixedGpuTimePerLayerAndGpuBatchDependsOnWhereAttentionRuns) {
  auto hw = round_machine();
  hw.gpu.fixed = {30, 20, 40};  // prefill, decode, decode split around CPU attention (us)
  const BatchShape b{8, 4};
  const Choices cpu_attention{};
  Choices gpu_attention;
  gpu_attention.attention = Attention::kGpu;
  const auto gpu_kv = at(1, 0, 0, 1, 0, 0, 1), host_kv = at(1, 0, 0, 0, 1, 0, 1);
  const auto base = round_machine();
  EXPECT_NEAR(delta(hw, base, b, cpu_attention, false, kGpuCompute, host_kv), 4 * 30e-6, 1e-12);
  EXPECT_NEAR(delta(hw, base, b, cpu_attention, true, kGpuCompute, gpu_kv), 4 * 20e-6, 1e-12);
  EXPECT_NEAR(delta(hw, base, b, cpu_attention, true, kGpuCompute, host_kv), 4 * 40e-6, 1e-12);
  EXPECT_NEAR(delta(hw, base, b, gpu_attention, true, kGpuCompute, host_kv), 4 * 20e-6, 1e-12);
  // Half the KV units on the host: half the batch-layers split (the placement realises whole units).
  EXPECT_NEAR(delta(hw, base, b, cpu_attention, true, kGpuCompute, at(1, 0, 0, 0.5, 0.5, 0, 1)),
              2 * 20e-6 + 2 * 40e-6, 1e-12);
}

TEST(CostModelCalls, CpuAttentionPaysPerCallPerSequenceAndPerByte) {
  auto hw = round_machine();
  hw.cpu.attention_fp16 = {50, 2, 20};  // 50 us a call, 2 us a sequence, 20 GB/s of KV
  const auto host_kv = at(1, 0, 0, 0, 1, 0, 1);
  for (int64_t nb : {1, 4, 16}) {
    const BatchShape b{8, nb};
    const auto m = build_cost_model(opt13(), kWork, hw, b, {});
    const double call = 50e-6 + 2e-6 * 8 + 8 * kCtx * kKvToken / 20e9;
    EXPECT_NEAR(m.decode.seconds[kCpuCompute].eval(host_kv), static_cast<double>(nb) * call, 1e-12) << nb;
  }
  // int4 KV has its own figures; without them the old rule (arithmetic, unpacking or DRAM) holds.
  Choices int4;
  int4.kv = Compression::kInt4;
  const auto without = build_cost_model(opt13(), kWork, round_machine(), {8, 4}, int4);
  const auto with_fp16_only = build_cost_model(opt13(), kWork, hw, {8, 4}, int4);
  EXPECT_EQ(with_fp16_only.decode.seconds[kCpuCompute].eval(host_kv), without.decode.seconds[kCpuCompute].eval(host_kv));
}

TEST(CostModelCalls, CopiesAreCountedAsTheEngineIssuesThem) {
  auto hw = round_machine();
  hw.links.h2d_latency_us = 5;
  hw.links.d2h_latency_us = 7;
  const auto base = round_machine();
  const BatchShape b{8, 2};  // 16 sequences
  Choices gpu4;
  gpu4.attention = Attention::kGpu;
  gpu4.kv = Compression::kInt4;
  const auto host_kv = at(1, 0, 0, 0, 1, 0, 1);
  // Decode, GPU attention over int4 host KV: each unit comes in 3 parts x (k, v) 2-D copies; each
  // sequence's new row goes back as 3 parts x (k, v) copies of its own.
  EXPECT_NEAR(delta(hw, base, b, gpu4, true, kH2d, host_kv), 2 * 6 * 5e-6, 1e-12);
  EXPECT_NEAR(delta(hw, base, b, gpu4, true, kD2h, host_kv), 16 * 6 * 7e-6, 1e-12);
  // Prefill: the prompt's KV leaves in 6 2-D copies per unit.
  EXPECT_NEAR(delta(hw, base, b, gpu4, false, kD2h, host_kv), 2 * 6 * 7e-6, 1e-12);
  // CPU attention: q, k and v go to the host per batch; fp16 KV is one part.
  EXPECT_NEAR(delta(hw, base, b, {}, true, kD2h, host_kv), 2 * 3 * 7e-6, 1e-12);
  EXPECT_NEAR(delta(hw, base, b, {}, false, kD2h, host_kv), 2 * 2 * 7e-6, 1e-12);
  // Streamed weights: one copy per GPU batch for each tier's part, the head once more per step;
  // hidden states on the host: one copy in and one out per batch and layer.
  const auto streamed = at(0, 0.5, 0.5, 1, 0, 0, 0);
  EXPECT_NEAR(delta(hw, base, b, {}, true, kH2d, streamed), 2 * (1 + 1.0 / 24) * 5e-6 + 2 * 5e-6, 1e-12);
  EXPECT_NEAR(delta(hw, base, b, {}, true, kD2h, streamed), 2 * 7e-6, 1e-12);
  // Many small copies: 1,000 copies of a few bytes cost their latency, not their bytes.
  const auto many = build_cost_model(opt13(), kWork, hw, {1000, 1}, gpu4);
  EXPECT_GT(many.decode.seconds[kD2h].eval(host_kv), 1000 * 6 * 7e-6);
}

TEST(CostModelCalls, DiskRequestsPayTheirLatency) {
  auto hw = round_machine();
  hw.disk.read_latency_us = 100;
  hw.disk.write_latency_us = 50;
  const auto base = round_machine();
  const auto disk_kv = at(1, 0, 0, 0, 0, 1, 1);
  // 8 sequences of 120 positions, 4 KiB rows: every sequence's rows are a request of their own,
  // for k and for v (engine_calls_test works the pages).
  EXPECT_NEAR(delta(hw, base, {8, 1}, {}, true, kDiskRead, disk_kv), 16 * 100e-6, 1e-12);
  EXPECT_NEAR(delta(hw, base, {8, 1}, {}, true, kDiskWrite, disk_kv), 16 * 50e-6, 1e-12);
  EXPECT_NEAR(delta(hw, base, {8, 1}, {}, false, kDiskWrite, disk_kv), 16 * 50e-6, 1e-12);
  // Weights: one request per layer's disk part, and the head's once per step.
  EXPECT_NEAR(delta(hw, base, {8, 1}, {}, true, kDiskRead, at(0, 0, 1, 1, 0, 0, 1)), (1 + 1.0 / 24) * 100e-6, 1e-12);
}

TEST(CostModelCalls, RateCurvesPriceEachCallAtItsRows) {
  auto hw = round_machine();
  hw.gpu.linear_fp16.points = {{1, 10}, {100, 100}};
  const auto& spec = opt13();
  const double layer_w = static_cast<double>(spec.layer_bytes(Compression::kNone));
  const double head_w = static_cast<double>(spec.head_bytes(Compression::kNone));
  const double p = static_cast<double>(spec.layer_gemm_params), ph = static_cast<double>(spec.head_gemm_params);
  const auto gpu_kv = at(1, 0, 0, 1, 0, 0, 1);
  // 1000 rows a call: past the last point, 100 TFLOP/s (the scalar decode rate is 50).
  const auto m = build_cost_model(spec, kWork, hw, {1000, 1}, {});
  const double gemm = std::max(2 * 1000 * p / 100e12, layer_w / 1000e9) +
                      std::max(2 * 1000 * ph / 100e12, head_w / 1000e9) / 24;
  EXPECT_NEAR(m.decode.seconds[kGpuCompute].eval(gpu_kv), gemm + 1000 * kCtx * kKvToken / 1000e9, 1e-12);
  // Prefill: 8 x 100 = 800 rows a call at 100 TFLOP/s, attention too; the head's 8 rows at
  // 10 + 90 x log(8) / log(100) TFLOP/s.
  const auto pm = build_cost_model(spec, kWork, hw, {8, 2}, {});
  const double head_rate = (10 + 90 * std::log(8.0) / std::log(100.0)) * 1e12;
  const double prefill = 2 * std::max(2 * 800 * p / 100e12, layer_w / 1000e9) +
                         2 * std::max(2 * 8 * ph / head_rate, head_w / 1000e9) / 24 +
                         2 * 16 * 100.0 * 100 * 2048 / 100e12;
  EXPECT_NEAR(pm.prefill.seconds[kGpuCompute].eval(gpu_kv), prefill, 1e-12);
  // An int4 curve prices the whole int4 path: no separate dequantisation term.
  Choices int4;
  int4.weights = Compression::kInt4;
  hw.gpu.linear_int4.points = {{1, 1000}};  // absurdly fast: only the HBM read remains
  const auto q = build_cost_model(spec, kWork, hw, {4, 1}, int4);
  const double w4 = static_cast<double>(spec.layer_bytes(Compression::kInt4));
  const double h4 = static_cast<double>(spec.head_bytes(Compression::kInt4));
  EXPECT_NEAR(q.decode.seconds[kGpuCompute].eval(gpu_kv), w4 / 1000e9 + h4 / 1000e9 / 24 + 4 * kCtx * kKvToken / 1000e9,
              1e-12);
}

TEST(CostModelCalls, CalibrationFactorsScaleTheirResourceAndItsBounds) {
  auto hw = round_machine();
  hw.calibration.factor[kDecode][kCalH2d] = 2;
  hw.calibration.factor[kPrefill][kCalGpu] = 0.5;
  const auto m1 = build_cost_model(opt13(), kWork, hw, {8, 1}, {});
  const auto m0 = build_cost_model(opt13(), kWork, round_machine(), {8, 1}, {});
  const auto f = at(0, 1, 0, 0, 1, 0, 0);
  EXPECT_NEAR(m1.decode.seconds[kH2d].eval(f), 2 * m0.decode.seconds[kH2d].eval(f), 1e-15);
  EXPECT_NEAR(m1.prefill.seconds[kH2d].eval(f), m0.prefill.seconds[kH2d].eval(f), 1e-15);
  EXPECT_NEAR(m1.prefill.seconds[kGpuCompute].eval(f), 0.5 * m0.prefill.seconds[kGpuCompute].eval(f), 1e-15);
  auto bound = [&](const PhaseModel& p, const char* name) {
    for (const auto& b : p.bounds)
      if (b.name == name) return b.seconds.eval(f);
    return -1.0;
  };
  // The duplex bound: the host->GPU half doubles, the GPU->host half does not.
  const double h2d = m0.decode.seconds[kH2d].eval(f) * 10e9, d2h = m0.decode.seconds[kD2h].eval(f) * 10e9;
  EXPECT_NEAR(bound(m1.decode, "pcie_duplex"), (2 * h2d + d2h) / 20e9, 1e-15);
}

TEST(CostModelCalls, AMixOfLengthsIsTheSumOfItsBuckets) {
  const auto hw = hardware("h100-test-host");
  const auto spec = spec_of("llama-3-8b");
  Workload mixed{512, 64, 300, {{128, 64, 200}, {512, 32, 100}}};
  ASSERT_TRUE(check_workload(mixed).is_ok());
  const BatchShape b{16, 2};  // 32 a block: 7 blocks of the short requests, 4 of the long
  const auto f = at(0.5, 0.5, 0, 1, 0, 0, 1);
  const auto job = build_job_model(spec, mixed, hw, b, {});
  const auto p = predict(job, f, mixed);
  const auto short_block = predict(build_cost_model(spec, {128, 64, 0}, hw, b, {}), f, {});
  const auto long_block = predict(build_cost_model(spec, {512, 32, 0}, hw, b, {}), f, {});
  EXPECT_NEAR(p.job_s, 7 * short_block.block_s + 4 * long_block.block_s, 1e-9 * p.job_s);
  EXPECT_NEAR(p.tokens_per_s, (7 * 32 * 64 + 4 * 32 * 32) / p.job_s, 1e-9 * p.tokens_per_s);
  // The longest prompt and generation for every request over-predicts the job.
  const auto worst = predict(build_cost_model(spec, {512, 64, 0}, hw, b, {}), f, {});
  EXPECT_LT(p.job_s, 10 * worst.block_s);

  // The search plans the mix (memory for 512 + 64) and predicts less time than for all-longest.
  auto planned = plan_policy(spec, mixed, hw, {6 * kGiB, 60 * kGiB, 0}, {});
  auto longest = plan_policy(spec, {512, 64, 300}, hw, {6 * kGiB, 60 * kGiB, 0}, {});
  ASSERT_TRUE(planned.is_ok()) << planned.status().to_string();
  ASSERT_TRUE(longest.is_ok()) << longest.status().to_string();
  EXPECT_LT(planned->policy.predicted.job_s, longest->policy.predicted.job_s);
  // And its prediction is what predict() says of the realised placement.
  const auto again = predict(build_job_model(spec, mixed, hw, planned->policy.batch, planned->policy.choices),
                             planned->placement.realised, mixed);
  EXPECT_DOUBLE_EQ(again.job_s, planned->policy.predicted.job_s);

  // A mix that does not fit its maximum, or miscounts the requests, is refused with the bucket.
  Workload bad = mixed;
  bad.mix[1].prompt_len = 1024;
  EXPECT_NE(check_workload(bad).message().find("bucket 1"), std::string::npos);
  bad = mixed;
  bad.requests = 301;
  EXPECT_FALSE(check_workload(bad).is_ok());
}

TEST(CostModelCalls, LengthsAreBucketedByPromptLength) {
  std::vector<std::pair<int64_t, int64_t>> lengths;
  for (int i = 0; i < 90; ++i) lengths.push_back({100 + i, 32});
  for (int i = 0; i < 10; ++i) lengths.push_back({2000, 64});
  const Workload w = workload_from_lengths(lengths, 4);
  EXPECT_EQ(w.prompt_len, 2000);
  EXPECT_EQ(w.gen_len, 64);
  EXPECT_EQ(w.requests, 100);
  ASSERT_EQ(w.mix.size(), 4u);
  EXPECT_EQ(w.mix[0].prompt_len, 124);  // the 25 shortest: 100..124
  EXPECT_EQ(w.mix[0].count, 25);
  EXPECT_EQ(w.mix[3].prompt_len, 2000);  // the last 25 hold the 10 long ones
  EXPECT_EQ(w.mix[3].gen_len, 64);
  EXPECT_TRUE(check_workload(w).is_ok());
  EXPECT_TRUE(workload_from_lengths({{512, 32}, {512, 32}}, 4).mix.empty());  // one length: plain
}

// Continuous batching: a bucket runs count / block blocks at its mean generation, and every
// refill (each time ceil(sqrt(2 / mean) x block) slots have emptied) costs a decode step more.
TEST(CostModelCalls, AContinuousJobIsItsRequestsMeanLengthsPlusItsRefills) {
  std::vector<std::pair<int64_t, int64_t>> lengths;
  for (int i = 0; i < 150; ++i) lengths.push_back({128, 16});
  for (int i = 0; i < 150; ++i) lengths.push_back({128, 112});  // mean 64, longest 112
  const Workload w = workload_from_lengths(lengths, 1, /*continuous=*/true);
  EXPECT_TRUE(w.continuous);
  EXPECT_EQ(w.gen_len, 112);  // memory for the longest
  ASSERT_EQ(w.mix.size(), 1u);  // one bucket, at the mean
  EXPECT_EQ(w.mix[0].gen_len, 64);
  EXPECT_TRUE(check_workload(w).is_ok());
  EXPECT_TRUE(workload_from_lengths(lengths, 1).mix.empty());  // fixed blocks: the longest, plain

  const auto hw = hardware("h100-test-host");
  const auto spec = spec_of("llama-3-8b");
  const BatchShape b{16, 2};  // 32 a block
  const auto f = at(0.5, 0.5, 0, 1, 0, 0, 1);
  const auto job = build_job_model(spec, w, hw, b, {});
  // Its KV is paged: a GPU batch's 16 slots of 240 positions hold 16 x 240 / (128 + 64 + 15) =
  // 18.5 sequences of the mean length (half a page of 240 / 8 added), 36 a block.
  EXPECT_EQ(paged_batch_size(w, 16), 18);
  const BatchShape paged{18, 2};
  // sqrt(2 / 64) = 0.177 of 36 slots is 6.4: a refill each time 7 requests have finished.
  EXPECT_DOUBLE_EQ(job.refills, 300.0 / 7);
  // With attention on the GPU the joining prompts ride in decode steps: no refill steps.
  Choices gpu_attention;
  gpu_attention.attention = Attention::kGpu;
  EXPECT_DOUBLE_EQ(build_job_model(spec, w, hw, b, gpu_attention).refills, 0.0);
  const auto at_mean = predict(build_cost_model(spec, {128, 64, 0}, hw, paged, {}), f, {});
  const auto p = predict(job, f, w);
  EXPECT_NEAR(p.job_s, 300.0 / 36 * at_mean.block_s + 300.0 / 7 * at_mean.decode_step_s, 1e-9 * p.job_s);
  // Fixed blocks of these requests run each block to its longest answer.
  const auto longest = predict(build_cost_model(spec, {128, 112, 0}, hw, b, {}), f, {});
  EXPECT_LT(p.job_s, 0.75 * 10 * longest.block_s);

  // Buckets by prompt length, each at its own mean: 150 x 16 and 150 x 112 here. The sequences
  // running are mostly the long ones (each weighs by the steps it runs): (150 x 16 x 144 + 150 x
  // 112 x 240) / (150 x 128) = 228 + 15 positions, so no more than the 16 slots hold.
  const Workload two = workload_from_lengths(lengths, 4, true);
  ASSERT_EQ(two.mix.size(), 2u);
  EXPECT_EQ(two.mix[0].gen_len, 16);
  EXPECT_EQ(two.mix[1].gen_len, 112);
  EXPECT_EQ(paged_batch_size(two, 16), 16);
  // Short answers beside one long one fill up to 4 x gbs (16 x 1008 / (8 + 14 + 32)); fixed
  // blocks keep gbs.
  std::vector<std::pair<int64_t, int64_t>> short_ones(100, {8, 4});
  short_ones.push_back({8, 1000});
  EXPECT_EQ(paged_batch_size(workload_from_lengths(short_ones, 1, true), 16), 64);
  EXPECT_EQ(paged_batch_size(workload_from_lengths(short_ones, 1, false), 16), 16);
  const auto short_block = predict(build_cost_model(spec, {128, 16, 0}, hw, b, {}), f, {});
  const auto p2 = predict(build_job_model(spec, two, hw, b, {}), f, two);
  EXPECT_NEAR(p2.job_s,
              150.0 / 32 * (short_block.block_s + longest.block_s) +
                  300.0 / 6 * (short_block.decode_step_s + longest.decode_step_s) / 2,
              1e-9 * p2.job_s);

  // A policy file keeps it.
  Policy pol;
  pol.workload = w;
  pol.batch = b;
  pol.fractions = f;
  auto back = parse_policy(policy_to_json(pol), "policy.json");
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_TRUE(back->workload.continuous);
  EXPECT_EQ(back->workload.mix[0].gen_len, 64);
}

// A continuous job ends no sooner than its longest answer: one request of 1000 tokens among 63 of
// 8 starts in the first prompt step and takes 999 decode steps more, the later ones with few
// sequences left, each no cheaper than a step of one GPU batch.
TEST(CostModelCalls, AContinuousJobLastsAtLeastItsLongestAnswer) {
  std::vector<std::pair<int64_t, int64_t>> lengths(63, {128, 8});
  lengths.push_back({128, 1000});
  const Workload w = workload_from_lengths(lengths, 1, /*continuous=*/true);
  ASSERT_EQ(w.requests, 64);
  ASSERT_EQ(w.gen_len, 1000);
  const auto hw = hardware("h100-test-host");
  const auto spec = spec_of("llama-3-8b");
  const BatchShape b{16, 2};
  const auto f = at(0.5, 0.5, 0, 1, 0, 0, 1);
  const auto job = build_job_model(spec, w, hw, b, {});
  ASSERT_TRUE(job.tail.has_value());
  const auto one_batch = predict(build_cost_model(spec, {128, 1000, 0}, hw, BatchShape{16, 1}, {}), f, {});
  const auto p = predict(job, f, w);
  EXPECT_NEAR(p.job_s, p.prefill_s + 999 * one_batch.decode_step_s, 1e-9 * p.job_s);
  // The requests' mean lengths alone (two blocks of 24 steps and the refills) say far less.
  const auto at_mean = predict(build_cost_model(spec, {128, w.mix[0].gen_len, 0}, hw, b, {}), f, {});
  EXPECT_LT(2 * at_mean.block_s + job.refills * at_mean.decode_step_s, 0.2 * p.job_s);
  EXPECT_NEAR(p.tokens_per_s, (63.0 * 8 + 1000) / p.job_s, 0.05 * p.tokens_per_s);  // the mean rounded up
  // Without a request count (tokens/s of an endless job) there is no longest answer.
  Workload endless = w;
  endless.requests = 0;
  for (auto& bucket : endless.mix) bucket.count = 1;
  EXPECT_FALSE(build_job_model(spec, endless, hw, b, {}).tail.has_value());
}

}  // namespace
}  // namespace strata::planner
