#include "runtime/sampling.h"
#include "runtime/generator.h"
#include "runtime/token_choice.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "common/thread_pool.h"
#include "compute/backend.h"
#include "testing/test_data.h"
#include "text/constraint.h"
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

// sample()'s choice made in two parts (decide() on the statistics, then, when they do not decide,
// the draw over the whole row or the choice from the host row) is sample()'s, draw for draw, for
// the same seed: rows of 1-3000 tokens with ties and -inf, greedy, plain temperature, top_k
// under and past the candidates, top_p, and the statistics the backend is asked for.
TEST(Sampling, DecidingInTwoPartsIsSampling) {
  std::mt19937 rng(17);
  std::map<Sampler::Decision::Kind, int> kinds;
  for (int trial = 0; trial < 400; ++trial) {
    const int64_t V = 1 + static_cast<int64_t>(rng() % 3000);
    std::vector<float> row(static_cast<size_t>(V));
    std::normal_distribution<float> normal(0.0f, 2.0f);
    for (float& v : row) v = rng() % 40 == 0 ? -INFINITY : std::round(normal(rng) * 4) / 4;  // ties
    row[rng() % V] = 5.0f;  // a finite maximum
    SamplingParams p;
    p.seed = rng();
    switch (trial % 5) {
      case 0: break;  // greedy
      case 1: p.temperature = 0.7f; break;
      case 2: p.temperature = 1.0f, p.top_k = 1 + static_cast<int32_t>(rng() % 2000); break;
      case 3: p.temperature = 1.2f, p.top_p = 0.5f + static_cast<float>(rng() % 50) / 100.0f; break;
      case 4: p.temperature = 0.9f, p.top_k = 1500, p.top_p = 0.95f; break;
    }
    const compute::LogitQuery q = logit_query(p, 0, V);
    const Tensor t = Tensor::wrap(row.data(), DType::kF32, {1, V}, MemoryKind::kHost, nullptr);
    const compute::LogitStats st = compute::logit_stats_on_host(t, {&q, 1}).value()[0];
    Sampler whole(p), parts(p);
    for (int d = 0; d < 10; ++d) {
      const int32_t want = whole.sample(st, row).token;
      const Sampler::Decision dec = parts.decide(st, static_cast<int32_t>(V));
      ++kinds[dec.kind];
      int32_t got = dec.token;
      if (dec.kind == Sampler::Decision::Kind::kWholeRow) got = compute::draw_in_row(row, dec.draw);
      if (dec.kind == Sampler::Decision::Kind::kRow) got = parts.choose_from_row(st, row);
      ASSERT_EQ(got, want) << "trial " << trial << " draw " << d;
      EXPECT_GT(row[got], -INFINITY);
    }
  }
  EXPECT_GT(kinds[Sampler::Decision::Kind::kToken], 500);
  EXPECT_GT(kinds[Sampler::Decision::Kind::kWholeRow], 200);
  EXPECT_GT(kinds[Sampler::Decision::Kind::kRow], 50);
}

