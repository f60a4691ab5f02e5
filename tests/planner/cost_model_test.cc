#include "planner/cost_model.h"

#include <gtest/gtest.h>

#include "common/units.h"
#include "planner/search.h"
#include "planner_test_util.h"

namespace strata::planner {
namespace {

using testing::hardware;
using testing::round_machine;
using testing::spec_of;

// opt-1.3b by hand: hidden 2048, ffn 8192, 24 layers, vocab 50272, head tied to the embedding.
constexpr double kLayerBytes = 2.0 * (4 * 2048.0 * 2048 + 2 * 2048.0 * 8192 + 4 * 2048 + 8192 + 2048 + 4 * 2048);
constexpr double kHeadBytes = 2.0 * (50272.0 * 2048 + 2 * 2048);  // embedding table + final norm
constexpr double kLayerGemm = 4 * 2048.0 * 2048 + 2 * 2048.0 * 8192;
constexpr double kHeadGemm = 50272.0 * 2048;

Fractions at(double wg, double wc, double wd, double cg, double cc, double cd, double hg) {
  return {wg, wc, wd, cg, cc, cd, hg, 1 - hg};
}

TEST(CostModel, StreamingWeightsCostTheirBytesOverPcie) {
  auto spec = spec_of("opt-1.3b");
  EXPECT_EQ(static_cast<double>(spec.layer_bytes(Compression::kNone)), kLayerBytes);
  EXPECT_EQ(static_cast<double>(spec.head_bytes(Compression::kNone)), kHeadBytes);
  auto m = build_cost_model(spec, {100, 20, 0}, round_machine(), {8, 1}, {});
  const double per_layer = kLayerBytes + kHeadBytes / 24;  // the head streams like one more layer
  auto f = at(0, 1, 0, 1, 0, 0, 1);
  EXPECT_NEAR(m.decode.seconds[kH2d].eval(f), per_layer / 10e9, 1e-12);
  EXPECT_NEAR(m.prefill.seconds[kH2d].eval(f), per_layer / 10e9, 1e-12);
  EXPECT_EQ(m.decode.seconds[kDiskRead].eval(f), 0);
  // From disk: the same bytes cross PCIe and are read at 2 GB/s first.
  auto d = at(0, 0, 1, 1, 0, 0, 1);
  EXPECT_NEAR(m.decode.seconds[kDiskRead].eval(d), per_layer / 2e9, 1e-12);
  EXPECT_NEAR(m.decode.seconds[kDram].eval(d), 2 * per_layer / 100e9, 1e-12);
}

TEST(CostModel, ComputeTimesAreFlopsOverRates) {
  auto spec = spec_of("opt-1.3b");
  const double B = 8, s = 100, n = 20, ctx = s + n / 2;
  auto m = build_cost_model(spec, {100, 20, 0}, round_machine(), {8, 1}, {});
  auto gpu_kv = at(1, 0, 0, 1, 0, 0, 1);
  // Prefill: 2 FLOPs per weight per token, the head for the last token, causal attention.
  const double prefill = (2 * B * s * kLayerGemm + 2 * B * kHeadGemm / 24 + 2 * B * s * s * 2048) / 100e12;
  EXPECT_NEAR(m.prefill.seconds[kGpuCompute].eval(gpu_kv), prefill, 1e-12);
  // Decode: 8 rows are memory bound (reading 100.7 MB at 1000 GB/s beats 806 MFLOP at 50 TFLOP/s),
  // and attention reads the KV from HBM.
  const double kv_read = B * ctx * 2 * 2048 * 2;
  const double decode = std::max(2 * B * kLayerGemm / 50e12, kLayerBytes / 1000e9) +
                        std::max(2 * B * kHeadGemm / 50e12, kHeadBytes / 1000e9) / 24 + kv_read / 1000e9;
  EXPECT_NEAR(m.decode.seconds[kGpuCompute].eval(gpu_kv), decode, 1e-12);
  // CPU attention over host KV: 4 FLOPs per query element per position at 100 GFLOP/s; the
  // queries go down and the outputs and new KV come back over PCIe; DRAM serves the KV reads.
  auto cpu_kv = at(1, 0, 0, 0, 1, 0, 1);
  EXPECT_NEAR(m.decode.seconds[kCpuCompute].eval(cpu_kv), 4 * B * ctx * 2048 / 100e9, 1e-12);
  EXPECT_NEAR(m.decode.seconds[kH2d].eval(cpu_kv), B * 2048 * 2 / 10e9, 1e-12);
  EXPECT_NEAR(m.decode.seconds[kD2h].eval(cpu_kv), (B * 2048 * 2 + B * 2 * 2048 * 2) / 10e9, 1e-12);
  // With one GPU batch nothing overlaps GPU and CPU work: the bound is their sum.
  auto t = evaluate_phase(m.decode, cpu_kv);
  const double gpu_only = m.decode.seconds[kGpuCompute].eval(cpu_kv);
  const double cpu_only = m.decode.seconds[kCpuCompute].eval(cpu_kv);
  EXPECT_NEAR(t.layer_s, gpu_only + cpu_only, 1e-12);
  EXPECT_EQ(t.bottleneck, cpu_only > gpu_only ? "cpu_compute" : "gpu_compute");
}

TEST(CostModel, GpuAttentionOverHostKvMovesTheKv) {
  auto spec = spec_of("opt-1.3b");
  Choices c;
  c.attention = Attention::kGpu;
  auto m = build_cost_model(spec, {100, 20, 0}, round_machine(), {8, 2}, c);
  const double kv_read = 16 * 110.0 * 2 * 2048 * 2;
  EXPECT_NEAR(m.decode.seconds[kH2d].eval(at(1, 0, 0, 0, 1, 0, 1)), kv_read / 10e9, 1e-12);
  EXPECT_EQ(m.decode.seconds[kCpuCompute].eval(at(1, 0, 0, 0, 1, 0, 1)), 0);
}

TEST(CostModel, GqaAndInt4ShrinkTheBytesMoved) {
  // llama-3-8b keeps 8 of 32 heads' KV: a quarter of llama-2-7b's per token and layer.
  EXPECT_EQ(spec_of("llama-3-8b").kv_bytes(1, Compression::kNone), 2u * 1024 * 2);
  EXPECT_EQ(spec_of("llama-2-7b").kv_bytes(1, Compression::kNone), 2u * 4096 * 2);
  // int4-g64: 4 bits plus an fp16 scale and minimum per 64 elements = 4.5 bits per element.
  EXPECT_EQ(spec_of("llama-3-8b").kv_bytes(1, Compression::kInt4), 2048u * 9 / 16);
  auto spec = spec_of("llama-2-7b");
  // Llama layers: q, k, v, o and three MLP matrices, all int4-eligible; two RMSNorm vectors stay fp16.
  const uint64_t matrices = 4ull * 4096 * 4096 + 3ull * 4096 * 11008;
  EXPECT_EQ(spec.layer_gemm_params, static_cast<int64_t>(matrices));
  EXPECT_EQ(spec.layer_bytes(Compression::kInt4), matrices * 9 / 16 + 2 * 4096 * 2);
  Choices packed;
  packed.weights = Compression::kInt4;
  auto hw = round_machine();
  auto plain = build_cost_model(spec, {512, 32, 0}, hw, {4, 4}, {});
  auto small = build_cost_model(spec, {512, 32, 0}, hw, {4, 4}, packed);
  auto f = at(0, 1, 0, 1, 0, 0, 1);
  const double ratio = small.decode.seconds[kH2d].eval(f) / plain.decode.seconds[kH2d].eval(f);
  EXPECT_NEAR(ratio, 0.28, 0.01);
  // ... and dequantising costs GPU time.
  EXPECT_GT(small.prefill.seconds[kGpuCompute].eval(f), plain.prefill.seconds[kGpuCompute].eval(f));
}

TEST(CostModel, DuplexLinksShareTheirBandwidth) {
  auto hw = round_machine();
  hw.links = {10, 10, 6};  // each direction gets 6 GB/s when both run
  auto m = build_cost_model(spec_of("opt-1.3b"), {100, 20, 0}, hw, {8, 1}, {});
  auto f = at(0, 1, 0, 0, 1, 0, 0);
  const double h2d = m.prefill.seconds[kH2d].eval(f) * 10e9, d2h = m.prefill.seconds[kD2h].eval(f) * 10e9;
  auto t = evaluate_phase(m.prefill, f);
  double duplex = 0;
  for (auto& [name, v] : t.bounds)
    if (name == "pcie_duplex") duplex = v;
  EXPECT_NEAR(duplex, (h2d + d2h) / 12e9, 1e-12);
}

// More memory or bandwidth never predicts a slower plan.
TEST(CostModel, MoreResourcesNeverPredictSlower) {
  for (const char* model : {"opt-30b", "llama-2-70b"}) {
    auto spec = spec_of(model);
    const Workload w{512, 32, 0};
    HardwareProfile hw = hardware("t4-flexgen");
    Budgets b{12 * kGiB, 64 * kGiB, 1000 * kGiB};
    auto base = plan_policy(spec, w, hw, b, {});
    ASSERT_TRUE(base.is_ok()) << base.status().to_string();
    double last = base->policy.predicted.tokens_per_s;
    for (uint64_t gpu : {15, 24, 40}) {
      b.gpu = gpu * kGiB;
      auto r = plan_policy(spec, w, hw, b, {});
      ASSERT_TRUE(r.is_ok());
      EXPECT_GE(r->policy.predicted.tokens_per_s, last * (1 - 1e-9)) << model << " gpu " << gpu;
      last = r->policy.predicted.tokens_per_s;
    }
    for (uint64_t cpu : {128, 200, 400}) {
      b.cpu = cpu * kGiB;
      auto r = plan_policy(spec, w, hw, b, {});
      ASSERT_TRUE(r.is_ok());
      EXPECT_GE(r->policy.predicted.tokens_per_s, last * (1 - 1e-9)) << model << " cpu " << cpu;
      last = r->policy.predicted.tokens_per_s;
    }
    for (double* bw : {&hw.links.h2d_gbps, &hw.disk.read_gbps, &hw.cpu.attention_gflops,
                       &hw.gpu.gemm_prefill_tflops, &hw.cpu.dram_gbps}) {
      *bw *= 2;
      hw.links.duplex_gbps = std::max(hw.links.duplex_gbps, hw.links.h2d_gbps);
      auto r = plan_policy(spec, w, hw, b, {});
      ASSERT_TRUE(r.is_ok());
      EXPECT_GE(r->policy.predicted.tokens_per_s, last * (1 - 1e-9)) << model;
      last = r->policy.predicted.tokens_per_s;
    }
  }
}

}  // namespace
}  // namespace strata::planner
