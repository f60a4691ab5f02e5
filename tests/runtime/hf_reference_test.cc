// The CPU engine against Hugging Face transformers: tiny seeded-random models built and run by
// transformers (tests/data/make_fixtures.py), compared on logits at every prompt position, on
// decode logits through the KV cache, and on greedy continuations.
#include <algorithm>
#include <map>
#include <cmath>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "model/model_dir.h"
#include "planner/cost_model.h"
#include "compute/sequence_model.h"
#include "runtime/context.h"
#include "runtime/generator.h"
#include "runtime/load_model.h"
#include "testing/hf_reference.h"
#include "testing/test_data.h"

namespace strata::runtime {
namespace {

struct Fixture {
  const char* name;
  float logit_tol;     // max |strata - transformers| over all logits, relative to max |logit|
  float near_tie;      // top-2 margins below this are near-ties: greedy may differ after them
};

// fp32 fixtures differ only by summation order (measured: ~1e-6); bf16 weights are consumed with
// activations rounded to bf16 (8 mantissa bits) in every matmul, against transformers' fp32 math
// (measured: ~5e-3 of a logit scale of ~4, so up to ~0.023 absolute; near-ties are twice that).
const Fixture kFixtures[] = {
    {"opt_pre_ln", 2e-5f, 1e-3f},
    {"opt_post_ln_proj", 2e-5f, 1e-3f},
    {"llama_gqa_llama3", 2e-5f, 1e-3f},
    {"qwen2_bias_tied", 2e-5f, 1e-3f},
    {"mistral_window_head_dim", 2e-5f, 1e-3f},
    {"llama_bf16", 1.5e-2f, 0.05f},
    {"qwen3_head_dim_tied", 2e-5f, 1e-3f},
    {"mixtral_window", 2e-5f, 1e-3f},
    {"mixtral_window_fused", 2e-5f, 1e-3f},  // the same model with its experts fused per layer
    {"qwen3_moe_dense_layer", 2e-5f, 1e-3f},
    {"qwen3_moe_sparse_step", 2e-5f, 1e-3f},
};

// Test listings print the fixture's name rather than its bytes.
void PrintTo(const Fixture& f, std::ostream* os) { *os << f.name; }

using Reference = testing::HfReference;

// max |a - b| / max(1, max |b|) over rows of a [R, V] against b [R, V].
float relative_error(const Tensor& a, const Tensor& b) {
  STRATA_CHECK(a.shape() == b.shape(), shape_string(a.shape()) + " vs " + shape_string(b.shape()));
  float diff = 0, scale = 1;
  for (int64_t i = 0; i < a.numel(); ++i) {
    diff = std::max(diff, std::fabs(a.data<float>()[i] - b.data<float>()[i]));
    scale = std::max(scale, std::fabs(b.data<float>()[i]));
  }
  return diff / scale;
}

// Number of leading greedy steps before the first near-tie.
size_t comparable_steps(const std::vector<float>& margins, float near_tie) {
  size_t n = 0;
  while (n < margins.size() && margins[n] >= near_tie) ++n;
  return n;
}

class HfReference : public ::testing::TestWithParam<Fixture> {
 protected:
  void SetUp() override {
    dir_ = testing::test_data_dir() / "fixtures" / GetParam().name;
    auto ctx = make_context({});
    ASSERT_TRUE(ctx.is_ok()) << ctx.status().to_string();
    ctx_ = std::move(ctx).value();
    auto model = load_model_dir(*ctx_, dir_);
    ASSERT_TRUE(model.is_ok()) << model.status().to_string();
    model_ = std::move(model).value();
    ref_ = testing::load_hf_reference(dir_);
  }