// The backend's adjusted copies (from a sequence's edits kept token by token) are
// adjusted_logits() of their rows (the CPU backend's, rows over its threads), its draws draw_in_row() and its values the row's; bad arguments are named.
TEST(LogitAdjustment, TheBackendsCopiesDrawsAndValuesAreTheRowsOwn) {
  std::mt19937 rng(23);
  ThreadPool pool(2);
  auto backend = compute::make_cpu_backend(pool);
  const int64_t R = 40, V = 700;
  Tensor logits = Tensor::host(DType::kF32, {R, V});
  std::normal_distribution<float> normal(0.0f, 2.0f);
  for (int64_t i = 0; i < R * V; ++i) logits.data<float>()[i] = normal(rng);
  const std::vector<int64_t> eos = {2};
  std::vector<compute::RowAdjustment> adjustments;
  std::vector<std::vector<float>> want;
  for (int64_t r = 0; r < R; r += 1 + static_cast<int64_t>(rng() % 2)) {
    GenerationRequest req;
    req.prompt = {static_cast<int32_t>(rng() % V), 7, 7};
    req.sampling.temperature = rng() % 2 ? 1.0f : 0.0f;
    req.repetition_penalty = rng() % 2 ? 1.3f : 1.0f;
    req.presence_penalty = rng() % 2 ? 0.5f : 0.0f;
    req.frequency_penalty = rng() % 2 ? 0.25f : 0.0f;
    req.min_p = rng() % 2 ? 0.05f : 0.0f;
    if (rng() % 2) req.logit_bias = {{3, 4.0f}, {static_cast<int32_t>(rng() % V), -2.5f}};
    if (rng() % 3 == 0) req.stop_token_ids = {9};
    const std::vector<int32_t> generated = {7, 11, 11, static_cast<int32_t>(rng() % V)};
    const bool too_early = rng() % 2;
    std::vector<uint8_t> bytes(static_cast<size_t>(V));
    for (auto& b : bytes) b = rng() % 3 == 0;
    const AllowedTokens mask = AllowedTokens::from_bytes(bytes, rng() % 2);
    const AllowedTokens* m = rng() % 2 ? &mask : nullptr;
    const std::span<const float> row{logits.data<float>() + r * V, static_cast<size_t>(V)};
    want.push_back(adjusted_logits(req, generated, row, too_early, eos, m));
    TokenEdits edits(req, V);
    for (int32_t t : generated) edits.generated(t);
    adjustments.push_back(logit_adjustment(req, edits.edits(), too_early, eos, m, r, V));
  }
  auto got = backend->adjust_logits(logits, adjustments);
  ASSERT_TRUE(got.is_ok()) << got.status().to_string();
  ASSERT_EQ(got->dim(0), static_cast<int64_t>(adjustments.size()));
  for (size_t i = 0; i < want.size(); ++i)
    EXPECT_EQ(std::vector<float>(got->data<float>() + static_cast<int64_t>(i) * V,
                                 got->data<float>() + static_cast<int64_t>(i + 1) * V),
              want[i])
        << "adjustment " << i;
  std::vector<compute::RowDraw> draws;
  for (int64_t r = 0; r < R; ++r) {
    const float* x = logits.data<float>() + r * V;
    compute::RowDraw d{r, 0.5f + static_cast<float>(rng() % 10) / 5.0f, *std::max_element(x, x + V), 0.0};
    double sum = 0;
    for (int64_t i = 0; i < V; ++i) sum += std::exp(x[i] / static_cast<double>(d.temperature) - d.max_logit / static_cast<double>(d.temperature));
    d.target = std::uniform_real_distribution<double>(0.0, sum)(rng);
    draws.push_back(d);
  }
  auto drawn = backend->draw_tokens(logits, draws);
  ASSERT_TRUE(drawn.is_ok()) << drawn.status().to_string();
  for (size_t i = 0; i < draws.size(); ++i) {
    const float* x = logits.data<float>() + draws[i].row * V;
    const int32_t token = (*drawn)[i].token;
    EXPECT_EQ(token, compute::draw_in_row({x, static_cast<size_t>(V)}, draws[i])) << i;
    EXPECT_EQ((*drawn)[i].logit, x[token]) << i;
    // The draw's token is the first whose running sum passes the target (summed here in order).
    const double inv_t = 1.0 / draws[i].temperature;
    double before = 0;
    for (int32_t t = 0; t < token; ++t) before += std::exp(x[t] * inv_t - draws[i].max_logit * inv_t);
    EXPECT_LE(before, draws[i].target + 1e-9) << i;
    EXPECT_GT(before + std::exp(x[token] * inv_t - draws[i].max_logit * inv_t), draws[i].target - 1e-9) << i;
  }
  // A draw under a mask is the draw over the row's copy with the refused tokens at -inf.
  std::vector<uint64_t> half(static_cast<size_t>((V + 63) / 64), 0);
  for (int64_t t = 0; t < V; t += 2) half[t / 64] |= uint64_t{1} << (t % 64);
  std::vector<compute::RowDraw> masked = draws;
  for (auto& d : masked) d.allowed = half;
  compute::RowAdjustment refuse_odd;
  refuse_odd.allowed = half;
  auto masked_drawn = backend->draw_tokens(logits, masked);
  ASSERT_TRUE(masked_drawn.is_ok()) << masked_drawn.status().to_string();
  for (size_t i = 0; i < masked.size(); ++i) {
    std::vector<float> copy(logits.data<float>() + masked[i].row * V, logits.data<float>() + (masked[i].row + 1) * V);
    ASSERT_TRUE(compute::adjust_row(copy, refuse_odd).is_ok());
    compute::RowDraw plain = masked[i];
    plain.allowed = {};
    EXPECT_EQ((*masked_drawn)[i].token, compute::draw_in_row(copy, plain)) << i;
    EXPECT_EQ((*masked_drawn)[i].token % 2, 0) << i;
  }
  const std::vector<std::pair<int64_t, int32_t>> at = {{0, 0}, {39, 699}, {5, 123}};
  auto values = backend->logit_values(logits, at);
  ASSERT_TRUE(values.is_ok());
  for (size_t i = 0; i < at.size(); ++i) EXPECT_EQ((*values)[i], logits.data<float>()[at[i].first * V + at[i].second]);
  // Rows, tokens and masks outside the logits, and a temperature of 0, are named.
  compute::RowAdjustment bad;
  bad.row = R;
  EXPECT_NE(backend->adjust_logits(logits, {&bad, 1}).status().message().find("row 40"), std::string::npos);
  bad.row = 0;
  bad.edits = {{static_cast<int32_t>(V)}};
  EXPECT_NE(backend->adjust_logits(logits, {&bad, 1}).status().message().find("token 700"), std::string::npos);
  bad.edits.clear();
  bad.allowed.assign(3, 0);
  EXPECT_NE(backend->adjust_logits(logits, {&bad, 1}).status().message().find("mask of 3 words"), std::string::npos);
  const compute::RowDraw cold{0, 0.0f, 0.0f, 0.0};
  EXPECT_NE(backend->draw_tokens(logits, {&cold, 1}).status().message().find("temperature"), std::string::npos);
  compute::RowDraw short_mask{0, 1.0f, 0.0f, 0.0};
  short_mask.allowed = std::span(half).first(3);
  EXPECT_NE(backend->draw_tokens(logits, {&short_mask, 1}).status().message().find("mask of 3 words"), std::string::npos);
  const std::pair<int64_t, int32_t> outside{0, -1};
  EXPECT_FALSE(backend->logit_values(logits, {&outside, 1}).is_ok());
}

