// The planner on mixture-of-experts models: a sparse layer holds (and streams) every expert, but a
// token's GEMMs run only experts_per_token of them, each expert over its share of a call's rows;
// a model whose layers differ is refused. Numbers worked out by hand on a tiny Mixtral.
#include <gtest/gtest.h>

#include <cmath>

#include <nlohmann/json.hpp>

#include "model/config.h"
#include "planner/cost_model.h"
#include "planner/memory_plan.h"
#include "planner/search.h"
#include "planner_test_util.h"

namespace strata::planner {
namespace {

using testing::round_machine;
using testing::spec_of;

// A tiny Mixtral: hidden 64, 4 query heads and 2 kv heads of 16, 4 experts of width 32, top-2,
// 2 layers, vocab 128, untied head.
model::ModelConfig tiny_moe() {
  const nlohmann::json j = {{"model_type", "mixtral"},       {"vocab_size", 128},
                            {"hidden_size", 64},             {"intermediate_size", 32},
                            {"num_hidden_layers", 2},        {"num_attention_heads", 4},
                            {"num_key_value_heads", 2},      {"max_position_embeddings", 256},
                            {"num_local_experts", 4},        {"num_experts_per_tok", 2},
                            {"tie_word_embeddings", false}};
  auto c = model::parse_config(j, "tiny-moe");
  STRATA_CHECK(c.is_ok(), c.status().to_string());
  return *c;
}

// The same attention with a dense SwiGLU MLP of width 64: two experts' worth of parameters, the
// router's 256 less.
model::ModelConfig tiny_dense() {
  const nlohmann::json j = {{"model_type", "mistral"},       {"vocab_size", 128},
                            {"hidden_size", 64},             {"intermediate_size", 64},
                            {"num_hidden_layers", 2},        {"num_attention_heads", 4},
                            {"num_key_value_heads", 2},      {"max_position_embeddings", 256},
                            {"tie_word_embeddings", false}};
  auto c = model::parse_config(j, "tiny-dense");
  STRATA_CHECK(c.is_ok(), c.status().to_string());
  return *c;
}

ModelSpec spec(const model::ModelConfig& c) { return make_model_spec(c, c.model_type).value(); }

Fractions at(double wg, double wc, double wd, double cg, double cc, double cd, double hg) {
  return {wg, wc, wd, cg, cc, cd, hg, 1 - hg};
}

// By hand, per layer: attn_norm 64, q [64, 64] 4096, k and v [32, 64] 2048 each, o [64, 64] 4096,
// mlp_norm 64, router [4, 64] 256, and per expert gate and up [32, 64] 2048 each and down
// [64, 32] 2048: 6144 an expert, 24576 the four. 37248 elements, 74496 bytes in fp16.
TEST(MoeSpec, ALayerHoldsEveryExpertButATokenRunsTwo) {
  const ModelSpec s = spec(tiny_moe());
  EXPECT_TRUE(s.is_moe());
  EXPECT_EQ(s.num_experts, 4);
  EXPECT_EQ(s.experts_per_token, 2);
  EXPECT_EQ(s.expert_ffn, 32);
  EXPECT_EQ(s.layer_tensors.size(), 7u + 4 * 3);
  EXPECT_EQ(s.layer_bytes(Compression::kNone), 74496u);
  EXPECT_EQ(s.expert_bytes(Compression::kNone), 12288u);
  // Every row: q, k, v, o and the router (4096 + 2048 + 2048 + 4096 + 256); a token also runs
  // two experts of 6144.
  EXPECT_EQ(s.layer_dense_gemm_params, 12544);
  EXPECT_EQ(s.expert_gemm_params, 6144);
  EXPECT_EQ(s.layer_gemm_params, 12544 + 2 * 6144);
  EXPECT_EQ(s.head_gemm_params, 128 * 64);
  // int4-g64: q and o 64 x 32 B of codes + 64 x 4 B of scale and minimum = 2304 B each, k, v,
  // gate and up 1152 B each; the router stays fp16 (512 B), and so does down, whose input (32)
  // is not a multiple of 64 (4096 B). An expert: 1152 + 1152 + 4096 = 6400 B; the layer:
  // norms 256 + attention 6912 + router 512 + experts 25600 = 33280 B.
  EXPECT_EQ(s.expert_bytes(Compression::kInt4), 6400u);
  EXPECT_EQ(s.layer_bytes(Compression::kInt4), 33280u);
  EXPECT_EQ(s.expert_compressible_elements(), 4096);
  EXPECT_EQ(s.layer_compressible_elements(), 12288 + 4 * 4096);
  for (const TensorSpec& t : s.layer_tensors) {
    EXPECT_EQ(t.expert, t.name.find(".experts.") != std::string::npos) << t.name;
    if (t.name == "layers.0.router.weight") {
      EXPECT_FALSE(t.compressible);
    }
  }
}

TEST(MoeSpec, PublishedModelsTokenAndLayerParameters) {
  const ModelSpec mixtral = spec_of("mixtral-8x7b");
  // q, o 4096^2 and k, v 1024 x 4096 (41,943,040) plus the router 8 x 4096; an expert 3 x 14336 x 4096.
  EXPECT_EQ(mixtral.layer_dense_gemm_params, 41943040 + 32768);
  EXPECT_EQ(mixtral.expert_gemm_params, 176160768);
  EXPECT_EQ(mixtral.layer_gemm_params, 41975808 + 2 * 176160768);
  // Streamed per layer: all 8 experts, 1,451,270,144 parameters in fp16.
  EXPECT_EQ(mixtral.layer_bytes(Compression::kNone), 2u * 1451270144);
  // A token's parameters: 32 layers of 394,297,344, the head and the embedding row: 12.9 B, as
  // published ("12.9B active").
  const double active = 32.0 * 394297344 + 2.0 * 32000 * 4096;
  EXPECT_NEAR(active, 12.9e9, 0.01 * 12.9e9);

  const ModelSpec a3b = spec_of("qwen3-30b-a3b");
  // q 4096 x 2048, o 2048 x 4096, k, v 512 x 2048 (18,874,368) plus the router 128 x 2048; an
  // expert 3 x 768 x 2048; eight a token.
  EXPECT_EQ(a3b.layer_dense_gemm_params, 18874368 + 262144);
  EXPECT_EQ(a3b.expert_gemm_params, 4718592);
  EXPECT_EQ(a3b.layer_gemm_params, 19136512 + 8 * 4718592);
  EXPECT_EQ(a3b.num_experts, 128);
  EXPECT_EQ(a3b.expert_ffn, 768);
}

// Dense models have no experts and the same work per token as before.
TEST(MoeSpec, ADenseModelHasNoExperts) {
  for (const char* shape : {"opt-1.3b", "llama-3-8b", "qwen3-8b"}) {
    const ModelSpec s = spec_of(shape);
    EXPECT_FALSE(s.is_moe()) << shape;
    EXPECT_EQ(s.expert_gemm_params, 0) << shape;
    EXPECT_EQ(s.expert_bytes(Compression::kNone), 0u) << shape;
    EXPECT_EQ(s.layer_dense_gemm_params, s.layer_gemm_params) << shape;
    for (const TensorSpec& t : s.layer_tensors) EXPECT_FALSE(t.expert) << t.name;
  }
}

TEST(MoeSpec, LayersThatDifferAreRefusedNamingTheFields) {
  nlohmann::json j = {{"model_type", "qwen3_moe"},   {"vocab_size", 128},          {"hidden_size", 64},
                      {"intermediate_size", 96},     {"moe_intermediate_size", 32}, {"num_hidden_layers", 4},
                      {"num_attention_heads", 4},    {"num_key_value_heads", 2},    {"max_position_embeddings", 256},
                      {"num_experts", 4},            {"num_experts_per_tok", 2},    {"mlp_only_layers", {0}}};
  const model::ModelConfig dense_first = *model::parse_config(j, "x");
  ASSERT_FALSE(dense_first.uniform_layers());
  auto r = make_model_spec(dense_first, "qwen3-moe-tiny");
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnsupported);
  const std::string m = r.status().message();
  for (const char* want : {"qwen3-moe-tiny", "1 of 4 layers (0)", "mlp_only_layers [0]", "--policy none"})
    EXPECT_NE(m.find(want), std::string::npos) << want << " in: " << m;

