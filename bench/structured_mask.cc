// strata_structured_mask: the CPU cost of structured output's token masks. A batch of sequences
// (256 by default), each under a constraint (JSON Schemas of several shapes, a regex, a choice,
// JSON mode), is walked token by token as the generator does: every step each sequence gets its
// allowed set from a ConstraintMaskCache (as in one generate job), picks an allowed token at
// random and feeds it (the step's missing sets computed first on --threads threads, as the
// generator does). Reported per decode step of the whole batch (min/median/max over
// repetitions, each with a fresh cache, or with --warm one cache kept over them all, as a job's
// later requests find it: the first repetition is then the cold one, the others the steady state):
// the allowed sets (trie walks plus cache look-ups), the first step's alone (a cold cache: every
// sequence at its constraint's start) and applying the masks to rows of logits. The vocabulary is a tokenizer's (--tokenizer DIR) grown to
// --vocab tokens with concatenations of two of its tokens (there is no 128K tokenizer in the
// repository). Output: one JSON line per case on stdout, then a Markdown table.

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "compute/logit_adjust.h"
#include "runtime/generator.h"
#include "text/constraint.h"
#include "text/token_trie.h"
#include "text/tokenizer.h"

namespace strata {
namespace {

using nlohmann::ordered_json;

const char* const kSchemas[] = {
    R"({"type":"object","properties":{"name":{"type":"string","maxLength":24},"age":{"type":"integer","minimum":0,"maximum":120},
        "email":{"type":"string","format":"email"}},"required":["name","age"],"additionalProperties":false})",
    R"({"type":"object","properties":{"label":{"type":"string","enum":["positive","negative","neutral"]},"score":{"type":"number","minimum":0,"maximum":1},
        "tags":{"type":"array","items":{"type":"string","maxLength":12},"maxItems":4}},"required":["label","score","tags"]})",
    R"({"$defs":{"n":{"type":"object","properties":{"v":{"type":"integer"},"kids":{"type":"array","items":{"$ref":"#/$defs/n"},"maxItems":2}},"required":["v"]}},
        "type":"object","properties":{"tree":{"$ref":"#/$defs/n"},"note":{"type":"string"}},"required":["tree","note"]})",
    R"({"type":"object","properties":{"id":{"type":"string","format":"uuid"},"day":{"type":"string","format":"date"},"summary":{"type":"string"},
        "ok":{"type":"boolean"}},"required":["id","day","summary","ok"]})",
};