// What the backend is asked for: nothing to sort for greedy or plain temperature sampling (a draw
// over the whole row), the top_k best, or the 1,024 best for a nucleus; at least top_logprobs.
TEST(Sampling, TheStatisticsAskedForAreThoseTheChoiceNeeds) {
  const int64_t V = 32000;
  auto ask = [&](float t, int32_t k, float p, int32_t top) {
    const compute::LogitQuery q = logit_query(SamplingParams{t, k, p, 0}, top, V);
    return std::pair(q.temperature, q.candidates);
  };
  EXPECT_EQ(ask(0.0f, 0, 1.0f, 0), std::pair(0.0f, 0));
  EXPECT_EQ(ask(0.0f, 0, 1.0f, 5), std::pair(0.0f, 5));
  EXPECT_EQ(ask(1.0f, 0, 1.0f, 0), std::pair(1.0f, 0));
  EXPECT_EQ(ask(0.8f, 50000, 1.0f, 2), std::pair(0.8f, 2));
  EXPECT_EQ(ask(0.8f, 40, 1.0f, 0), std::pair(0.8f, 40));
  EXPECT_EQ(ask(0.8f, 40, 1.0f, 60), std::pair(0.8f, 60));
  EXPECT_EQ(ask(0.8f, 5000, 1.0f, 0), std::pair(0.8f, kSampleCandidates));
  EXPECT_EQ(ask(0.8f, 0, 0.9f, 0), std::pair(0.8f, kSampleCandidates));
}

