// Perplexity evaluation against transformers' logits, windowing, and the int4 KV cache.
#include "runtime/eval.h"

#include <cmath>
#include <fstream>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/thread_pool.h"
#include "compute/int4.h"
#include "model/safetensors.h"
#include "runtime/context.h"
#include "runtime/load_model.h"
#include "testing/test_data.h"

namespace strata::runtime {
namespace {

const auto kFixture = testing::test_data_dir() / "fixtures" / "llama_gqa_llama3";

std::vector<int32_t> fixture_prompt(size_t i) {
  std::ifstream in(kFixture / "reference.json");
  return nlohmann::json::parse(in)["prompts"][i]["prompt"].get<std::vector<int32_t>>();
}

TEST(Eval, NllEqualsTransformersLogSoftmax) {
  // The fixture's reference logits at every prompt position give the expected NLL directly.
  const std::vector<int32_t> prompt = fixture_prompt(1);
  auto ref = model::SafetensorsFile::open(kFixture / "reference.safetensors");
  ASSERT_TRUE(ref.is_ok());
  Tensor logits = *(*ref)->read("prompt1.logits");
  const int64_t V = logits.dim(1);
  double want = 0;
  for (size_t i = 0; i + 1 < prompt.size(); ++i) {
    const float* row = logits.data<float>() + i * V;
    double mx = row[0], sum = 0;
    for (int64_t v = 1; v < V; ++v) mx = std::max(mx, double(row[v]));
    for (int64_t v = 0; v < V; ++v) sum += std::exp(double(row[v]) - mx);
    want -= double(row[prompt[i + 1]]) - mx - std::log(sum);
  }
  auto ctx = make_context({});
  ASSERT_TRUE(ctx.is_ok());
  auto model = load_model_dir(**ctx, kFixture);
  ASSERT_TRUE(model.is_ok());
  EvalOptions opts;
  opts.context = static_cast<int32_t>(prompt.size());
  auto got = evaluate_perplexity(**model, prompt, opts);
  ASSERT_TRUE(got.is_ok()) << got.status().to_string();
  EXPECT_EQ(got->tokens_scored, static_cast<int64_t>(prompt.size() - 1));
  EXPECT_EQ(got->windows, 1);
  EXPECT_NEAR(got->nll_sum, want, 1e-4 * std::fabs(want));
  EXPECT_NEAR(got->perplexity(), std::exp(want / (prompt.size() - 1)), 1e-3);
}

TEST(Eval, WindowsStartFreshAndBatchingChangesNothing) {
  auto ctx = make_context({});
  ASSERT_TRUE(ctx.is_ok());
  auto model = load_model_dir(**ctx, kFixture);
  ASSERT_TRUE(model.is_ok());
  std::vector<int32_t> tokens;
  for (int i = 0; i < 25; ++i) tokens.push_back(4 + (i * 37) % 190);
  EvalOptions one{8, 1}, many{8, 8};
  auto a = evaluate_perplexity(**model, tokens, one);
  auto b = evaluate_perplexity(**model, tokens, many);
  ASSERT_TRUE(a.is_ok() && b.is_ok());
  EXPECT_EQ(a->windows, 3);  // [0,8) [8,16) [16,24); the lone last token scores nothing
  EXPECT_EQ(a->tokens_scored, 21);
  EXPECT_NEAR(a->nll_sum, b->nll_sum, 1e-6 * a->nll_sum);
  // A window sees no history: scoring tokens [8, 16) alone gives the second window's share.
  auto c = evaluate_perplexity(**model, std::span(tokens).subspan(8, 8), one);
  auto first = evaluate_perplexity(**model, std::span(tokens).subspan(0, 8), one);
  auto third = evaluate_perplexity(**model, std::span(tokens).subspan(16, 8), one);
  ASSERT_TRUE(c.is_ok() && first.is_ok() && third.is_ok());
  EXPECT_NEAR(first->nll_sum + c->nll_sum + third->nll_sum, a->nll_sum, 1e-5 * a->nll_sum);
}

TEST(Eval, RejectsBadWindows) {
  auto ctx = make_context({});
  ASSERT_TRUE(ctx.is_ok());
  auto model = load_model_dir(**ctx, kFixture);
  ASSERT_TRUE(model.is_ok());
  std::vector<int32_t> tokens = {5, 6, 7};
  EXPECT_FALSE(evaluate_perplexity(**model, std::span(tokens).first(1), {}).is_ok());
  EXPECT_FALSE(evaluate_perplexity(**model, tokens, {1, 1}).is_ok());
  EXPECT_FALSE(evaluate_perplexity(**model, tokens, {100000, 1}).is_ok());
}

TEST(Int4Kv, CacheHoldsWhatAnInt4CacheWould) {
  // With int4_kv the keys and values in the cache are dequantise(quantise(.)) of the new rows,
  // and attention reads them: its output equals plain attention over those values.
  ThreadPool pool(2);
  compute::CpuBackendOptions o;
  o.int4_kv = true;
  auto be = compute::make_cpu_backend(pool, o);
  auto plain = compute::make_cpu_backend(pool);
  const int64_t T = 5, H = 2, D = 64;
  Tensor q = Tensor::host(DType::kF32, {T, H, D}), k = Tensor::host(DType::kF32, {T, H, D}),
         v = Tensor::host(DType::kF32, {T, H, D});
  for (int64_t i = 0; i < T * H * D; ++i) {
    q.data<float>()[i] = std::sin(0.37f * i);
    k.data<float>()[i] = std::cos(0.11f * i) * 2.0f;
    v.data<float>()[i] = std::sin(0.05f * i + 1.0f);
  }
  auto roundtrip = [&](const Tensor& t) {
    Tensor flat = t.reshape({T * H, D});
    std::vector<std::byte> blob(compute::int4_blob_bytes(T * H, D));
    EXPECT_TRUE(compute::quantise_int4(flat, blob).is_ok());
    return compute::dequantise_int4(*compute::int4_view(blob, flat.shape())).reshape({T, H, D});
  };
  Tensor kq = roundtrip(k), vq = roundtrip(v);
  compute::LayerKvCache c1{Tensor::host(DType::kF32, {1, T, H, D}), Tensor::host(DType::kF32, {1, T, H, D})};
  compute::LayerKvCache c2{Tensor::host(DType::kF32, {1, T, H, D}), Tensor::host(DType::kF32, {1, T, H, D})};
  compute::SeqSpan s{0, 0, static_cast<int32_t>(T), 0};
  compute::AttentionParams p{0.125f, std::nullopt};
  Tensor o1 = Tensor::host(DType::kF32, {T, H, D}), o2 = Tensor::host(DType::kF32, {T, H, D});
  be->attention(q, k, v, c1, {&s, 1}, p, o1);
  plain->attention(q, kq, vq, c2, {&s, 1}, p, o2);
  int differs = 0;
  for (int64_t i = 0; i < T * H * D; ++i) {
    EXPECT_EQ(c1.k.data<float>()[i], kq.data<float>()[i]);
    EXPECT_EQ(c1.v.data<float>()[i], vq.data<float>()[i]);
    EXPECT_EQ(o1.data<float>()[i], o2.data<float>()[i]);
    differs += c1.k.data<float>()[i] != k.data<float>()[i];
  }
  EXPECT_GT(differs, T * H * D / 2);  // quantisation really happened
}

}  // namespace
}  // namespace strata::runtime
