// The demo model in models/demo (bf16 weights) against the greedy continuations transformers
// computed from the same weights in fp32 (models/demo/reference.json).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "runtime/context.h"
#include "runtime/generator.h"
#include "runtime/load_model.h"
#include "testing/test_data.h"
#include "text/tokenizer.h"

namespace strata::runtime {
namespace {

// The reference's prompts as greedy requests of its continuations' lengths.
std::vector<GenerationRequest> reference_requests(const nlohmann::json& ref) {
  std::vector<GenerationRequest> reqs;
  for (const auto& p : ref) {
    GenerationRequest r;
    r.prompt = p["prompt_ids"].get<std::vector<int32_t>>();
    r.max_new_tokens = static_cast<int32_t>(p["greedy_ids"].size());
    r.ignore_eos = true;
    reqs.push_back(r);
  }
  return reqs;
}

// Checks each continuation against the reference's up to the first step whose top-2 margin is a
// near-tie (< 0.05 of a logit: bf16 activations here, fp32 there); returns the tokens compared.
size_t expect_reference_greedy(const std::vector<GenerationResult>& out, const nlohmann::json& ref) {
  size_t compared = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    auto want = ref[i]["greedy_ids"].get<std::vector<int32_t>>();
    const auto margins = ref[i]["top2_margins"].get<std::vector<float>>();
    size_t n = 0;
    while (n < want.size() && margins[n] >= 0.05f) ++n;
    want.resize(n);
    EXPECT_EQ(std::vector<int32_t>(out[i].tokens.begin(), out[i].tokens.begin() + n), want) << ref[i]["prompt"];
    compared += n;
  }
  return compared;
}

TEST(DemoModel, GreedyContinuationsMatchTransformers) {
  const auto dir = testing::test_data_dir() / ".." / ".." / "models" / "demo";
  auto ctx = make_context({});
  ASSERT_TRUE(ctx.is_ok());
  auto model = load_model_dir(**ctx, dir);
  ASSERT_TRUE(model.is_ok()) << model.status().to_string();
  std::ifstream in(dir / "reference.json");
  auto ref = nlohmann::json::parse(in)["prompts"];
  const std::vector<GenerationRequest> reqs = reference_requests(ref);
  Generator gen(**model);
  auto out = gen.generate(reqs);
  ASSERT_TRUE(out.is_ok()) << out.status().to_string();
  const size_t compared = expect_reference_greedy(*out, ref);
  EXPECT_GE(compared, 64u);
}

// JSON mode with a strict min_p: the mask comes before min_p, so the floor is taken from the
// likeliest token that continues the object. Were the floor taken from the unconstrained
// distribution (whose likeliest tokens are words after this prompt), no JSON token would pass it.
TEST(DemoModel, ConstraintMaskComesBeforeMinP) {
  const auto dir = testing::test_data_dir() / ".." / ".." / "models" / "demo";
  auto ctx = make_context({});
  ASSERT_TRUE(ctx.is_ok());
  auto model = load_model_dir(**ctx, dir);
  ASSERT_TRUE(model.is_ok()) << model.status().to_string();
  auto tok = text::Tokenizer::load_dir(dir);
  ASSERT_TRUE(tok.is_ok());
  const auto trie = std::make_shared<text::TokenTrie>(**tok, (*model)->config().vocab_size);
  std::vector<GenerationRequest> reqs;
  for (uint64_t seed = 0; seed < 4; ++seed) {
    GenerationRequest r;
    r.prompt = (*tok)->encode("And God said, Let there be light", /*add_special_tokens=*/true);
    r.max_new_tokens = 24;
    r.sampling.temperature = 1;
    r.sampling.seed = seed;
    r.min_p = 0.9f;
    r.constraint = text::Constraint::json_object();
    r.trie = trie;
    reqs.push_back(r);
  }
  Generator gen(**model);
  auto out = gen.generate(reqs);
  ASSERT_TRUE(out.is_ok()) << out.status().to_string();
  for (const auto& r : *out) {
    EXPECT_NE(r.finish, FinishReason::kError) << r.error;
    std::string text;
    for (int32_t t : r.tokens) text += trie->text(t);
    const size_t first = text.find_first_not_of(" \t\r\n");
    ASSERT_NE(first, std::string::npos) << text;
    EXPECT_EQ(text[first], '{') << text;
  }
}

// A Mixtral-format model whose experts are each a copy of the demo's MLP (bench/upcycle_moe.py:
// a seeded random router; the top 2 of 4 experts, their weights renormalised to sum to 1)
// computes the demo model: the mixture of experts' path (router, top-k, the experts' GEMMs over
// their tokens, the weighted scatter-add) on trained weights. Renormalising wrongly, dropping a
// chosen expert or scattering a row to the wrong token changes the logits.
TEST(DemoModel, AMixtureOfCopiesOfItsMlpComputesIt) {
  if (std::system("python3 -c 'import json' >/dev/null 2>&1") != 0) GTEST_SKIP() << "python3 is missing";
  const auto root = testing::test_data_dir() / ".." / "..";
  const auto dir = root / "models" / "demo";
  const auto moe_dir = testing::make_temp_dir("strata-upcycled") / "moe";
  const std::string cmd = "python3 " + (root / "bench" / "upcycle_moe.py").string() + " " + dir.string() + " " +
                          moe_dir.string() + " --experts 4 --top-k 2 >/dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  auto ctx = make_context({});
  ASSERT_TRUE(ctx.is_ok());
  auto dense = load_model_dir(**ctx, dir);
  auto moe = load_model_dir(**ctx, moe_dir);
  ASSERT_TRUE(dense.is_ok()) << dense.status().to_string();
  ASSERT_TRUE(moe.is_ok()) << moe.status().to_string();
  ASSERT_TRUE((*moe)->config().is_moe());
  std::ifstream in(dir / "reference.json");
  const auto ref = nlohmann::json::parse(in)["prompts"];
  // Every prompt at once (a ragged batch), the logits of every position.
  compute::TokenBatch batch;
  int32_t longest = 0;
  for (size_t p = 0; p < ref.size(); ++p) {
    const auto ids = ref[p]["prompt_ids"].get<std::vector<int32_t>>();
    batch.add_sequence(static_cast<int32_t>(p), 0, ids);
    longest = std::max(longest, static_cast<int32_t>(ids.size()));
  }
  std::vector<int32_t> rows(static_cast<size_t>(batch.size()));
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<int32_t>(i);
  auto logits = [&](compute::Transformer& m) {
    auto cache = m.make_kv_cache(static_cast<int32_t>(ref.size()), longest);
    EXPECT_TRUE(cache.is_ok());
    auto x = m.forward(batch, *cache, rows);
    EXPECT_TRUE(x.is_ok()) << x.status().to_string();
    return m.backend().to_host_f32(*x);
  };
  const Tensor want = logits(**dense), got = logits(**moe);
  ASSERT_EQ(want.numel(), got.numel());
  float most = 0, worst = 0;
  for (int64_t i = 0; i < want.numel(); ++i) {
    most = std::max(most, std::fabs(want.data<float>()[i]));
    worst = std::max(worst, std::fabs(want.data<float>()[i] - got.data<float>()[i]));
  }
  EXPECT_LE(worst, 1e-3f * most) << "largest logit difference " << worst << " of " << most;
  // And its greedy continuations are transformers' for the dense model, up to a near-tie.
  Generator gen(**moe);
  auto out = gen.generate(reference_requests(ref));
  ASSERT_TRUE(out.is_ok()) << out.status().to_string();
  const size_t compared = expect_reference_greedy(*out, ref);
  EXPECT_GE(compared, 64u);
}

}  // namespace
}  // namespace strata::runtime