// A step's choices on the CPU backend: greedy rows take the argmax with its log-softmax and the
// request's top logprobs, best first; a row holding a NaN ends its sequence with an error naming
// the token it was at; an adjusted row chooses from its changed logits but reports the model's
// logprob; logits of the wrong row count fail the step.
TEST(ChooseTokens, GreedyLogprobsTopLogprobsAndErrorsAsDefined) {
  ThreadPool pool(1);
  auto backend = compute::make_cpu_backend(pool);
  const std::vector<float> row = {1.0f, 3.0f, 2.0f, 0.5f};
  Tensor logits = Tensor::host(DType::kF32, {3, 4});
  for (int r = 0; r < 3; ++r) std::copy(row.begin(), row.end(), logits.data<float>() + r * 4);
  logits.data<float>()[1 * 4 + 2] = NAN;
  GenerationRequest plain, nan_row, biased;
  plain.top_logprobs = 2;
  biased.logit_bias = {{0, 5.0f}};  // token 0 becomes the largest: 6 against 3
  const std::vector<int64_t> eos = {};
  TokenEdits edits(biased, 4);
  std::vector<Sampler> samplers(3, Sampler(SamplingParams{}));
  const std::vector<RowToChoose> rows = {{&plain, &samplers[0], {}, 0, nullptr},
                                         {&nan_row, &samplers[1], {}, 7, nullptr},
                                         {&biased, &samplers[2], edits.edits(), 0, nullptr}};
  auto got = choose_tokens(*backend, logits, rows, eos, 3);
  ASSERT_TRUE(got.is_ok()) << got.status().to_string();
  double sum = 0;
  for (float v : row) sum += std::exp(v - 3.0);
  const float lse = static_cast<float>(3.0 + std::log(sum));
  EXPECT_EQ((*got)[0].s.token, 1);
  EXPECT_NEAR((*got)[0].s.logprob, 3.0f - lse, 1e-6);
  ASSERT_EQ((*got)[0].top.size(), 2u);
  EXPECT_EQ((*got)[0].top[0].first, 1);
  EXPECT_EQ((*got)[0].top[1].first, 2);
  EXPECT_NEAR((*got)[0].top[1].second, 2.0f - lse, 1e-6);
  EXPECT_NE((*got)[1].error.find("NaN"), std::string::npos);
  EXPECT_NE((*got)[1].error.find("generated token 7"), std::string::npos);
  EXPECT_EQ((*got)[2].s.token, 0);
  EXPECT_NEAR((*got)[2].s.logprob, 1.0f - lse, 1e-6);  // the model's, not the biased row's
  EXPECT_TRUE((*got)[2].error.empty());
  EXPECT_FALSE(choose_tokens(*backend, logits, std::span(rows).first(2), eos, 3).is_ok());
}

