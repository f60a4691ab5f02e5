#include "runtime/sampling.h"
#include "runtime/generator.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "testing/test_data.h"
#include "text/tokenizer.h"

namespace strata::runtime {
namespace {

const std::vector<float> kLogits = {1.0f, 3.0f, 2.0f, 0.5f, 2.5f};  // order: 1, 4, 2, 0, 3

std::vector<double> softmax(const std::vector<float>& l, double t) {
  std::vector<double> p(l.size());
  double mx = *std::max_element(l.begin(), l.end()), sum = 0;
  for (size_t i = 0; i < l.size(); ++i) sum += p[i] = std::exp((l[i] - mx) / t);
  for (auto& v : p) v /= sum;
  return p;
}

std::map<int, double> frequencies(const SamplingParams& params, int draws) {
  Sampler s(params);
  std::map<int, double> f;
  for (int i = 0; i < draws; ++i) f[s.sample(kLogits).token] += 1.0 / draws;
  return f;
}

TEST(Sampling, GreedyPicksArgmaxWithItsLogprob) {
  Sampler s(SamplingParams{});
  Sample out = s.sample(kLogits);
  EXPECT_EQ(out.token, 1);
  EXPECT_NEAR(out.logprob, std::log(softmax(kLogits, 1.0)[1]), 1e-6);
}

TEST(Sampling, TopKOfOneIsGreedy) {
  SamplingParams p{1.0f, 1, 1.0f, 7};
  EXPECT_TRUE(p.greedy());
  for (int i = 0; i < 20; ++i) EXPECT_EQ(Sampler(p).sample(kLogits).token, 1);
}

TEST(Sampling, TemperatureSamplingFollowsSoftmax) {
  const int kDraws = 200000;
  auto f = frequencies({0.7f, 0, 1.0f, 42}, kDraws);
  auto p = softmax(kLogits, 0.7);
  for (int t = 0; t < 5; ++t) EXPECT_NEAR(f[t], p[t], 4 * std::sqrt(p[t] / kDraws) + 1e-3) << t;
}

TEST(Sampling, TopKRenormalisesOverTheKBest) {
  const int kDraws = 200000;
  auto f = frequencies({1.0f, 2, 1.0f, 3}, kDraws);
  double z = std::exp(3.0) + std::exp(2.5);
  EXPECT_NEAR(f[1], std::exp(3.0) / z, 0.005);
  EXPECT_NEAR(f[4], std::exp(2.5) / z, 0.005);
  EXPECT_EQ(f.count(0) + f.count(2) + f.count(3), 0u);
}

TEST(Sampling, TopPKeepsTheSmallestPrefixReachingP) {
  auto p = softmax(kLogits, 1.0);
  // p[1] ~ 0.41, p[4] ~ 0.25, p[2] ~ 0.15: top_p 0.6 keeps tokens 1 and 4 only.
  ASSERT_LT(p[1], 0.6);
  ASSERT_GT(p[1] + p[4], 0.6);
  const int kDraws = 200000;
  auto f = frequencies({1.0f, 0, 0.6f, 5}, kDraws);
  EXPECT_NEAR(f[1], p[1] / (p[1] + p[4]), 0.005);
  EXPECT_NEAR(f[4], p[4] / (p[1] + p[4]), 0.005);
  EXPECT_EQ(f.size(), 2u);
  // A tiny top_p still keeps the best token.
  auto g = frequencies({1.0f, 0, 0.01f, 5}, 1000);
  EXPECT_EQ(g.size(), 1u);
  EXPECT_DOUBLE_EQ(g[1], 1.0);
}

TEST(Sampling, SameSeedSameTokensDifferentSeedDifferent) {
  SamplingParams a{1.0f, 0, 1.0f, 1}, b{1.0f, 0, 1.0f, 2};
  Sampler s1(a), s2(a), s3(b);
  std::vector<int> x, y, z;
  for (int i = 0; i < 64; ++i) {
    x.push_back(s1.sample(kLogits).token);
    y.push_back(s2.sample(kLogits).token);
    z.push_back(s3.sample(kLogits).token);
  }
  EXPECT_EQ(x, y);
  EXPECT_NE(x, z);
}

// A row of 2000 tokens (past the candidates the backend reports) in five classes of 400 with
// kLogits' values, each token a hair apart so the order is total. The reference is the
// definition: softmax(x / T) over the whole row, sorted, cut at top_k and at the smallest
// prefix reaching top_p, renormalised.
std::vector<float> wide_row() {
  std::vector<float> row(2000);
  for (size_t i = 0; i < row.size(); ++i) row[i] = kLogits[i % 5] + 1e-6f * static_cast<float>(i);
  return row;
}

std::map<int, double> reference_class_mass(const std::vector<float>& row, const SamplingParams& p) {
  std::vector<std::pair<double, int>> probs;
  double mx = *std::max_element(row.begin(), row.end()), sum = 0;
  for (size_t i = 0; i < row.size(); ++i) {
    probs.push_back({std::exp((row[i] - mx) / p.temperature), static_cast<int>(i)});
    sum += probs.back().first;
  }
  std::sort(probs.begin(), probs.end(), [](auto& a, auto& b) { return a.first > b.first; });
  if (p.top_k > 0) probs.resize(static_cast<size_t>(p.top_k));
  double kept_sum = 0;
  for (auto& q : probs) kept_sum += q.first;
  if (p.top_k == 0) kept_sum = sum;
  size_t n = 0;
  double cum = 0;
  while (n < probs.size() && cum < p.top_p) cum += probs[n++].first / kept_sum;
  std::map<int, double> mass;
  for (size_t i = 0; i < n; ++i) mass[probs[i].second % 5] += probs[i].first / kept_sum / cum;
  return mass;
}

TEST(Sampling, AVocabularyPastTheCandidatesFollowsTheDefinition) {
  const std::vector<float> row = wide_row();
  ASSERT_GT(static_cast<int32_t>(row.size()), kSampleCandidates);
  const int kDraws = 20000;
  for (const SamplingParams& p : {SamplingParams{0.8f, 0, 1.0f, 3}, SamplingParams{1.0f, 1200, 1.0f, 4},
                                  SamplingParams{1.0f, 0, 0.75f, 5}, SamplingParams{1.3f, 1100, 0.9f, 6}}) {
    const std::map<int, double> want = reference_class_mass(row, p);
    Sampler s(p);
    std::map<int, double> got;
    for (int i = 0; i < kDraws; ++i) got[s.sample(row).token % 5] += 1.0 / kDraws;
    for (int c = 0; c < 5; ++c) {
      const double w = want.count(c) ? want.at(c) : 0.0;
      if (w == 0.0) {
        EXPECT_EQ(got.count(c), 0u) << "class " << c << ", top_k " << p.top_k << ", top_p " << p.top_p;
      } else {
        EXPECT_NEAR(got[c], w, 5 * std::sqrt(w / kDraws) + 1e-3)
            << "class " << c << ", T " << p.temperature << ", top_k " << p.top_k << ", top_p " << p.top_p;
      }
    }
  }
}

// The changes to the logits as OpenAI and vLLM define them, on a row worked by hand.
TEST(ConstraintMaskCache, TheCachedAllowedSetsAreTheComputedOnes) {
  auto tok = text::Tokenizer::load_dir(testing::test_data_dir() / "fixtures" / "llama_text");
  ASSERT_TRUE(tok.is_ok());
  const int64_t V = (*tok)->vocab_size();
  const text::TokenTrie trie(**tok, V);
  ConstraintMaskCache cache;
  const auto json = text::Constraint::json_object();
  text::ConstraintState a = json->start();
  int64_t changes = 0;
  // The states of a text walked byte by byte, each masked with and without the cache, twice.
  // Of these, the cache computes a set once per state class (get() first, then fill() finds it).
  for (unsigned char c : std::string("{\"title\": \"abc def\", \"n\": [1, 2.5e3, true], \"o\": {}}")) {
    for (int round = 0; round < 2; ++round) {
      std::vector<uint8_t> plain;
      trie.allowed(a, plain);
      // Once by get(), once by a step's fill() asking for the state twice.
      const ConstraintMaskCache::Want want{&trie, json.get(), &a};
      const ConstraintMaskCache::Want twice[] = {want, want};
      const auto filled = round == 1 ? cache.fill(twice) : std::vector<const AllowedTokens*>{};
      if (round == 1) {
        ASSERT_EQ(filled.size(), 2u);
        EXPECT_EQ(filled[0], filled[1]);
      }
      const AllowedTokens& cached = round == 0 ? cache.get(trie, *json, a) : *filled[0];
      ASSERT_EQ(plain.size(), static_cast<size_t>(V));
      for (int64_t t = 0; t < V; ++t) ASSERT_EQ(cached.allows(t), plain[static_cast<size_t>(t)] != 0) << t;
      EXPECT_FALSE(cached.allows(V));
      EXPECT_EQ(cached.count(), std::count(plain.begin(), plain.end(), 1));
      EXPECT_EQ(cached.complete, a.complete());
      EXPECT_GT(std::count(plain.begin(), plain.end(), 1), 0);
    }
    ASSERT_TRUE(a.feed(c));
    ++changes;
  }
  EXPECT_TRUE(a.complete());
  EXPECT_LT(static_cast<int64_t>(cache.size()), changes) << "states repeat inside strings";
}

// One bit a token, whatever the length and wherever the set tokens fall in their words.
TEST(AllowedTokens, BitsAreTheBytesTheyWereMadeFrom) {
  uint64_t z = 12345;
  for (size_t n : {0, 1, 7, 8, 9, 63, 64, 65, 127, 128, 1000, 32001}) {
    std::vector<uint8_t> bytes(n);
    for (auto& b : bytes) {
      z = z * 6364136223846793005ull + 1442695040888963407ull;
      b = (z >> 60) < 5 ? 1 : 0;
    }
    if (n > 0) bytes.back() = 1;
    const AllowedTokens a = AllowedTokens::from_bytes(bytes, true);
    EXPECT_TRUE(a.complete);
    EXPECT_EQ(a.count(), std::count(bytes.begin(), bytes.end(), 1)) << n;
    for (size_t t = 0; t < n; ++t) ASSERT_EQ(a.allows(static_cast<int64_t>(t)), bytes[t] == 1) << n << " " << t;
    EXPECT_FALSE(a.allows(static_cast<int64_t>(n)));
    EXPECT_FALSE(a.allows(-1));
  }
}

// A mask longer than 64 tokens (whole words and bytes allowed, refused and mixed, a partial last
// byte), with the end token (65) allowed only once the text is complete.
TEST(AdjustedLogits, AMaskSetsEveryRefusedTokenToMinusInfinity) {
  const int64_t V = 150;
  std::vector<float> row(V);
  for (int64_t t = 0; t < V; ++t) row[static_cast<size_t>(t)] = static_cast<float>(t % 7);
  std::vector<uint8_t> allowed(V, 0);
  for (int64_t t = 0; t < V; t += 3) allowed[static_cast<size_t>(t)] = 1;
  for (int64_t t = 64; t < 128; ++t) allowed[static_cast<size_t>(t)] = 1;  // a whole word
  allowed[65] = 0;
  for (int64_t t = 136; t < 144; ++t) allowed[static_cast<size_t>(t)] = 0;  // a whole byte refused
  const std::vector<int64_t> eos = {65};
  GenerationRequest req;
  req.prompt = {0};
  for (const bool complete : {false, true}) {
    const AllowedTokens mask = AllowedTokens::from_bytes(allowed, complete);
    const auto x = adjusted_logits(req, {}, row, false, eos, &mask);
    for (int64_t t = 0; t < V; ++t) {
      const bool kept = allowed[static_cast<size_t>(t)] == 1 || (t == 65 && complete);
      EXPECT_EQ(x[static_cast<size_t>(t)], kept ? row[static_cast<size_t>(t)] : -INFINITY) << t << " " << complete;
    }
  }
}

TEST(AdjustedLogits, PenaltiesBiasMinPAndTheEndTokensAsDefined) {
  const std::vector<float> row = {2.0f, -1.0f, 0.5f, 3.0f, -2.0f, 1.0f};
  const std::vector<int64_t> eos = {5};
  GenerationRequest req;
  req.prompt = {0, 1};
  const std::vector<int32_t> generated = {2, 2, 4};
  // Nothing asked: the row as it is.
  EXPECT_EQ(adjusted_logits(req, generated, row, false, eos), row);
  // Repetition 2 over the prompt's and the generated tokens: positive halved, negative doubled.
  req.repetition_penalty = 2;
  EXPECT_EQ(adjusted_logits(req, generated, row, false, eos),
            (std::vector<float>{1.0f, -2.0f, 0.25f, 3.0f, -4.0f, 1.0f}));
  req.repetition_penalty = 1;
  // Presence 0.5 once per generated token, frequency 0.25 per occurrence (token 2 twice).
  req.presence_penalty = 0.5f;
  req.frequency_penalty = 0.25f;
  EXPECT_EQ(adjusted_logits(req, generated, row, false, eos),
            (std::vector<float>{2.0f, -1.0f, -0.5f, 3.0f, -2.75f, 1.0f}));
  req.presence_penalty = req.frequency_penalty = 0;
  // A bias per token; too early to end: the EOS and the stop tokens out.
  req.logit_bias = {{1, 10.0f}, {3, -100.0f}};
  req.stop_token_ids = {0};
  const auto early = adjusted_logits(req, generated, row, true, eos);
  EXPECT_EQ(early[1], 9.0f);
  EXPECT_EQ(early[3], -97.0f);
  EXPECT_EQ(early[0], -INFINITY);
  EXPECT_EQ(early[5], -INFINITY);
  req.ignore_eos = true;
  EXPECT_EQ(adjusted_logits(req, generated, row, true, eos)[5], 1.0f);
  req.logit_bias.clear();
  req.stop_token_ids.clear();
  // min_p 0.2 at temperature 1: p_t / p_max = exp(x_t - 3) >= 0.2 keeps x_t >= 3 + log(0.2) = 1.39.
  req.sampling.temperature = 1;
  req.min_p = 0.2f;
  const auto kept = adjusted_logits(req, generated, row, false, eos);
  EXPECT_EQ(kept[0], 2.0f);
  EXPECT_EQ(kept[3], 3.0f);
  for (size_t t : {1, 2, 4, 5}) EXPECT_EQ(kept[t], -INFINITY) << t;
  // At temperature 2 the floor is 3 + 2 log(0.2) = -0.22: token 2 (0.5) and 5 (1.0) come back.
  req.sampling.temperature = 2;
  const auto warmer = adjusted_logits(req, generated, row, false, eos);
  EXPECT_EQ(warmer[2], 0.5f);
  EXPECT_EQ(warmer[5], 1.0f);
  EXPECT_EQ(warmer[1], -INFINITY);
  // A constraint's mask comes first: min_p's floor is taken from the likeliest allowed token (0,
  // at 2.0), not from the disallowed 3: at temperature 1 it keeps x_t >= 2 + log(0.2) = 0.39.
  req.sampling.temperature = 1;
  const std::vector<uint8_t> allowed = {1, 1, 1, 0, 1, 1};
  const AllowedTokens mask = AllowedTokens::from_bytes(allowed, false);
  const auto masked = adjusted_logits(req, generated, row, false, eos, &mask);
  EXPECT_EQ(masked[0], 2.0f);
  EXPECT_EQ(masked[2], 0.5f);
  EXPECT_EQ(masked[5], 1.0f);
  for (size_t t : {1, 3, 4}) EXPECT_EQ(masked[t], -INFINITY) << t;
}

// The greedy choice under a constraint, from the row's best tokens or the allowed ones alone, is
// the argmax of the adjusted row: random rows with ties and -inf, masks from empty to full,
// complete or not, with and without end tokens, and statistics of 0-16 candidates.
TEST(ConstrainedArgmax, IsTheArgmaxOfTheAdjustedRow) {
  std::mt19937 rng(11);
  const std::vector<int64_t> eos = {2};
  int fast = 0, none = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    const int64_t V = 1 + static_cast<int64_t>(rng() % 300);
    std::vector<float> row(static_cast<size_t>(V));
    for (float& v : row) {
      const unsigned k = rng() % 20;
      v = k == 0 ? -INFINITY : static_cast<float>(rng() % 9);  // small range: many ties
    }
    const unsigned density = rng() % 5;  // 0: empty, 4: everything
    std::vector<uint8_t> allowed(static_cast<size_t>(V));
    for (auto& a : allowed) a = density == 4 || (density > 0 && rng() % (1u << (2 * density)) == 0) ? 0 : 1;
    if (density == 0) std::fill(allowed.begin(), allowed.end(), 0);
    if (density == 4) std::fill(allowed.begin(), allowed.end(), 1);
    if (V > 2) allowed[2] = 0;  // the end token has no text
    const bool complete = rng() % 2 == 0;
    GenerationRequest req;
    req.prompt = {0};
    req.ignore_eos = rng() % 3 == 0;
    if (rng() % 3 == 0) req.stop_token_ids = {static_cast<int32_t>(rng() % V)};
    std::vector<int32_t> ends(req.stop_token_ids.begin(), req.stop_token_ids.end());
    if (!req.ignore_eos) ends.push_back(2);
    const AllowedTokens mask = AllowedTokens::from_bytes(allowed, complete);
    const compute::LogitQuery q{0.0f, static_cast<int32_t>(rng() % 17)};
    const Tensor t = Tensor::wrap(row.data(), DType::kF32, {1, V}, MemoryKind::kHost, nullptr);
    const compute::LogitStats st = compute::logit_stats_on_host(t, {&q, 1}).value()[0];
    const std::optional<int32_t> got = constrained_argmax(st, row, mask, ends);
    const auto x = adjusted_logits(req, {}, row, false, eos, &mask);
    const bool any = std::any_of(x.begin(), x.end(), [](float v) { return v > -INFINITY; });
    if (!any) {
      EXPECT_FALSE(got.has_value()) << trial;
      ++none;
      continue;
    }
    ASSERT_TRUE(got.has_value()) << trial;
    const int32_t want = static_cast<int32_t>(std::max_element(x.begin(), x.end()) - x.begin());
    EXPECT_EQ(*got, want) << trial << " V " << V << " candidates " << q.candidates;
    fast += !st.top.empty();
  }
  EXPECT_GT(fast, 500);
  EXPECT_GT(none, 50);
}

// Temperature sampling over a constraint's allowed tokens draws, for the same seed, the tokens the
// adjusted row's statistics and draw give: rows of 1025-3000 tokens (past the backend's
// candidates), masks from a few tokens to all, 20 draws from one sampler each.
TEST(Sampling, DrawingFromTheAllowedTokensIsDrawingFromTheMaskedRow) {
  std::mt19937 rng(5);
  const std::vector<int64_t> eos = {};
  int draws = 0, none = 0;
  for (int trial = 0; trial < 200; ++trial) {
    const int64_t V = kSampleCandidates + 1 + static_cast<int64_t>(rng() % 2000);
    std::vector<float> row(static_cast<size_t>(V));
    std::normal_distribution<float> normal(0.0f, 3.0f);
    for (float& v : row) v = rng() % 50 == 0 ? -INFINITY : normal(rng);
    const unsigned every = 1u << (rng() % 10);  // 1: every token; 512: a few
    std::vector<uint8_t> allowed(static_cast<size_t>(V));
    for (auto& a : allowed) a = rng() % every == 0 ? 1 : 0;
    if (trial % 50 == 0) std::fill(allowed.begin(), allowed.end(), 0);
    const AllowedTokens mask = AllowedTokens::from_bytes(allowed, false);
    SamplingParams p;
    p.temperature = 0.3f + static_cast<float>(rng() % 20) / 10.0f;
    p.seed = rng();
    ASSERT_TRUE(Sampler(p).draws_from_whole_row(static_cast<int32_t>(V)));
    Sampler fast(p), slow(p);
    GenerationRequest req;
    req.prompt = {0};
    req.sampling = p;
    const auto x = adjusted_logits(req, {}, row, false, eos, &mask);
    const compute::LogitQuery q = logit_query(p, 0);
    const Tensor t = Tensor::wrap(const_cast<float*>(x.data()), DType::kF32, {1, V}, MemoryKind::kHost, nullptr);
    const compute::LogitStats st = compute::logit_stats_on_host(t, {&q, 1}).value()[0];
    if (!(st.max_logit > -INFINITY)) {
      EXPECT_FALSE(fast.draw_from_allowed(row, mask.words).has_value());
      ++none;
      continue;
    }
    for (int d = 0; d < 20; ++d, ++draws) {
      const std::optional<int32_t> got = fast.draw_from_allowed(row, mask.words);
      ASSERT_TRUE(got.has_value());
      EXPECT_EQ(*got, slow.sample(st, x).token) << "trial " << trial << " draw " << d;
      EXPECT_TRUE(mask.allows(*got));
    }
  }
  EXPECT_GT(draws, 3000);
  EXPECT_GE(none, 4);
  // Not a whole-row draw: greedy, a top_k under the vocabulary, a top_p below 1.
  SamplingParams p;
  EXPECT_FALSE(Sampler(p).draws_from_whole_row(5000));
  p.temperature = 1;
  EXPECT_TRUE(Sampler(p).draws_from_whole_row(5000));
  p.top_k = 40;
  EXPECT_FALSE(Sampler(p).draws_from_whole_row(5000));
  p.top_k = 0;
  p.top_p = 0.9f;
  EXPECT_FALSE(Sampler(p).draws_from_whole_row(5000));
}

TEST(Sampling, ValidateNamesTheField) {
  EXPECT_NE(SamplingParams({-1.0f, 0, 1.0f, 0}).validate().message().find("temperature"), std::string::npos);
  EXPECT_NE(SamplingParams({1.0f, -2, 1.0f, 0}).validate().message().find("top_k"), std::string::npos);
  EXPECT_NE(SamplingParams({1.0f, 0, 0.0f, 0}).validate().message().find("top_p"), std::string::npos);
  EXPECT_NE(SamplingParams({1.0f, 0, 1.5f, 0}).validate().message().find("top_p"), std::string::npos);
  EXPECT_TRUE(SamplingParams({1.0f, 0, 1.0f, 0}).validate().is_ok());
}

}  // namespace
}  // namespace strata::runtime