struct Timing {
  double min, median, max;
};
Timing summarise(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v.front(), v[v.size() / 2], v.back()};
}
double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int run(int argc, char** argv) {
  CLI::App app{"structured output's per-token masking cost"};
  std::string tokenizer = "tests/data/tokenizers/gpt2", commit = "unknown", kind = "mixed";
  int64_t vocab = 128256;
  int sequences = 256, steps = 48, reps = 3;
  app.add_option("--tokenizer", tokenizer, "directory with tokenizer.json");
  app.add_option("--vocab", vocab, "vocabulary size (grown from the tokenizer's)");
  app.add_option("--sequences", sequences, "constrained sequences in the batch");
  app.add_option("--steps", steps, "decode steps");
  app.add_option("--reps", reps, "repetitions");
  int threads = 0;
  app.add_option("--threads", threads, "threads computing a step's missing allowed sets (0: one per core; 1: none besides the caller)");
  app.add_option("--kind", kind, "mixed, schema, regex, choice or json_object");
  app.add_option("--commit", commit, "commit to print");
  bool warm = false;
  app.add_flag("--warm", warm, "keep one mask cache over the repetitions (the first is cold, the others the steady state)");
  CLI11_PARSE(app, argc, argv);

  auto tok = text::Tokenizer::load_dir(tokenizer);
  if (!tok.is_ok()) {
    std::fprintf(stderr, "%s\n", tok.status().to_string().c_str());
    return 1;
  }
  // The tokenizer's token texts, then concatenations of two of them, to `vocab` distinct tokens.
  const text::TokenTrie base(**tok, (*tok)->vocab_size());
  std::vector<std::string> texts;
  std::set<std::string> seen;
  for (int32_t t = 0; t < base.vocab(); ++t) {
    texts.push_back(base.text(t));
    seen.insert(base.text(t));
  }
  std::mt19937_64 rng(1);
  const int64_t real = static_cast<int64_t>(texts.size());
  while (static_cast<int64_t>(texts.size()) < vocab) {
    std::string s = texts[rng() % real] + texts[rng() % real];
    if (s.size() > 16 || !seen.insert(s).second) continue;
    texts.push_back(std::move(s));
  }
  const text::TokenTrie trie(texts);

  std::vector<std::shared_ptr<const text::Constraint>> constraints;
  for (const char* s : kSchemas) constraints.push_back(*text::Constraint::json_schema(ordered_json::parse(s), "schema"));
  const auto regex = *text::Constraint::regex("[A-Z][a-z]{2,10}( [A-Z][a-z]{2,10}){0,2}, born \\d{4}-\\d{2}-\\d{2}\\.", "regex");
  const auto choice = *text::Constraint::choice({"positive", "negative", "neutral", "mixed", "unknown"}, "choice");
  const auto json_object = text::Constraint::json_object();
  auto constraint_of = [&](int i) -> std::shared_ptr<const text::Constraint> {
    if (kind == "schema") return constraints[static_cast<size_t>(i) % constraints.size()];
    if (kind == "regex") return regex;
    if (kind == "choice") return choice;
    if (kind == "json_object") return json_object;
    switch (i % 7) {
      case 4: return regex;
      case 5: return choice;
      case 6: return json_object;
      default: return constraints[static_cast<size_t>(i % 4)];
    }
  };

  std::vector<double> mask_ms, apply_ms, per_seq_us;
  int64_t masked = 0, sets = 0;
  double first_step_ms = 0;
  auto kept = std::make_unique<runtime::ConstraintMaskCache>(threads);
  for (int rep = 0; rep < reps; ++rep) {
    if (!warm && rep > 0) kept = std::make_unique<runtime::ConstraintMaskCache>(threads);
    runtime::ConstraintMaskCache& cache = *kept;
    const int64_t misses_before = cache.misses();
    std::vector<text::ConstraintState> states;
    std::vector<std::shared_ptr<const text::Constraint>> cs;
    for (int i = 0; i < sequences; ++i) {
      cs.push_back(constraint_of(i));
      states.push_back(cs.back()->start());
    }
    std::vector<bool> done(static_cast<size_t>(sequences), false);
    std::mt19937_64 pick(static_cast<uint64_t>(rep) + 7);
    std::vector<float> row(static_cast<size_t>(vocab), 0.5f);
    compute::RowAdjustment adjustment;
    double mask_total = 0, apply_total = 0;
    int64_t seq_steps = 0;
    for (int step = 0; step < steps; ++step) {
      // As the generator does: the step's missing sets first, side by side, then each sequence's.
      std::vector<runtime::ConstraintMaskCache::Want> wants;
      for (int i = 0; i < sequences; ++i)
        if (!done[static_cast<size_t>(i)]) wants.push_back({&trie, cs[static_cast<size_t>(i)].get(), &states[static_cast<size_t>(i)]});
      const double f0 = now_ms();
      const std::vector<const runtime::AllowedTokens*> sets = cache.fill(wants);
      size_t next_set = 0;
      const double fill_ms = now_ms() - f0;
      mask_total += fill_ms;
      if (rep == 0 && step == 0) first_step_ms += fill_ms;
      for (int i = 0; i < sequences; ++i) {
        if (done[static_cast<size_t>(i)]) continue;
        const double t0 = now_ms();
        const runtime::AllowedTokens& a = *sets[next_set++];
        const double t1 = now_ms();
        std::fill(row.begin(), row.end(), 0.5f);
        adjustment.allowed.assign(a.words.begin(), a.words.end());
        adjustment.allowed.resize((row.size() + 63) / 64, 0);
        (void)compute::adjust_row(row, adjustment);  // what the host does for a row under a mask
        const int64_t kept = a.count();
        const double t2 = now_ms();
        mask_total += t1 - t0;
        apply_total += t2 - t1;
        if (rep == 0 && step == 0) first_step_ms += t1 - t0;
        ++seq_steps;
        // A random allowed token, as a sampler would pick (the end when complete, sometimes).
        if (a.complete && (kept == 0 || pick() % 4 == 0)) {
          done[static_cast<size_t>(i)] = true;
          continue;
        }
        if (kept == 0) {
          done[static_cast<size_t>(i)] = true;
          continue;
        }
        int64_t k = static_cast<int64_t>(pick() % static_cast<uint64_t>(kept));
        size_t t = 0;
        for (; t < row.size(); ++t)
          if (a.allows(static_cast<int64_t>(t)) && k-- == 0) break;
        for (unsigned char b : trie.text(static_cast<int32_t>(t))) states[static_cast<size_t>(i)].feed(b);
        if (states[static_cast<size_t>(i)].complete() && states[static_cast<size_t>(i)].dead_end()) done[static_cast<size_t>(i)] = true;
      }
    }
    mask_ms.push_back(mask_total / steps);
    apply_ms.push_back(apply_total / steps);
    per_seq_us.push_back(1000.0 * mask_total / static_cast<double>(std::max<int64_t>(1, seq_steps)));
    masked = seq_steps;
    sets = cache.misses() - misses_before;
  }
  // With --warm, the first repetition (cold) is reported apart and left out of the summaries.
  const double cold_us = per_seq_us.front();
  if (warm && reps > 1) {
    mask_ms.erase(mask_ms.begin());
    apply_ms.erase(apply_ms.begin());
    per_seq_us.erase(per_seq_us.begin());
  }
  const Timing m = summarise(mask_ms), a = summarise(apply_ms), p = summarise(per_seq_us);
  std::printf("%s\n", ordered_json({{"bench", "structured_mask"}, {"kind", kind}, {"vocab", vocab}, {"sequences", sequences},
                                    {"steps", steps}, {"reps", reps}, {"threads", threads}, {"sequence_steps", masked}, {"trie_walks", sets},
                                    {"allowed_sets_ms_per_step", {{"min", m.min}, {"median", m.median}, {"max", m.max}}},
                                    {"apply_ms_per_step", {{"min", a.min}, {"median", a.median}, {"max", a.max}}},
                                    {"allowed_set_us_per_sequence_step", {{"min", p.min}, {"median", p.median}, {"max", p.max}}},
                                    {"cache", warm ? "kept over repetitions (summaries: the later ones)" : "fresh each repetition"},
                                    {"first_repetition_us_per_sequence_step", cold_us},
                                    {"first_step_ms", first_step_ms},
                                    {"commit", commit}})
                          .dump()
                          .c_str());
  std::printf("\n| constraints | cache | vocab | sequences | steps | reps | sequence-steps | trie walks (cache misses) | allowed sets, ms/step (min/median/max) | first step, ms | apply masks, ms/step | per sequence-step, us (median) | first repetition, us | commit |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  std::printf("| %s | %s | %lld | %d | %d | %d | %lld | %lld | %.1f / %.1f / %.1f | %.2f | %.1f / %.1f / %.1f | %.1f | %.1f | %s |\n", kind.c_str(),
              warm ? "kept" : "fresh", static_cast<long long>(vocab), sequences, steps, reps, static_cast<long long>(masked),
              static_cast<long long>(sets), m.min, m.median, m.max, first_step_ms, a.min, a.median, a.max, p.median, cold_us,
              commit.c_str());
  return 0;
}

}  // namespace
}  // namespace strata

int main(int argc, char** argv) { return strata::run(argc, argv); }
