#include "planner/policy.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace strata::planner {
namespace {

const char* kDesignExample = R"({
  "model": "opt-30b", "prompt_len": 512, "gen_len": 32,
  "gpu_batch_size": 32, "num_gpu_batches": 8,
  "weights":     {"gpu": 0.30, "cpu": 0.70, "disk": 0.0, "compression": "none"},
  "kv_cache":    {"gpu": 0.0,  "cpu": 1.0,  "disk": 0.0, "compression": "int4-g64", "attention": "cpu"},
  "activations": {"gpu": 1.0,  "cpu": 0.0},
  "predicted":   {"tokens_per_s": 0, "prefill_s": 0, "decode_step_s": 0, "bottleneck": "pcie_h2d",
                  "bytes": {"gpu": 0, "cpu": 0, "disk": 0}}
})";

TEST(Policy, ReadsTheDesignDocumentsExample) {
  auto p = parse_policy(nlohmann::json::parse(kDesignExample), "policy.json");
  ASSERT_TRUE(p.is_ok()) << p.status().to_string();
  EXPECT_EQ(p->model, "opt-30b");
  EXPECT_EQ(p->batch.block(), 256);
  EXPECT_DOUBLE_EQ(p->fractions[kWg], 0.3);
  EXPECT_EQ(p->choices.kv, Compression::kInt4);
  EXPECT_EQ(p->choices.weights, Compression::kNone);
  EXPECT_EQ(p->choices.attention, Attention::kCpu);
  EXPECT_EQ(p->predicted.bottleneck, "pcie_h2d");
  // And writes what it read.
  auto again = parse_policy(policy_to_json(*p), "again");
  ASSERT_TRUE(again.is_ok());
  EXPECT_EQ(again->fractions, p->fractions);
  EXPECT_EQ(again->batch.gpu_batch_size, 32);
}

TEST(Policy, BadFieldsAreNamed) {
  auto bad = [](const char* field, nlohmann::json value) {
    auto j = nlohmann::json::parse(kDesignExample);
    nlohmann::json* at = &j;
    std::string f = field;
    for (size_t dot; (dot = f.find('.')) != std::string::npos; f = f.substr(dot + 1)) at = &(*at)[f.substr(0, dot)];
    (*at)[f] = value;
    auto p = parse_policy(j, "p.json");
    EXPECT_FALSE(p.is_ok()) << field;
    return p.status().message();
  };
  EXPECT_NE(bad("weights.gpu", 0.5).find("p.json: weights: the fractions must add up to 1"), std::string::npos);
  EXPECT_NE(bad("kv_cache.compression", "int3").find("kv_cache.compression"), std::string::npos);
  EXPECT_NE(bad("kv_cache.attention", "tpu").find("kv_cache.attention"), std::string::npos);
  EXPECT_NE(bad("gpu_batch_size", 0).find("gpu_batch_size"), std::string::npos);
  EXPECT_NE(bad("activations.cpu", 1.5).find("activations.cpu"), std::string::npos);
  EXPECT_FALSE(parse_policy(nlohmann::json::array(), "p.json").is_ok());
}

}  // namespace
}  // namespace strata::planner