// A backend of host logits that only samples (the defaults' host statistics, copies, draws and
// values) and counts how often the values at chosen tokens are looked up and rows are copied.
class SamplingOnlyBackend final : public compute::Backend {
 public:
  std::string name() const override { return "sampling only"; }
  MemoryKind memory_kind() const override { return MemoryKind::kHost; }
  DType activation_dtype() const override { return DType::kF32; }
  Result<Tensor> allocate(DType dtype, Shape shape) override { return Tensor::host(dtype, std::move(shape)); }
  Result<Tensor> upload(const Tensor&, compute::WeightKind) override { return unsupported("upload"); }
  Tensor to_host_f32(const Tensor& t) override { return t; }
  void linear(const Tensor&, const Tensor&, const Tensor*, Tensor&) override { unused(); }
  void layer_norm(const Tensor&, const Tensor*, const Tensor*, float, Tensor&) override { unused(); }
  void rms_norm(const Tensor&, const Tensor&, float, Tensor&) override { unused(); }
  void add(const Tensor&, const Tensor&, Tensor&) override { unused(); }
  void relu(Tensor&) override { unused(); }
  void silu_mul(const Tensor&, const Tensor&, Tensor&) override { unused(); }
  void embedding(const Tensor&, std::span<const int32_t>, Tensor&) override { unused(); }
  void gather_rows(const Tensor&, std::span<const int32_t>, Tensor&) override { unused(); }
  void scatter_add_rows(const Tensor&, std::span<const int32_t>, std::span<const float>, Tensor&) override { unused(); }
  void rope(Tensor&, std::span<const int32_t>, const compute::RopeTable&) override { unused(); }
  void attention(const Tensor&, const Tensor&, const Tensor&, compute::LayerKvCache&,
                 std::span<const compute::SeqSpan>, const compute::AttentionParams&, Tensor&) override {
    unused();
  }
  Result<std::vector<float>> logit_values(const Tensor& logits, std::span<const std::pair<int64_t, int32_t>> at) override {
    looked_up += static_cast<int>(at.size());
    return compute::Backend::logit_values(logits, at);
  }
  Result<Tensor> adjust_logits(const Tensor& logits, std::span<const compute::RowAdjustment> a) override {
    copied += static_cast<int>(a.size());
    return compute::Backend::adjust_logits(logits, a);
  }
  int looked_up = 0;
  int copied = 0;  // adjusted copies made

 private:
  static void unused() { STRATA_CHECK(false, "sampling only"); }
};

// A row whose changes only refuse tokens (a structured-output mask, an end token before
// min_tokens) keeps the model's values elsewhere: its greedy choice's logprob comes from the
// copy's own statistics, with no look-up; a biased row's choice is looked up in the model's row.
TEST(ChooseTokens, ARowWhoseTokensAreOnlyRefusedNeedsNoLookUpForItsGreedyLogprob) {
  SamplingOnlyBackend backend;
  const std::vector<float> row = {1.0f, 3.0f, 2.0f, 0.5f};
  Tensor logits = Tensor::host(DType::kF32, {3, 4});
  for (int r = 0; r < 3; ++r) std::copy(row.begin(), row.end(), logits.data<float>() + r * 4);
  double sum = 0;
  for (float v : row) sum += std::exp(v - 3.0);
  const float lse = static_cast<float>(3.0 + std::log(sum));
  AllowedTokens allowed;  // tokens 0 and 2
  allowed.words.assign(1, (uint64_t{1} << 0) | (uint64_t{1} << 2));
  GenerationRequest masked, too_early, biased;
  masked.constraint = text::Constraint::json_object();
  too_early.min_tokens = 3;  // the end token 1, the argmax, is refused
  biased.logit_bias = {{3, 4.0f}};  // token 3 becomes the largest: 4.5 against 3
  TokenEdits edits(biased, 4);
  std::vector<Sampler> samplers(3, Sampler(SamplingParams{}));
  const std::vector<RowToChoose> rows = {{&masked, &samplers[0], {}, 0, &allowed},
                                         {&too_early, &samplers[1], {}, 0, nullptr},
                                         {&biased, &samplers[2], edits.edits(), 0, nullptr}};
  const std::vector<int64_t> eos = {1};
  auto got = choose_tokens(backend, logits, rows, eos, 3);
  ASSERT_TRUE(got.is_ok()) << got.status().to_string();
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ((*got)[r].s.token, 2) << r;
    EXPECT_NEAR((*got)[r].s.logprob, 2.0f - lse, 1e-6) << r;
  }
  EXPECT_EQ((*got)[2].s.token, 3);
  EXPECT_NEAR((*got)[2].s.logprob, 0.5f - lse, 1e-6);  // the model's 0.5, not the biased 4.5
  EXPECT_EQ(backend.looked_up, 1);  // the biased row's alone
  EXPECT_EQ(backend.copied, 1);     // the refusing rows are chosen under masks, without copies
}

