#include "planner/memory_plan.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "common/units.h"

#include "planner/search.h"
#include "planner_test_util.h"

namespace strata::planner {
namespace {

using testing::spec_of;

// llama-3-8b written out by hand: hidden 4096, 32 query and 8 kv heads of 128, ffn 14336,
// 32 layers, vocab 128256, untied head; 8,030,261,248 parameters (the published count).
constexpr uint64_t h = 4096, q = 4096, kv = 1024, ffn = 14336, L = 32, V = 128256, heads = 32;
constexpr uint64_t kLayer = 2 * (2 * h * q + 2 * h * kv + 3 * h * ffn + 2 * h);
constexpr uint64_t kHead = 2 * (V * h + h);  // lm_head and the final norm
constexpr uint64_t kWeights = 2 * 8'030'261'248ull;
constexpr uint64_t gbs = 4, nb = 2, s = 128, n = 32;
constexpr uint64_t T = gbs * s;
constexpr uint64_t kUnit = gbs * (s + n) * 2 * kv * 2;  // fp16 K and V of one batch, one layer
constexpr uint64_t kHidden = T * h * 2;
// A step's logits are every sequence's of the block: fp32 on the host; on the GPU fp16, the fp32
// copy the sampling statistics read, and their sort buffers (keys, values, ids and scratch).
constexpr uint64_t kBlock = gbs * nb;
constexpr uint64_t kLogits = kBlock * V * 4;
constexpr uint64_t kGpuLogits = kBlock * V * 2 + kBlock * V * 4 + kBlock * V * 20;
// Residual, normed input, the two projection outputs; q and the attention output; new k and v;
// gate and up; the logits; the GEMM workspace and the CUDA context.
constexpr uint64_t kWorking = T * h * 2 * 4 + T * q * 2 * 2 + T * kv * 2 * 2 + T * ffn * 2 * 2 +
                              kGpuLogits + (64ull << 20) + (640ull << 20);

std::array<uint64_t, 3> totals(Fractions f, Attention att) {
  auto spec = spec_of("llama-3-8b");
  Choices c;
  c.attention = att;
  auto p = realise(spec, {static_cast<int64_t>(s), static_cast<int64_t>(n), 0},
                   {static_cast<int64_t>(gbs), static_cast<int64_t>(nb)}, c, f);
  auto plan = plan_memory(spec, p);
  // The LP's affine estimate is exact at the corners.
  auto est = memory_affine(spec, p.workload, p.batch, c);
  auto exact = plan.totals();
  for (int t = 0; t < 3; ++t) EXPECT_NEAR(est[t].eval(f), static_cast<double>(exact[t]), 1.0) << t;
  return exact;
}

TEST(MemoryPlan, TheLayerAndTheHeadAreWhatWeSumByHand) {
  auto spec = spec_of("llama-3-8b");
  EXPECT_EQ(spec.layer_bytes(Compression::kNone), kLayer);
  EXPECT_EQ(spec.head_bytes(Compression::kNone), kHead);
  EXPECT_EQ(spec.total_weight_bytes(Compression::kNone), kWeights);
}

TEST(MemoryPlan, AllOnTheGpu) {
  auto t = totals({1, 0, 0, 1, 0, 0, 1, 0}, Attention::kGpu);
  EXPECT_EQ(t[0], kWeights + L * nb * kUnit + nb * kHidden + kWorking);
  EXPECT_EQ(t[1], 2 * kLogits);
  EXPECT_EQ(t[2], 0u);
}

TEST(MemoryPlan, AllOnTheCpuWithCpuAttention) {
  auto t = totals({0, 1, 0, 0, 1, 0, 0, 1}, Attention::kCpu);
  const uint64_t prompt_kv = T * 2 * kv * 2;  // staging for a batch's prompt KV leaving the GPU
  // Three weight slots: the layer computing and two loading ahead.
  EXPECT_EQ(t[0], 3 * std::max(kLayer, kHead) + 2 * prompt_kv + 2 * kHidden + kWorking);
  // Queries, outputs and new keys and values for the 4 gbs sequences a decode step of paged KV
  // may hold; the scores for gbs.
  const uint64_t S = 4 * gbs;
  const uint64_t cpu_attention = 2 * S * q * 2 + 2 * S * q * 2 + 2 * S * 2 * kv * 2 + gbs * heads * (s + n) * 4;
  EXPECT_EQ(t[1], kWeights + L * nb * kUnit + nb * kHidden + cpu_attention + 2 * kLogits);
  EXPECT_EQ(t[2], 0u);
}

TEST(MemoryPlan, AllOnDiskWithGpuAttention) {
  auto t = totals({0, 0, 1, 0, 0, 1, 0, 1}, Attention::kGpu);
  EXPECT_EQ(t[0], 3 * std::max(kLayer, kHead) + 2 * kUnit + 2 * kHidden + kWorking);
  EXPECT_EQ(t[1], 2 * std::max(kLayer, kHead) + 3 * kUnit + nb * kHidden + 2 * kLogits);
  EXPECT_EQ(t[2], kWeights + L * nb * kUnit);
}

TEST(MemoryPlan, MixedPlacementsAddUpTensorByTensor) {
  // An independent sum over the realised placement: every tensor and KV unit once, on its tier.
  auto spec = spec_of("opt-30b");
  for (Fractions f : {Fractions{0.3, 0.5, 0.2, 0.1, 0.6, 0.3, 0.5, 0.5},
                      Fractions{0.05, 0.95, 0, 0, 1, 0, 1, 0}, Fractions{0, 0.4, 0.6, 0, 0, 1, 0, 1}}) {
    Choices c;
    auto p = realise(spec, {512, 32, 0}, {16, 6}, c, f);
    std::array<uint64_t, 3> resident{};
    for (size_t i = 0; i < p.layer_weights.size(); ++i)
      resident[static_cast<int>(p.layer_weights[i])] +=
          spec.layer_tensors[i % spec.layer_tensors.size()].bytes(Compression::kNone);
    for (size_t i = 0; i < p.other_weights.size(); ++i)
      resident[static_cast<int>(p.other_weights[i])] += spec.other_tensors[i].bytes(Compression::kNone);
    EXPECT_EQ(resident[0] + resident[1] + resident[2], spec.total_weight_bytes(Compression::kNone));
    const uint64_t unit = 16ull * (512 + 32) * 2 * 7168 * 2;
    for (Tier t : p.kv) resident[static_cast<int>(t)] += unit;
    auto plan = plan_memory(spec, p);
    uint64_t named[3] = {0, 0, 0};
    for (const auto& b : plan.buffers)
      if (b.name == "weights.resident" || b.name == "kv.resident") named[static_cast<int>(b.tier)] += b.bytes();
    for (int t = 0; t < 3; ++t) EXPECT_EQ(named[t], resident[t]) << t;
    // The realised fractions track the targets to within a tensor per layer.
    for (int i = 0; i < kNumFracs; ++i) EXPECT_NEAR(p.realised[i], f[i], 0.05) << i;
    // Three prefetch slots whenever anything is streamed.
    bool slots = false;
    for (const auto& b : plan.buffers) slots |= b.name == "weights.prefetch_slot" && b.count == 3;
    EXPECT_TRUE(slots);
  }
}

TEST(MemoryPlan, ThePlannedPolicyFitsItsBudgetsExactly) {
  auto spec = spec_of("llama-2-70b");
  auto hw = testing::hardware("a100-40gb");
  const Budgets b{38 * kGiB, 96 * kGiB, 300 * kGiB};
  auto r = plan_policy(spec, {256, 64, 0}, hw, b, {});
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_TRUE(check_memory(r->memory, b).is_ok());
  // The runtime re-derives the same buffers from the policy alone.
  auto again = plan_memory(spec, realise(spec, r->policy));
  EXPECT_EQ(again.totals(), r->memory.totals());
  EXPECT_EQ(again.buffers.size(), r->memory.buffers.size());
  Budgets tight = b;
  tight.gpu = r->memory.total(Tier::kGpu) - 1;
  auto over = check_memory(r->memory, tight);
  EXPECT_EQ(over.code(), StatusCode::kOutOfMemory);
  EXPECT_NE(over.message().find("gpu tier short by 1 B"), std::string::npos) << over.message();
}

}  // namespace
}  // namespace strata::planner
