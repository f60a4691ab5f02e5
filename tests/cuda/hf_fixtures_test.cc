// The whole model on the GPU against Hugging Face transformers: the tiny fixture models of
// tests/data/fixtures (fp32 and bf16 checkpoints, OPT pre/post-LN, Llama with GQA and llama3
// RoPE, Qwen2 with biases and tied embeddings, Mistral with a sliding window) run with F16 and
// BF16 activations; their prompt logits must stay close to transformers' fp32 logits and their
// greedy continuations must match transformers' up to the first near-tie. Skips without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "cuda/cuda_test_util.h"
#include "runtime/context.h"
#include "runtime/generator.h"
#include "runtime/load_model.h"
#include "testing/hf_reference.h"
#include "testing/test_data.h"

namespace strata::cuda {
namespace {

using Reference = strata::testing::HfReference;

struct Case {
  const char* fixture;
  DType act;
};

// Logit error bound (max |gpu - transformers| / max(1, max |logit|)) and the top-2 margin under
// which transformers' greedy choice is a near-tie that 16-bit activations may decide otherwise.
float logit_tol(DType act) { return act == DType::kBF16 ? 4e-2f : 1e-2f; }
float near_tie(DType act) { return act == DType::kBF16 ? 0.15f : 0.05f; }

class GpuHfReference : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    STRATA_REQUIRE_GPU();
    dir_ = strata::testing::test_data_dir() / "fixtures" / GetParam().fixture;
    runtime::ContextOptions o;
    o.device = "cuda";
    o.gpu_activation_dtype = GetParam().act;
    auto ctx = runtime::make_context(o);
    ASSERT_TRUE(ctx.is_ok()) << ctx.status().to_string();
    ctx_ = std::move(ctx).value();
    auto model = runtime::load_model_dir(*ctx_, dir_);
    ASSERT_TRUE(model.is_ok()) << model.status().to_string();
    model_ = std::move(model).value();
    ref_ = strata::testing::load_hf_reference(dir_);
  }

  std::filesystem::path dir_;
  std::unique_ptr<runtime::Context> ctx_;
  std::unique_ptr<compute::Transformer> model_;
  Reference ref_;
};

