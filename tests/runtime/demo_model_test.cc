// The demo model in models/demo (bf16 weights) against the greedy continuations transformers
// computed from the same weights in fp32 (models/demo/reference.json).
#include <fstream>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "runtime/context.h"
#include "runtime/generator.h"
#include "runtime/load_model.h"
#include "testing/test_data.h"

namespace strata::runtime {
namespace {

TEST(DemoModel, GreedyContinuationsMatchTransformers) {
  const auto dir = testing::test_data_dir() / ".." / ".." / "models" / "demo";
  auto ctx = make_context({});
  ASSERT_TRUE(ctx.is_ok());
  auto model = load_model_dir(**ctx, dir);
  ASSERT_TRUE(model.is_ok()) << model.status().to_string();
  std::ifstream in(dir / "reference.json");
  auto ref = nlohmann::json::parse(in)["prompts"];
  std::vector<GenerationRequest> reqs;
  for (const auto& p : ref) {
    GenerationRequest r;
    r.prompt = p["prompt_ids"].get<std::vector<int32_t>>();
    r.max_new_tokens = static_cast<int32_t>(p["greedy_ids"].size());
    r.ignore_eos = true;
    reqs.push_back(r);
  }
  Generator gen(**model);
  auto out = gen.generate(reqs);
  ASSERT_TRUE(out.is_ok()) << out.status().to_string();
  // bf16 activations in strata's matmuls against fp32 in the reference: compare up to the first
  // step whose top-2 margin is a near-tie (< 0.05 of a logit).
  size_t compared = 0;
  for (size_t i = 0; i < reqs.size(); ++i) {
    auto want = ref[i]["greedy_ids"].get<std::vector<int32_t>>();
    auto margins = ref[i]["top2_margins"].get<std::vector<float>>();
    size_t n = 0;
    while (n < want.size() && margins[n] >= 0.05f) ++n;
    want.resize(n);
    std::vector<int32_t> got((*out)[i].tokens.begin(), (*out)[i].tokens.begin() + n);
    EXPECT_EQ(got, want) << ref[i]["prompt"];
    compared += n;
  }
  EXPECT_GE(compared, 64u);
}

}  // namespace
}  // namespace strata::runtime