  std::filesystem::path dir_;
  std::unique_ptr<Context> ctx_;
  std::unique_ptr<compute::Transformer> model_;
  Reference ref_;
};

TEST_P(HfReference, PromptLogitsMatchAtEveryPosition) {
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
    const float err = relative_error(*logits, ref_.logits[p]);
    RecordProperty("prompt" + std::to_string(p) + "_logit_error", ::testing::PrintToString(err));
    EXPECT_LE(err, GetParam().logit_tol) << "prompt " << p;
  }
}

TEST_P(HfReference, DecodeLogitsThroughTheKvCacheMatch) {
  int decided = 0;
  for (size_t p = 0; p < ref_.prompts.size(); ++p) {
    const auto& prompt = ref_.prompts[p];
    const auto& forced = ref_.greedy[p];  // teacher forcing: feed the reference's tokens
    const int32_t steps = static_cast<int32_t>(forced.size());
    auto cache = model_->make_kv_cache(1, static_cast<int32_t>(prompt.size()) + steps);
    ASSERT_TRUE(cache.is_ok());
    compute::TokenBatch batch;
    batch.add_sequence(0, 0, prompt);
    int32_t last_row = batch.size() - 1;
    auto first = model_->forward(batch, *cache, {&last_row, 1});
    ASSERT_TRUE(first.is_ok());
    Tensor got = Tensor::host(DType::kF32, ref_.step_logits[p].shape());
    const int64_t V = got.dim(1);
    std::copy_n(first->data<float>(), V, got.data<float>());
    int32_t len = static_cast<int32_t>(prompt.size());
    for (int32_t s = 1; s < steps; ++s, ++len) {
      compute::TokenBatch step;
      step.add_sequence(0, len, {&forced[s - 1], 1});
      int32_t row = 0;
      auto logits = model_->forward(step, *cache, {&row, 1});
      ASSERT_TRUE(logits.is_ok());
      std::copy_n(logits->data<float>(), V, got.data<float>() + s * V);
    }
    const float err = relative_error(got, ref_.step_logits[p]);
    RecordProperty("prompt" + std::to_string(p) + "_decode_logit_error", ::testing::PrintToString(err));
    EXPECT_LE(err, GetParam().logit_tol) << "prompt " << p;
    // Where the reference's choice is not a near-tie, ours is the same token.
    for (int32_t s = 0; s < steps; ++s) {
      if (ref_.margins[p][s] < GetParam().near_tie) continue;
      const float* row = got.data<float>() + s * V;
      EXPECT_EQ(std::max_element(row, row + V) - row, forced[s]) << "prompt " << p << " step " << s;
      ++decided;
    }
  }
  // Most steps are decided; a fixture whose margins all collapsed would test little.
  EXPECT_GE(decided, 3 * static_cast<int>(ref_.prompts.size() * ref_.greedy[0].size()) / 4);
}

TEST_P(HfReference, GreedyContinuationsMatchAloneAndBatched) {
  Generator gen(*model_);
  std::vector<GenerationRequest> reqs;
  for (const auto& prompt : ref_.prompts) {
    GenerationRequest r;
    r.prompt = prompt;
    r.max_new_tokens = static_cast<int32_t>(ref_.greedy[0].size());
    r.ignore_eos = true;  // the reference does not stop at EOS
    reqs.push_back(r);
  }
  auto batched = gen.generate(reqs);
  ASSERT_TRUE(batched.is_ok()) << batched.status().to_string();
  for (size_t p = 0; p < reqs.size(); ++p) {
    auto alone = gen.generate({&reqs[p], 1});
    ASSERT_TRUE(alone.is_ok());
    EXPECT_EQ((*alone)[0].tokens, (*batched)[p].tokens) << "prompt " << p << " batched vs alone";
    EXPECT_EQ((*batched)[p].finish, FinishReason::kLength);
    size_t n = comparable_steps(ref_.margins[p], GetParam().near_tie);
    std::vector<int32_t> want(ref_.greedy[p].begin(), ref_.greedy[p].begin() + n);
    std::vector<int32_t> got((*batched)[p].tokens.begin(), (*batched)[p].tokens.begin() + n);
    EXPECT_EQ(got, want) << "prompt " << p << ", first " << n << " greedy tokens";
  }
}

// A SequenceModel that checks how the Generator uses its slots: never more than reset() made,
// every step's sequences in slot order, and unless it takes mixed steps, a step all prompts (each
// starting a sequence) or all single decode tokens.
class SlotCheckingModel final : public compute::SequenceModel {
 public:
  SlotCheckingModel(compute::Transformer& m, bool mixed, int64_t most_prompt_tokens = 0)
      : inner_(m), mixed_(mixed), most_(most_prompt_tokens) {}
  bool mixed_steps() const override { return mixed_; }
  int64_t mixed_step_prompt_tokens() const override { return most_; }
  const model::ModelConfig& config() const override { return inner_.config(); }
  compute::Backend& backend() override { return inner_.backend(); }
  Status reset(int32_t slots, int32_t max_len) override {
    if (slots > 0) slots_ = slots;
    return inner_.reset(slots, max_len);
  }
  // With a prompt chunk, a step holding decode tokens holds at most `chunk` prompt tokens (a
  // token at a position past 0 is a decode token unless it is one of several).
  void set_chunk(int32_t chunk) { chunk_ = chunk; }
  Result<Tensor> forward(const compute::TokenBatch& batch, std::span<const int32_t> rows) override {
    bool prompt = false, decode = false;
    int64_t tokens = 0;
    int32_t last_slot = -1;
    for (const auto& s : batch.seqs) {
      EXPECT_LT(s.slot, slots_);
      EXPECT_GT(s.slot, last_slot) << "sequences in slot order";
      last_slot = s.slot;
      (s.past_len == 0 ? prompt : decode) = true;
      tokens += s.num_tokens;
      if (s.past_len > 0 && s.num_tokens > 1) {
        EXPECT_GT(chunk_, 0) << "a prompt continued in a later step, with whole prompts";
        ++continued_chunks;
      } else if (s.past_len > 0) {
        EXPECT_EQ(s.num_tokens, 1);
      }
    }
    if (!mixed_) EXPECT_FALSE(prompt && decode);
    if (chunk_ > 0 && decode)
      EXPECT_LE(tokens, chunk_ + static_cast<int64_t>(batch.seqs.size())) << "prompt tokens beyond the chunk";
    prompt_steps += prompt && !decode ? 1 : 0;
    mixed_steps_run += prompt && decode ? 1 : 0;
    ++steps;
    step_tokens += tokens;
    sampled_rows += static_cast<int64_t>(rows.size());
    return inner_.forward(batch, rows);
  }
  int prompt_steps = 0, mixed_steps_run = 0, continued_chunks = 0;
  int64_t steps = 0, step_tokens = 0, sampled_rows = 0;

