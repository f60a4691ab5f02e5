#include "planner/footprint.h"

#include <gtest/gtest.h>

#include "common/check.h"
#include "model/shapes.h"

namespace strata::planner {
namespace {

ModelFootprint footprint(const char* shape) {
  auto cfg = model::named_shape(shape);
  STRATA_CHECK(cfg.is_ok(), cfg.status().to_string());
  return model_footprint(*cfg, DType::kF16, DType::kF16);
}

TEST(Footprint, Llama2_7bMatchesItsPublishedSize) {
  auto f = footprint("llama-2-7b");
  EXPECT_EQ(f.parameters, 6'738'415'616);  // the published parameter count
  EXPECT_EQ(f.total_weight_bytes, 2ull * 6'738'415'616);
  EXPECT_EQ(f.kv_bytes_per_token, 512u * 1024);  // the often-quoted 0.5 MiB per token in fp16
}

TEST(Footprint, GqaShrinksTheKvCache) {
  auto f = footprint("llama-3-8b");  // 8 kv heads of 32: 128 KiB per token in fp16
  EXPECT_EQ(f.kv_bytes_per_token, 128u * 1024);
  auto g = model_footprint(*model::named_shape("llama-3-8b"), DType::kBF16, DType::kF32);
  EXPECT_EQ(g.kv_bytes_per_token, 256u * 1024);
}

TEST(Footprint, LayersAndTheRestAddUp) {
  auto f = footprint("opt-30b");
  auto cfg = *model::named_shape("opt-30b");
  EXPECT_EQ(f.total_weight_bytes, f.layer_weight_bytes * cfg.num_layers + f.other_weight_bytes);
  EXPECT_EQ(f.total_weight_bytes, 2ull * static_cast<uint64_t>(f.parameters));
  // An OPT layer: 4 h^2 attention + 2 h*ffn MLP weights, 4h + ffn + h biases, 2 LayerNorms.
  const uint64_t h = 7168, ffn = 28672;
  EXPECT_EQ(f.layer_weight_bytes, 2 * (4 * h * h + 2 * h * ffn + 4 * h + ffn + h + 4 * h));
}

TEST(Footprint, AMixtureOfExpertsWithADenseLayerCountsEachLayerAsItIs) {
  auto cfg = *model::named_shape("qwen3-30b-a3b");
  auto sparse = model_footprint(cfg, DType::kF16, DType::kF16);
  EXPECT_EQ(sparse.parameters, 30'532'122'624);
  EXPECT_EQ(sparse.total_weight_bytes, 2ull * 30'532'122'624);
  // Layer 0 dense: its MLP is 3 x 2048 x 6144 = 37,748,736 weights in place of the router
  // (128 x 2048) and 128 experts of 3 x 2048 x 768: 604,241,920.
  cfg.dense_layers = {0};
  auto mixed = model_footprint(cfg, DType::kF16, DType::kF16);
  EXPECT_EQ(mixed.parameters, 30'532'122'624 - 604'241'920 + 37'748'736);
  EXPECT_EQ(mixed.total_weight_bytes, 2ull * static_cast<uint64_t>(mixed.parameters));
  EXPECT_EQ(mixed.layer_weight_bytes, sparse.layer_weight_bytes);  // the largest layer
}

}  // namespace
}  // namespace strata::planner