  // Every second layer sparse: layers 0 and 2 are dense.
  j.erase("mlp_only_layers");
  j["decoder_sparse_step"] = 2;
  r = make_model_spec(*model::parse_config(j, "x"), "step-2");
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("2 of 4 layers (0, 2)"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("decoder_sparse_step 2"), std::string::npos) << r.status().message();

  // Published Qwen3-MoE models are sparse throughout.
  j["decoder_sparse_step"] = 1;
  j["mlp_only_layers"] = nlohmann::json::array();
  EXPECT_TRUE(make_model_spec(*model::parse_config(j, "x"), "uniform").is_ok());
}

// The machine for compute times: the round machine with HBM so fast that GEMMs are bound by their
// FLOPs alone (and attention's KV reads cost nothing).
HardwareProfile flop_bound() {
  HardwareProfile hw = round_machine();
  hw.gpu.hbm_gbps = 1e12;
  return hw;
}

constexpr double B = 8, s = 16;  // one GPU batch of 8 sequences, 16-token prompts
const Workload kWork{16, 4, 0};
const auto kGpu = at(1, 0, 0, 1, 0, 0, 1);  // everything on the GPU

double gpu_s(const PhaseModel& p, const Fractions& f = kGpu) { return p.seconds[kGpuCompute].eval(f); }

// Scalar rates price a FLOP alike at any number of rows: a sparse layer costs what a dense layer
// of its activated parameters does (here the dense MLP lacks only the router's 256).
TEST(MoeCost, WithScalarRatesALayerCostsItsActivatedParameters) {
  const HardwareProfile hw = flop_bound();
  const auto moe = build_cost_model(spec(tiny_moe()), kWork, hw, {8, 1}, {});
  const auto dense = build_cost_model(spec(tiny_dense()), kWork, hw, {8, 1}, {});
  // Prefill at 100 TFLOP/s: 2 x 128 rows x 24832 parameters, the head's last token (2 x 8 x 8192
  // over 2 layers) and causal attention (2 x 8 x 16^2 x 64): 6,684,672 FLOP.
  EXPECT_NEAR(gpu_s(moe.prefill), (2 * B * s * 24832 + 2 * B * 8192 / 2 + 2 * B * s * s * 64) / 100e12, 1e-20);
  EXPECT_NEAR(gpu_s(moe.prefill) - gpu_s(dense.prefill), 2 * B * s * 256 / 100e12, 1e-20);
  // Decode at 50 TFLOP/s: the experts' rows add up to 8 x 2, so 2 x 8 x 24832 FLOP again.
  EXPECT_NEAR(gpu_s(moe.decode) - gpu_s(dense.decode), 2 * B * 256 / 50e12, 1e-20);
}

// With a rate curve each expert runs at the rate of its own rows. Decode, 8 rows: each of the 4
// experts is idle with odds (1 - 2/4)^8, so 4 x (1 - 1/256) = 3.984375 wake, with 16 / 3.984375 =
// 4.0157 rows each. The curve {1 row: 1, 1000 rows: 100 TFLOP/s} gives 8 rows 30.802 TFLOP/s
// (1 + 99 log 8 / log 1000) and 4.0157 rows 20.924 TFLOP/s.
TEST(MoeCost, WithARateCurveExpertsRunAtTheRateOfTheirShareOfTheRows) {
  HardwareProfile hw = flop_bound();
  hw.gpu.linear_fp16.points = {{1, 1}, {1000, 100}};
  const auto moe = build_cost_model(spec(tiny_moe()), kWork, hw, {8, 1}, {});
  const auto dense = build_cost_model(spec(tiny_dense()), kWork, hw, {8, 1}, {});
  const double woken = 3.984375, m = 16 / woken;
  EXPECT_NEAR(m, 4.0157, 1e-4);
  const double r8 = (1 + 99 * std::log(8.0) / std::log(1000.0)) * 1e12;
  const double rm = (1 + 99 * std::log(m) / std::log(1000.0)) * 1e12;
  EXPECT_NEAR(r8, 30.802e12, 1e9);
  EXPECT_NEAR(rm, 20.924e12, 1e9);
  // The sparse layer: q, k, v, o and the router over 8 rows, the experts 16 rows in all at the
  // slower rate; the dense layer: its 24576 parameters over 8 rows. The rest (the head,
  // attention) is the same.
  const double sparse = 2 * B * 12544 / r8 + 2 * 16 * 6144 / rm;
  const double plain = 2 * B * 24576 / r8;
  EXPECT_NEAR(gpu_s(moe.decode) - gpu_s(dense.decode), sparse - plain, 1e-18);
  EXPECT_GT(sparse, plain * 1.2);  // 1.59e-8 s against 1.28e-8 s
}

// Memory bound (the round machine's 1000 GB/s): one row wakes two experts, so the layer reads the
// dense part and two experts from HBM, but the engine streams all four over PCIe.
TEST(MoeCost, OneRowReadsTwoExpertsButStreamsAll) {
  const ModelSpec moe = spec(tiny_moe());
  const auto m = build_cost_model(moe, kWork, round_machine(), {1, 1}, {});
  // Dense part: 74496 - 4 x 12288 = 25344 B, two experts 24576 B; the head max(2 x 8192 FLOP at
  // 50 TFLOP/s, 16512 B) over 2 layers; the KV read: 1 sequence x 18 positions (16 + 4 / 2) x 128 B.
  const double expected = (25344 + 24576) / 1000e9 + 16512 / 1000e9 / 2 + 18 * 128 / 1000e9;
  EXPECT_NEAR(gpu_s(m.decode), expected, 1e-20);  // 6.8736e-8 s
  // Streamed: the whole layer (74496 B) and half the head (16512 / 2 B) at 10 GB/s.
  EXPECT_NEAR(m.decode.seconds[kH2d].eval(at(0, 1, 0, 1, 0, 0, 1)), (74496 + 16512 / 2.0) / 10e9, 1e-20);

  // int4 weights: the dense part 33280 - 4 x 6400 = 7680 B and two experts 12800 B; the head's
  // 4608 B of lm_head and 128 B of norm; dequantising q, k, v, o (12288) and two experts' gate and
  // up (8192) elements at 10 G elements/s.
  HardwareProfile hw = round_machine();
  hw.gpu.dequant_gelems = 10;
  Choices int4;
  int4.weights = Compression::kInt4;
  const auto q = build_cost_model(moe, kWork, hw, {1, 1}, int4);
  const double expected4 = (7680 + 12800) / 1000e9 + 4736 / 1000e9 / 2 + 18 * 128 / 1000e9 + 20480 / 10e9;
  EXPECT_NEAR(gpu_s(q.decode), expected4, 1e-20);
}

// The MLP's working buffers are an expert's: the router logits, an expert's rows and its gate and
// up, each sized for every row of a prompt-sized batch.
TEST(MoeMemory, WorkingBuffersAreAnExpertsOverEveryRow) {
  const ModelSpec moe = spec(tiny_moe());
  const Placement p = realise(moe, kWork, {8, 1}, {}, kGpu);
  const MemoryPlan plan = plan_memory(moe, p);
  auto bytes = [&](const std::string& name) {
    for (const Buffer& b : plan.buffers)
      if (b.name == name) return b.bytes();
    return uint64_t{0};
  };
  const uint64_t T = 8 * 16;  // rows of a prefill call
  EXPECT_EQ(bytes("work.router"), T * 4 * 2);
  EXPECT_EQ(bytes("work.expert_rows"), T * 64 * 2);
  EXPECT_EQ(bytes("work.mlp"), 2 * T * 32 * 2);
  // The LP's estimate agrees with the exact plan at this corner.
  const auto est = memory_affine(moe, kWork, {8, 1}, {});
  for (int t = 0; t < kNumTiers; ++t)
    EXPECT_NEAR(est[t].eval(kGpu), static_cast<double>(plan.total(static_cast<Tier>(t))), 1.0) << t;
}

// Mixtral on a 24 GiB GPU with 100 GiB of DRAM: the weights (87 GiB) stream from DRAM, and the
// plan fits its budgets.
TEST(MoePlan, Mixtral8x7bPlansOnA24GibGpu) {
  const ModelSpec mixtral = spec_of("mixtral-8x7b");
  const Budgets b{24 * kGiB, 100 * kGiB, 0};
  auto r = plan_policy(mixtral, {512, 256, 0}, testing::hardware("rtx-4090"), b, {});
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  const Policy& p = r->policy;
  EXPECT_GT(p.fractions[kWc], 0.5);
  EXPECT_LE(p.predicted.bytes[0], b.gpu);
  EXPECT_LE(p.predicted.bytes[1], b.cpu);
  EXPECT_GT(p.predicted.tokens_per_s, 0);
}

}  // namespace
}  // namespace strata::planner