 private:
  compute::TransformerModel inner_;
  bool mixed_;
  int64_t most_;
  int32_t slots_ = 0;
  int32_t chunk_ = 0;
};

// More requests than slots: each prompt several times with different lengths to generate, so
// sequences finish at different steps and waiting ones take their slots mid-way, in prompt steps
// of their own or inside decode steps (mixed). Every continuation is the reference's greedy one
// and the same as with a slot per request.
TEST_P(HfReference, GreedyContinuationsMatchWhenRequestsTakeFinishedSequencesSlots) {
  const int32_t steps = static_cast<int32_t>(ref_.greedy[0].size());
  std::vector<GenerationRequest> reqs;
  for (int k = 0; k < 3; ++k)
    for (const auto& prompt : ref_.prompts) {
      GenerationRequest r;
      r.prompt = prompt;
      r.max_new_tokens = 1 + static_cast<int32_t>((reqs.size() * 7 + 3) % static_cast<size_t>(steps));
      r.ignore_eos = true;
      reqs.push_back(r);
    }
  Generator all(*model_);
  auto fixed = all.generate(reqs);
  ASSERT_TRUE(fixed.is_ok());
  int64_t prompt_tokens = 0;
  for (const auto& r : reqs) prompt_tokens += static_cast<int64_t>(r.prompt.size());
  // Prompt steps of their own; mixed steps with whole prompts; mixed steps taking 2 prompt
  // tokens a step, so a joining prompt enters its slot over several steps; whole prompts asked
  // of a model that takes at most 3 prompt tokens a mixed step (as the offloading engine limits
  // them to its activations' rows).
  struct Case {
    int32_t chunk;       // -1: no mixed steps
    int64_t model_most;  // the model's own limit (0: none)
  };
  for (const Case& c : {Case{-1, 0}, Case{0, 0}, Case{2, 0}, Case{0, 3}}) {
    const bool mixed = c.chunk >= 0;
    const int32_t chunk = c.model_most > 0 ? static_cast<int32_t>(c.model_most) : c.chunk;  // what steps carry
    SCOPED_TRACE(!mixed ? "prompt steps of their own" : c.model_most > 0 ? "mixed steps, the model's limit of 3 prompt tokens"
                 : chunk == 0 ? "mixed steps" : "mixed steps, 2 prompt tokens a step");
    SlotCheckingModel checked(*model_, mixed, c.model_most);
    checked.set_chunk(std::max(chunk, 0));
    Generator gen(checked);
    gen.set_slots(3);
    gen.set_prompt_chunk(std::max(c.chunk, 0));
    GenerationStats stats;
    std::vector<size_t> finished;
    auto got = gen.generate(reqs, &stats, [&](size_t i, const GenerationResult&) { finished.push_back(i); });
    ASSERT_TRUE(got.is_ok()) << got.status().to_string();
    EXPECT_GT(stats.refills, 0);
    EXPECT_EQ(stats.prompt_tokens, prompt_tokens);  // each prompt token entered once
    // The step accounting: each step the model ran, each token it took (a sequence's last token is
    // never fed back), each row it sampled (a token each).
    EXPECT_EQ(stats.steps, checked.steps);
    EXPECT_EQ(stats.step_tokens, checked.step_tokens);
    EXPECT_EQ(stats.step_tokens, prompt_tokens + stats.generated_tokens - static_cast<int64_t>(reqs.size()));
    EXPECT_EQ(stats.sampled_rows, stats.generated_tokens);
    EXPECT_GT(stats.model_s, 0.0);
    if (chunk > 0) {
      EXPECT_GT(checked.continued_chunks, 0);
    } else {
      EXPECT_EQ(checked.continued_chunks, 0);
    }
    if (mixed) {
      // Joining requests ride in decode steps, unless every slot emptied at once (with chunks, a
      // joining prompt's first tokens may wait for an earlier one's last).
      if (chunk == 0) EXPECT_EQ(checked.prompt_steps + checked.mixed_steps_run, stats.refills + 1);
      EXPECT_GT(checked.mixed_steps_run, 0);
    } else {
      EXPECT_EQ(checked.prompt_steps, stats.refills + 1);
      EXPECT_EQ(checked.mixed_steps_run, 0);
    }
    std::vector<size_t> sorted = finished;
    std::sort(sorted.begin(), sorted.end());
    ASSERT_EQ(sorted.size(), reqs.size());
    for (size_t i = 0; i < sorted.size(); ++i) EXPECT_EQ(sorted[i], i);  // each finished once
    for (size_t i = 0; i < reqs.size(); ++i) {
      const size_t p = i % ref_.prompts.size();
      EXPECT_EQ((*got)[i].tokens.size(), static_cast<size_t>(reqs[i].max_new_tokens)) << i;
      EXPECT_EQ((*got)[i].tokens, (*fixed)[i].tokens) << "request " << i << ": 3 slots vs one per request";
      const size_t n = std::min((*got)[i].tokens.size(), comparable_steps(ref_.margins[p], GetParam().near_tie));
      std::vector<int32_t> want(ref_.greedy[p].begin(), ref_.greedy[p].begin() + n);
      std::vector<int32_t> have((*got)[i].tokens.begin(), (*got)[i].tokens.begin() + n);
      EXPECT_EQ(have, want) << "request " << i << " (prompt " << p << "), first " << n << " greedy tokens";
    }
  }
}

// A SequenceModel with a paged KV cache of groups (as the offloading engine has): pages of
// `page_len` positions, `group_pages` a group, at most `group_seqs` sequences a group and
// `group_prompts` prompts a group in one step. It checks every step against that: each
// sequence's rows inside one group and apart from the others' (a decode step carries every
// running sequence), the groups' limits kept.
class PagedCheckingModel final : public compute::SequenceModel {
 public:
  PagedCheckingModel(compute::Transformer& m, compute::PageLayout layout) : inner_(m), layout_(layout) {}
  const model::ModelConfig& config() const override { return inner_.config(); }
  compute::Backend& backend() override { return inner_.backend(); }
  Status reset(int32_t slots, int32_t max_len) override { return inner_.reset(slots, max_len); }
  Result<compute::PageLayout> reset_paged(int64_t rows, int32_t) override {
    asked_rows = rows;
    STRATA_RETURN_IF_ERROR(inner_.reset(layout_.pages, layout_.page_len));
    return layout_;
  }
  Result<Tensor> forward(const compute::TokenBatch& batch, std::span<const int32_t> rows) override {
    const int64_t L = layout_.page_len, group_rows = int64_t{layout_.group_pages} * L;
    std::map<int64_t, int> per_group;
    bool prompt = false, decode = false;
    int64_t last_end = 0;
    for (const auto& s : batch.seqs) {  // in increasing slot order
      (s.past_len == 0 ? prompt : decode) = true;
      const int64_t first = s.slot * L, end = first + s.past_len + s.num_tokens;
      EXPECT_LT(s.slot, layout_.pages);
      EXPECT_EQ(first / group_rows, (end - 1) / group_rows) << "slot " << s.slot << " leaves its group";
      EXPECT_GE(first, last_end) << "slot " << s.slot << " overlaps the sequence before it";
      last_end = end;
      ++per_group[first / group_rows];
    }
    EXPECT_FALSE(prompt && decode);
    for (const auto& [g, n] : per_group) EXPECT_LE(n, prompt ? layout_.group_prompts : layout_.group_seqs) << "group " << g;
    if (decode) most_at_once = std::max(most_at_once, static_cast<int>(batch.seqs.size()));
    return inner_.forward(batch, rows);
  }
  int64_t asked_rows = 0;
  int most_at_once = 0;