TEST_P(GpuHfReference, PromptLogitsStayClose) {
  for (size_t p = 0; p < ref_.prompts.size(); ++p) {
    const auto& prompt = ref_.prompts[p];
    auto cache = model_->make_kv_cache(1, static_cast<int32_t>(prompt.size()));
    ASSERT_TRUE(cache.is_ok());
    compute::TokenBatch batch;
    batch.add_sequence(0, 0, prompt);
    std::vector<int32_t> rows(prompt.size());
    for (size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<int32_t>(i);
    auto logits = model_->forward(batch, *cache, rows);
    ASSERT_TRUE(logits.is_ok()) << logits.status().to_string();
    const auto e = testing::compare(*logits, ref_.logits[p]);
    EXPECT_TRUE(e.finite);
    std::printf("%s %s prompt %zu: max logit error %.5f of max |logit| %.3f\n",
                GetParam().fixture, std::string(dtype_name(GetParam().act)).c_str(), p, e.max_abs,
                e.max_ref);
    EXPECT_LE(e.max_abs / std::max(1.0, e.max_ref), logit_tol(GetParam().act)) << "prompt " << p;
  }
}

TEST_P(GpuHfReference, TeacherForcedDecodeChoicesMatch) {
  // Feed transformers' own greedy tokens through the KV cache; wherever its choice was not a
  // near-tie, the GPU's argmax must be the same token.
  int decided = 0, steps_total = 0;
  for (size_t p = 0; p < ref_.prompts.size(); ++p) {
    const auto& prompt = ref_.prompts[p];
    const auto& forced = ref_.greedy[p];
    const int32_t steps = static_cast<int32_t>(forced.size());
    auto cache = model_->make_kv_cache(1, static_cast<int32_t>(prompt.size()) + steps);
    ASSERT_TRUE(cache.is_ok());
    compute::TokenBatch batch;
    batch.add_sequence(0, 0, prompt);
    int32_t row = batch.size() - 1, len = static_cast<int32_t>(prompt.size());
    for (int32_t s = 0; s < steps; ++s) {
      auto logits = model_->forward(batch, *cache, {&row, 1});
      ASSERT_TRUE(logits.is_ok()) << logits.status().to_string();
      const float* l = logits->data<float>();
      const int64_t V = logits->dim(1);
      ++steps_total;
      if (ref_.margins[p][s] >= near_tie(GetParam().act)) {
        EXPECT_EQ(std::max_element(l, l + V) - l, forced[s]) << "prompt " << p << " step " << s;
        ++decided;
      }
      batch = {};
      batch.add_sequence(0, len++, {&forced[s], 1});
      row = 0;
    }
  }
  // Most steps are decided; a fixture whose margins all fell under the bound would test little.
  EXPECT_GE(decided, steps_total / 2);
}

TEST_P(GpuHfReference, GreedyTokensMatchTransformersAloneAndBatched) {
  runtime::Generator gen(*model_);
  std::vector<runtime::GenerationRequest> reqs;
  for (const auto& prompt : ref_.prompts) {
    runtime::GenerationRequest r;
    r.prompt = prompt;
    r.max_new_tokens = static_cast<int32_t>(ref_.greedy[0].size());
    r.ignore_eos = true;
    reqs.push_back(r);
  }
  auto batched = gen.generate(reqs);
  ASSERT_TRUE(batched.is_ok()) << batched.status().to_string();
  for (size_t p = 0; p < reqs.size(); ++p) {
    auto alone = gen.generate({&reqs[p], 1});
    ASSERT_TRUE(alone.is_ok());
    // Free-running continuations are comparable up to the first near-tie only.
    size_t n = 0;
    while (n < ref_.margins[p].size() && ref_.margins[p][n] >= near_tie(GetParam().act)) ++n;
    const auto& got = (*batched)[p].tokens;
    ASSERT_EQ(got.size(), ref_.greedy[p].size());
    std::vector<int32_t> want(ref_.greedy[p].begin(), ref_.greedy[p].begin() + n);
    EXPECT_EQ(std::vector<int32_t>(got.begin(), got.begin() + n), want)
        << "prompt " << p << ", first " << n << " greedy tokens";
    const auto& solo = (*alone)[0].tokens;
    EXPECT_EQ(std::vector<int32_t>(solo.begin(), solo.begin() + n), want)
        << "prompt " << p << " alone";
  }
}

// More requests than slots (3): waiting requests take finished sequences' slots, their prompts
// riding in decode steps (the CUDA attention over sequences of one token and whole prompts at
// once). Each continuation matches transformers up to its first near-tie.
TEST_P(GpuHfReference, GreedyTokensMatchTransformersWhenRequestsJoinDecodeSteps) {
  const size_t steps = ref_.greedy[0].size();
  std::vector<runtime::GenerationRequest> reqs;
  for (int k = 0; k < 3; ++k)
    for (const auto& prompt : ref_.prompts) {
      runtime::GenerationRequest r;
      r.prompt = prompt;
      r.max_new_tokens = 1 + static_cast<int32_t>((reqs.size() * 7 + 3) % steps);
      r.ignore_eos = true;
      reqs.push_back(r);
    }
  // Whole joining prompts, and 2 prompt tokens a step (a prompt continued on top of its cache).
  for (const int32_t chunk : {0, 2}) {
    SCOPED_TRACE("prompt chunk " + std::to_string(chunk));
    runtime::Generator gen(*model_);
    gen.set_slots(3);
    gen.set_prompt_chunk(chunk);
    runtime::GenerationStats stats;
    auto got = gen.generate(reqs, &stats);
    ASSERT_TRUE(got.is_ok()) << got.status().to_string();
    EXPECT_GT(stats.refills, 0);
    for (size_t i = 0; i < reqs.size(); ++i) {
      const size_t p = i % ref_.prompts.size();
      size_t n = 0;
      while (n < ref_.margins[p].size() && ref_.margins[p][n] >= near_tie(GetParam().act)) ++n;
      const auto& tokens = (*got)[i].tokens;
      ASSERT_EQ(tokens.size(), static_cast<size_t>(reqs[i].max_new_tokens));
      n = std::min(n, tokens.size());
      EXPECT_EQ(std::vector<int32_t>(tokens.begin(), tokens.begin() + n),
                std::vector<int32_t>(ref_.greedy[p].begin(), ref_.greedy[p].begin() + n))
          << "request " << i << " (prompt " << p << "), first " << n << " greedy tokens";
    }
  }
}

// The model with its logits brought to the host every step: the backend then samples through
// the host's reference computations (adjusted copies, their statistics, the draws, the values).
class HostLogits final : public compute::SequenceModel {
 public:
  explicit HostLogits(compute::Transformer& model) : inner_(model) {}
  const model::ModelConfig& config() const override { return inner_.config(); }
  compute::Backend& backend() override { return inner_.backend(); }
  Status reset(int32_t slots, int32_t max_len) override { return inner_.reset(slots, max_len); }
  Result<Tensor> forward(const compute::TokenBatch& batch, std::span<const int32_t> rows) override {
    return inner_.forward(batch, rows);
  }
  bool mixed_steps() const override { return inner_.mixed_steps(); }

 private:
  compute::TransformerModel inner_;
};

// Sampling where the logits are (the GPU) chooses what the host's reference chooses, with the
// same logprobs: penalties, biases, min_p, min_tokens, top_k and top_p, seeded draws, top
// logprobs, requests joining running ones.
TEST_P(GpuHfReference, SamplingOnTheGpuIsTheHostsSampling) {
  std::vector<runtime::GenerationRequest> reqs;
  for (int k = 0; k < 5; ++k)
    for (const auto& prompt : ref_.prompts) {
      runtime::GenerationRequest r;
      r.prompt = prompt;
      r.max_new_tokens = 12;
      r.sampling.seed = 100 + reqs.size();
      switch (k) {
        case 0: r.repetition_penalty = 1.3f, r.presence_penalty = 0.4f, r.frequency_penalty = 0.2f; break;
        case 1: r.sampling.temperature = 0.8f, r.logit_bias = {{3, 5.0f}, {10, -100.0f}}, r.min_p = 0.1f; break;
        case 2: r.sampling.temperature = 1.1f, r.sampling.top_k = 20, r.sampling.top_p = 0.9f, r.min_tokens = 5, r.top_logprobs = 3; break;
        case 3: r.sampling.temperature = 1.0f; break;
        case 4: r.top_logprobs = 2, r.ignore_eos = true; break;
      }
      reqs.push_back(r);
    }
  HostLogits host_model(*model_);
  compute::TransformerModel gpu_model(*model_);
  runtime::Generator on_host(host_model), on_gpu(gpu_model);
  on_host.set_slots(4);
  on_gpu.set_slots(4);
  auto want = on_host.generate(reqs);
  auto got = on_gpu.generate(reqs);
  ASSERT_TRUE(want.is_ok()) << want.status().to_string();
  ASSERT_TRUE(got.is_ok()) << got.status().to_string();
  for (size_t i = 0; i < reqs.size(); ++i) {
    const auto& w = (*want)[i];
    const auto& g = (*got)[i];
    EXPECT_EQ(g.tokens, w.tokens) << "request " << i;
    ASSERT_EQ(g.logprobs.size(), w.logprobs.size()) << "request " << i;
    for (size_t t = 0; t < g.logprobs.size(); ++t) EXPECT_EQ(g.logprobs[t], w.logprobs[t]) << "request " << i << " token " << t;
    EXPECT_EQ(g.top_logprobs, w.top_logprobs) << "request " << i;
    if (reqs[i].logit_bias.size() == 2) EXPECT_EQ(std::count(g.tokens.begin(), g.tokens.end(), 10), 0) << "request " << i;
  }
}

const Case kCases[] = {
    {"opt_pre_ln", DType::kF16},          {"opt_post_ln_proj", DType::kF16},
    {"llama_gqa_llama3", DType::kF16},    {"qwen2_bias_tied", DType::kF16},
    {"mistral_window_head_dim", DType::kF16}, {"llama_bf16", DType::kF16},
    {"llama_gqa_llama3", DType::kBF16},   {"llama_bf16", DType::kBF16},
    {"opt_pre_ln", DType::kBF16},
    {"qwen3_head_dim_tied", DType::kF16}, {"mixtral_window", DType::kF16},
    {"mixtral_window", DType::kBF16},     {"qwen3_moe_dense_layer", DType::kF16},
    {"qwen3_moe_sparse_step", DType::kBF16},
};

INSTANTIATE_TEST_SUITE_P(Fixtures, GpuHfReference, ::testing::ValuesIn(kCases),
                         [](const auto& info) {
                           return std::string(info.param.fixture) + "_" +
                                  std::string(dtype_name(info.param.act));
                         });

TEST(CudaContext, DeviceFlagMakesTheCudaBackendOrSaysWhyNot) {
  runtime::ContextOptions o;
  o.device = "cuda";
  auto ctx = runtime::make_context(o);
  if (!testing::no_gpu_reason().empty()) {
    ASSERT_FALSE(ctx.is_ok());
    EXPECT_NE(ctx.status().message().find("--device cuda"), std::string::npos);
    return;
  }
  ASSERT_TRUE(ctx.is_ok()) << ctx.status().to_string();
  EXPECT_EQ((*ctx)->backend->name(), "cuda");
  o.device = "cuda:999";
  auto missing = runtime::make_context(o);
  ASSERT_FALSE(missing.is_ok());
  EXPECT_NE(missing.status().message().find("999"), std::string::npos);
  o.device = "cuda:x";
  EXPECT_FALSE(runtime::make_context(o).is_ok());
}

}  // namespace
}  // namespace strata::cuda