// Rows whose changes only refuse tokens, drawn at a temperature under their masks from the model's
// own rows, choose what the host chooses from their adjusted copies with the same seeds, with the
// model's logprobs and no copy or look-up; a top_k under a mask still takes a copy.
TEST(ChooseTokens, RowsThatOnlyRefuseTokensAreDrawnUnderTheirMasksAsFromTheirCopies) {
  SamplingOnlyBackend backend;
  const int64_t V = 300, R = 6;
  std::mt19937 rng(3);
  std::normal_distribution<float> logit(0.0f, 2.0f);
  Tensor logits = Tensor::host(DType::kF32, {R, V});
  for (int64_t i = 0; i < R * V; ++i) logits.data<float>()[i] = logit(rng);
  AllowedTokens allowed;  // every third token, and the end token 7 once complete
  allowed.words.assign(static_cast<size_t>((V + 63) / 64), 0);
  for (int64_t t = 0; t < V; t += 3) allowed.words[t / 64] |= uint64_t{1} << (t % 64);
  AllowedTokens complete = allowed;
  complete.complete = true;
  const std::vector<int64_t> eos = {7};
  std::vector<GenerationRequest> reqs(R);
  std::vector<const AllowedTokens*> masks = {&allowed, &complete, nullptr, &allowed, &complete, &allowed};
  for (int64_t r = 0; r < R; ++r) {
    reqs[r].sampling = SamplingParams{0.5f + 0.3f * static_cast<float>(r), 0, 1.0f, 100 + static_cast<uint64_t>(r)};
    if (masks[r]) reqs[r].constraint = text::Constraint::json_object();
  }
  reqs[2].min_tokens = 5;      // no mask: the end token refused
  reqs[4].min_tokens = 5;      // complete, but too early to end
  reqs[5].sampling.top_k = 4;  // needs candidates: its copy's
  std::vector<Sampler> samplers, reference;
  for (int64_t r = 0; r < R; ++r) {
    samplers.emplace_back(reqs[r].sampling);
    reference.emplace_back(reqs[r].sampling);
  }
  std::vector<RowToChoose> rows;
  for (int64_t r = 0; r < R; ++r) rows.push_back({&reqs[r], &samplers[r], {}, 1, masks[r]});
  for (int step = 0; step < 20; ++step) {
    auto got = choose_tokens(backend, logits, rows, eos, R);
    ASSERT_TRUE(got.is_ok()) << got.status().to_string();
    for (int64_t r = 0; r < R; ++r) {
      const std::span<const float> row{logits.data<float>() + r * V, static_cast<size_t>(V)};
      const std::vector<float> copy = adjusted_logits(reqs[r], {}, row, rows[r].generated < reqs[r].min_tokens, eos, masks[r]);
      const compute::LogitQuery q = logit_query(reqs[r].sampling, 0, V);
      const Tensor t = Tensor::wrap(const_cast<float*>(copy.data()), DType::kF32, {1, V}, MemoryKind::kHost, nullptr);
      const int32_t want = reference[r].sample(compute::logit_stats_on_host(t, {&q, 1}).value()[0], copy).token;
      EXPECT_EQ((*got)[r].s.token, want) << "row " << r << " step " << step;
      EXPECT_NEAR((*got)[r].s.logprob, token_logprob(row, want), 1e-5) << "row " << r;
      EXPECT_TRUE(std::isfinite(copy[static_cast<size_t>(want)])) << "row " << r;
    }
  }
  EXPECT_EQ(backend.copied, 20);  // the top_k row's, each step
  EXPECT_EQ(backend.looked_up, 0);  // every value is in a draw's answer or a copy's candidates
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