 private:
  compute::TransformerModel inner_;
  compute::PageLayout layout_;
};

// The longest prompt + max_new_tokens of `reqs`.
int32_t longest_of(std::span<const GenerationRequest> reqs) {
  int32_t longest = 0;
  for (const GenerationRequest& r : reqs)
    longest = std::max<int32_t>(longest, static_cast<int32_t>(r.prompt.size()) + r.max_new_tokens);
  return longest;
}

// The rows of 3 slots of `reqs`' longest length as pages of 4 positions in 2 groups, each group
// taking at most 4 sequences and 2 prompts at once.
compute::PageLayout three_slots_as_pages(std::span<const GenerationRequest> reqs) {
  const int32_t page_len = 4, group_pages = (3 * longest_of(reqs) + 2 * page_len - 1) / (2 * page_len);
  return {2 * group_pages, page_len, group_pages, 4, 2};
}

// `reqs` run with a slot each, then on three_slots_as_pages(reqs) with 3 slots (the paged run
// given `on_finish`), on a PagedCheckingModel whose findings come back beside the results.
struct SlotsAndPages {
  std::vector<GenerationResult> slots, paged;
  int64_t asked_rows = 0;
  int most_at_once = 0;
};
Result<SlotsAndPages> run_slots_and_pages(compute::Transformer& model, std::span<const GenerationRequest> reqs,
                                          const Generator::FinishCallback& on_finish = {}) {
  SlotsAndPages out;
  Generator all(model);
  STRATA_ASSIGN_OR_RETURN(out.slots, all.generate(reqs));
  PagedCheckingModel paged(model, three_slots_as_pages(reqs));
  Generator gen(paged);
  gen.set_slots(3);
  gen.set_paged(true);
  STRATA_ASSIGN_OR_RETURN(out.paged, gen.generate(reqs, nullptr, on_finish));
  out.asked_rows = paged.asked_rows;
  out.most_at_once = paged.most_at_once;
  return out;
}

// Paged KV: requests of mixed lengths take as many pages as they need in groups with limits of
// sequences and prompts, more sequences run at once than slots of the longest length would
// hold, and every continuation is the same as with a slot per request.
TEST_P(HfReference, GreedyContinuationsMatchWithPagedKv) {
  const int32_t steps = static_cast<int32_t>(ref_.greedy[0].size());
  std::vector<GenerationRequest> reqs;
  for (int k = 0; k < 4; ++k)
    for (const auto& prompt : ref_.prompts) {
      GenerationRequest r;
      r.prompt = prompt;
      r.max_new_tokens = 1 + static_cast<int32_t>((reqs.size() * 5 + 2) % static_cast<size_t>(steps));
      r.ignore_eos = true;
      reqs.push_back(r);
    }
  std::vector<size_t> finished;
  auto run = run_slots_and_pages(*model_, reqs, [&](size_t i, const GenerationResult&) { finished.push_back(i); });
  ASSERT_TRUE(run.is_ok()) << run.status().to_string();
  EXPECT_EQ(run->asked_rows, 3 * longest_of(reqs));
  EXPECT_GT(run->most_at_once, 3) << "pages of the requests' own lengths hold more than 3 sequences";
  std::sort(finished.begin(), finished.end());
  ASSERT_EQ(finished.size(), reqs.size());
  for (size_t i = 0; i < finished.size(); ++i) EXPECT_EQ(finished[i], i);
  for (size_t i = 0; i < reqs.size(); ++i)
    EXPECT_EQ(run->paged[i].tokens, run->slots[i].tokens) << "request " << i << ": paged vs one slot per request";
}

// Sampled requests (top_p, top_k, penalties, top logprobs: statistics that sort candidates, and
// adjusted copies) with paged KV choose what they choose with a slot each: a step of pages holds
// more sequences than the slots, and its statistics and copies are taken a part of the rows at a
// time.
TEST_P(HfReference, SampledContinuationsWithPagedKvAreTheSlotsOwn) {
  std::vector<GenerationRequest> reqs;
  for (int k = 0; k < 4; ++k)
    for (const auto& prompt : ref_.prompts) {
      GenerationRequest r;
      r.prompt = prompt;
      r.max_new_tokens = 2 + static_cast<int32_t>((reqs.size() * 3) % 7);
      r.sampling = {0.9f, k == 1 ? 20 : 0, k == 3 ? 1.0f : 0.8f, 50 + reqs.size()};
      r.top_logprobs = k % 2 ? 2 : 0;
      r.presence_penalty = k == 2 ? 0.5f : 0.0f;
      r.ignore_eos = true;
      reqs.push_back(r);
    }
  auto run = run_slots_and_pages(*model_, reqs);
  ASSERT_TRUE(run.is_ok()) << run.status().to_string();
  EXPECT_GT(run->most_at_once, 3);
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_EQ(run->paged[i].tokens, run->slots[i].tokens) << "request " << i;
    EXPECT_EQ(run->paged[i].logprobs, run->slots[i].logprobs) << "request " << i;
    EXPECT_EQ(run->paged[i].top_logprobs, run->slots[i].top_logprobs) << "request " << i;
  }
}

