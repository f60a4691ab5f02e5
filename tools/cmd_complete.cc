// strata complete: continue prompts given as text (--prompt, printed back with the continuation)
// or as token ids (--tokens, the generated ids printed); one flag per sequence, all run as one
// batch. Batch jobs go through `strata generate`.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <vector>

#include "commands.h"
#include "flag_checks.h"
#include "runtime/context.h"
#include "runtime/generator.h"
#include "runtime/load_model.h"
#include "text/token_ids.h"
#include "text/tokenizer.h"

namespace strata::tools {

namespace {

struct CompleteOptions {
  std::string model;
  std::vector<std::string> prompts;  // --tokens
  std::vector<std::string> texts;    // --prompt
  int max_tokens = 16;
  float temperature = 0.0f;
  int top_k = 0;
  float top_p = 1.0f;
  uint64_t seed = 0;
  bool ignore_eos = false;
  int threads = 0;
  std::string device = "cpu";
};

Status run(const CompleteOptions& o) {
  STRATA_RETURN_IF_ERROR(check_device_flag(o.device));
  STRATA_RETURN_IF_ERROR(check_sampling_flags(o.temperature, o.top_p, o.top_k));
  if (o.max_tokens < 1) return invalid_argument("--max-tokens must be an integer >= 1 (got " + std::to_string(o.max_tokens) + ")");
  if (o.threads < 0) return invalid_argument("--threads must be >= 0 (0 = all cores), got " + std::to_string(o.threads));
  if (o.prompts.empty() == o.texts.empty())
    return invalid_argument("give the prompts as text (--prompt \"...\") or as token ids (--tokens \"1 2 3\"), not both");
  runtime::ContextOptions copts;
  copts.device = o.device;
  copts.threads = o.threads;
  STRATA_ASSIGN_OR_RETURN(auto ctx, runtime::make_context(copts));
  STRATA_ASSIGN_OR_RETURN(auto model, runtime::load_model_dir(*ctx, o.model));
  std::unique_ptr<text::Tokenizer> tok;
  if (!o.texts.empty()) {
    STRATA_ASSIGN_OR_RETURN(tok, text::Tokenizer::load_dir(o.model));
  }
  std::vector<runtime::GenerationRequest> reqs;
  for (size_t i = 0; i < std::max(o.prompts.size(), o.texts.size()); ++i) {
    runtime::GenerationRequest r;
    if (tok) {
      r.prompt = tok->encode(o.texts[i], /*add_special_tokens=*/true);
      if (r.prompt.empty()) return invalid_argument("--prompt #" + std::to_string(i + 1) + " has no tokens");
      for (int32_t t : r.prompt)
        if (t >= model->config().vocab_size)
          return invalid_argument("--prompt #" + std::to_string(i + 1) + ": token id " + std::to_string(t) +
                                  " is outside the model's vocabulary");
    } else {
      auto ids = text::parse_token_ids(o.prompts[i], model->config().vocab_size);
      if (!ids.is_ok()) return ids.status().with_context("--tokens #" + std::to_string(i + 1));
      r.prompt = std::move(ids).value();
    }
    r.max_new_tokens = o.max_tokens;
    r.sampling = {o.temperature, o.top_k, o.top_p, o.seed + i};
    r.ignore_eos = o.ignore_eos;
    reqs.push_back(std::move(r));
  }
  runtime::Generator gen(*model);
  runtime::GenerationStats stats;
  STRATA_ASSIGN_OR_RETURN(auto results, gen.generate(reqs, &stats));
  for (size_t i = 0; tok && i < results.size(); ++i) {
    // The prompt as given, then its continuation (special tokens such as the EOS left out).
    const std::string more = tok->decode(results[i].tokens, /*skip_special_tokens=*/true);
    if (results.size() > 1) std::printf("[%zu] ", i);
    std::printf("%s%s\n", o.texts[i].c_str(), more.c_str());
  }
  for (size_t i = 0; !tok && i < results.size(); ++i) {
    std::printf("[%zu] prompt:    %s\n", i, text::format_token_ids(reqs[i].prompt).c_str());
    std::printf("[%zu] generated: %s  (finish: %s)\n", i,
                text::format_token_ids(results[i].tokens).c_str(),
                runtime::finish_reason_name(results[i].finish));
  }
  const double total = stats.prefill_s + stats.decode_s;
  std::fprintf(stderr,
               "%zu sequences: %lld prompt tokens, %lld generated in %d decode steps; "
               "prefill %.3f s, decode %.3f s, %.1f generated tokens/s\n",
               results.size(), static_cast<long long>(stats.prompt_tokens),
               static_cast<long long>(stats.generated_tokens), stats.decode_steps, stats.prefill_s,
               stats.decode_s, total > 0 ? stats.generated_tokens / total : 0.0);
  return Status::ok();
}

}  // namespace

void register_complete(CLI::App& app, int* exit_code) {
  static CompleteOptions o;
  auto* cmd = app.add_subcommand("complete", "Continue prompts given as text or as token ids");
  cmd->add_option("--model", o.model, "Hugging Face model directory or strata weight store")->required();
  cmd->add_option("--prompt", o.texts, "a prompt as text; prints it with its continuation (repeat for a batch)");
  cmd->add_option("--tokens", o.prompts, "a prompt as token ids, e.g. \"1 2 3\" (repeat for a batch)");
  cmd->add_option("--max-tokens", o.max_tokens, "tokens to generate per prompt")->capture_default_str();
  cmd->add_option("--temperature", o.temperature, "0 = greedy")->capture_default_str();
  cmd->add_option("--top-k", o.top_k, "0 = no limit")->capture_default_str();
  cmd->add_option("--top-p", o.top_p, "1 = no limit")->capture_default_str();
  cmd->add_option("--seed", o.seed, "random seed (prompt i uses seed + i)")->capture_default_str();
  cmd->add_flag("--ignore-eos", o.ignore_eos, "keep generating after an end-of-sequence token");
  cmd->add_option("--threads", o.threads, "CPU threads (0 = all cores)")->capture_default_str();
  cmd->add_option("--device", o.device, "cpu or cuda")->capture_default_str();
  cmd->callback([exit_code] { *exit_code = report("complete", run(o)); });
}

}  // namespace strata::tools