TEST(Generator, RefillWaitsForAShareOfTheSlotsThatShrinksWithTheAnswersLength) {
  EXPECT_EQ(planner::refill_threshold(32, 64), 16);     // sqrt(2/32) = 1/4 of 64
  EXPECT_EQ(planner::refill_threshold(8, 64), 32);      // sqrt(2/8) = 1/2
  EXPECT_EQ(planner::refill_threshold(2, 64), 32);      // sqrt(2/2) = 1, at most a half
  EXPECT_EQ(planner::refill_threshold(200, 64), 7);     // sqrt(0.01) = 0.1: 6.4 rounded up
  EXPECT_EQ(planner::refill_threshold(100, 1000), 142);  // sqrt(0.02) = 0.1414
  EXPECT_EQ(planner::refill_threshold(5000, 10), 1);    // at least one
  EXPECT_EQ(planner::refill_threshold(0, 10), 5);       // no answers to go by: as for one token
}

INSTANTIATE_TEST_SUITE_P(Fixtures, HfReference, ::testing::ValuesIn(kFixtures),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(HfReferenceStop, StopsAtTheModelsEosToken) {
  // Declare the 5th reference greedy token of prompt 0 an EOS token: generation must stop right
  // after its first occurrence with finish_reason stop, and max_new_tokens must give "length".
  auto dir = testing::test_data_dir() / "fixtures" / "llama_gqa_llama3";
  Reference ref = testing::load_hf_reference(dir);
  auto ctx = make_context({});
  ASSERT_TRUE(ctx.is_ok());
  auto files = model::open_model_dir(dir);
  ASSERT_TRUE(files.is_ok()) << files.status().to_string();
  model::ModelConfig config = files->config;
  const int32_t eos = ref.greedy[0][4];
  config.eos_token_ids = {eos};
  auto weights = compute::load_weights(config, *files->weights, *(*ctx)->backend);
  ASSERT_TRUE(weights.is_ok());
  compute::Transformer model(config, *(*ctx)->backend, std::move(weights).value());
  Generator gen(model);
  GenerationRequest r;
  r.prompt = ref.prompts[0];
  r.max_new_tokens = 20;
  auto stop = gen.generate({&r, 1});
  ASSERT_TRUE(stop.is_ok());
  size_t first = std::find(ref.greedy[0].begin(), ref.greedy[0].end(), eos) - ref.greedy[0].begin();
  std::vector<int32_t> want(ref.greedy[0].begin(), ref.greedy[0].begin() + first + 1);
  EXPECT_EQ((*stop)[0].tokens, want);
  EXPECT_EQ((*stop)[0].finish, FinishReason::kStop);
  r.max_new_tokens = 3;
  auto length = gen.generate({&r, 1});
  ASSERT_TRUE(length.is_ok());
  EXPECT_EQ((*length)[0].tokens.size(), first < 3 ? first + 1 : 3u);
}

TEST(Generator, SampledContinuationsDependOnTheSeedNotOnTheBatch) {
  auto ctx = make_context({});
  ASSERT_TRUE(ctx.is_ok());
  auto model = load_model_dir(**ctx, testing::test_data_dir() / "fixtures" / "qwen2_bias_tied");
  ASSERT_TRUE(model.is_ok());
  Generator gen(**model);
  std::vector<GenerationRequest> reqs(3);
  for (size_t i = 0; i < reqs.size(); ++i) {
    reqs[i].prompt = {10, 20, 30, static_cast<int32_t>(40 + i)};
    reqs[i].max_new_tokens = 12 + static_cast<int32_t>(i);
    reqs[i].ignore_eos = true;
    reqs[i].sampling = {1.0f, 50, 0.95f, 100 + i};
  }
  auto batched = gen.generate(reqs);
  ASSERT_TRUE(batched.is_ok());
  for (size_t i = 0; i < reqs.size(); ++i) {
    auto alone = gen.generate({&reqs[i], 1});
    ASSERT_TRUE(alone.is_ok());
    EXPECT_EQ((*alone)[0].tokens, (*batched)[i].tokens) << i;
    EXPECT_EQ((*batched)[i].tokens.size(), static_cast<size_t>(reqs[i].max_new_tokens));
  }
  auto reseeded = reqs;
  for (auto& r : reseeded) r.sampling.seed += 1000;
  auto other = gen.generate(reseeded);
  ASSERT_TRUE(other.is_ok());
  int differing = 0;
  for (size_t i = 0; i < reqs.size(); ++i) differing += (*other)[i].tokens != (*batched)[i].tokens;
  EXPECT_GT(differing, 0);
}

TEST(Generator, RejectsBadRequestsNamingThem) {
  auto dir = testing::test_data_dir() / "fixtures" / "opt_pre_ln";
  auto ctx = make_context({});
  ASSERT_TRUE(ctx.is_ok());
  auto model = load_model_dir(**ctx, dir);
  ASSERT_TRUE(model.is_ok());
  Generator gen(**model);
  std::vector<GenerationRequest> reqs(2);
  reqs[0].prompt = {5, 6};
  reqs[0].max_new_tokens = 4;
  reqs[1].prompt = {};
  auto empty = gen.generate(reqs);
  ASSERT_FALSE(empty.is_ok());
  EXPECT_NE(empty.status().message().find("request 1"), std::string::npos);
  reqs[1].prompt = {7, 100000};
  auto vocab = gen.generate(reqs);
  ASSERT_FALSE(vocab.is_ok());
  EXPECT_NE(vocab.status().message().find("vocabulary"), std::string::npos);
  reqs[1].prompt = {7};
  reqs[1].max_new_tokens = 64;  // opt_pre_ln's context is 64 positions
  auto context = gen.generate(reqs);
  ASSERT_FALSE(context.is_ok());
  EXPECT_NE(context.status().message().find("context"), std::string::npos);
}

}  // namespace
}  // namespace strata::runtime
