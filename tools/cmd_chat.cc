// strata chat: a conversation with a model on the terminal. Each line read from standard input is
// a user message; the model's answer, rendered through its own chat template with the
// conversation so far, is printed as it is generated. "/reset" starts over, "/exit" (or the end
// of the input) ends. The oldest turns are left out when the conversation no longer fits the
// model's context.
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "commands.h"
#include "common/log.h"
#include "flag_checks.h"
#include "runtime/context.h"
#include "runtime/generator.h"
#include "runtime/load_model.h"
#include "text/chat_template.h"
#include "text/incremental_decoder.h"
#include "text/tokenizer.h"

namespace strata::tools {

namespace {

struct ChatCliOptions {
  std::string model;
  std::string system;
  std::string chat_template;
  int max_tokens = 512;
  float temperature = 0.7f;
  int top_k = 0;
  float top_p = 1.0f;
  uint64_t seed = 0;
  int threads = 0;
  std::string device = "cpu";
};

class Conversation {
 public:
  Conversation(const ChatCliOptions& o, compute::Transformer& model, const text::Tokenizer& tok,
               text::ChatTemplate chat)
      : o_(o), model_(model), tok_(tok), chat_(std::move(chat)), gen_(model) {
    reset();
  }

  void reset() {
    history_.clear();
    if (!o_.system.empty()) history_.push_back({"system", o_.system, nullptr});
  }

  // One turn: the user's message in, the answer printed to stdout as it comes and kept.
  Status turn(const std::string& message) {
    history_.push_back({"user", message, nullptr});
    runtime::GenerationRequest req;
    Status fits = prompt_that_fits(req.prompt);
    if (!fits.is_ok()) {
      history_.pop_back();
      return fits;
    }
    req.max_new_tokens = o_.max_tokens;
    req.sampling = {o_.temperature, o_.top_k, o_.top_p, o_.seed + turns_++};
    text::IncrementalDecoder decoder(tok_, req.prompt);
    std::string answer;
    auto on_token = [&](size_t, int32_t token) {
      if (model_.config().is_eos(token)) return true;  // ends the answer; not part of its text
      const std::string piece = decoder.push(token);
      answer += piece;
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
      return true;
    };
    STRATA_ASSIGN_OR_RETURN(auto results, gen_.generate({&req, 1}, nullptr, {}, on_token));
    const std::string rest = decoder.flush();
    answer += rest;
    std::fwrite(rest.data(), 1, rest.size(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
    if (results[0].finish == runtime::FinishReason::kLength)
      std::fprintf(stderr, "(the answer reached --max-tokens %d)\n", o_.max_tokens);
    history_.push_back({"assistant", answer, nullptr});
    return Status::ok();
  }

 private:
  // The conversation's prompt, leaving out its oldest turns (never the system message nor the
  // last user message) until the prompt and --max-tokens fit the model's context.
  Status prompt_that_fits(std::vector<int32_t>& prompt) {
    const int64_t context = model_.config().max_position_embeddings;
    const size_t first = !history_.empty() && history_[0].role == "system" ? 1 : 0;
    for (;;) {
      STRATA_ASSIGN_OR_RETURN(std::string text, chat_.render(history_, text::ChatOptions{}));
      prompt = tok_.encode(text, /*add_special_tokens=*/false);
      for (int32_t t : prompt)
        if (t >= model_.config().vocab_size)
          return invalid_argument("the message has a token (" + std::to_string(t) + ") outside the model's vocabulary");
      if (static_cast<int64_t>(prompt.size()) + o_.max_tokens <= context) return Status::ok();
      if (history_.size() <= first + 1)
        return invalid_argument("the message (" + std::to_string(prompt.size()) + " tokens with the template) and " +
                                "--max-tokens " + std::to_string(o_.max_tokens) + " do not fit the model's context of " +
                                std::to_string(context) + " tokens; shorten it or lower --max-tokens");
      // The oldest turn: a user message and the answers after it.
      size_t end = first + 1;
      while (end + 1 < history_.size() && history_[end].role != "user") ++end;
      history_.erase(history_.begin() + static_cast<std::ptrdiff_t>(first),
                     history_.begin() + static_cast<std::ptrdiff_t>(end));
      if (!warned_) std::fprintf(stderr, "(the oldest turns are left out to fit the model's context)\n");
      warned_ = true;
    }
  }

  const ChatCliOptions& o_;
  compute::Transformer& model_;
  const text::Tokenizer& tok_;
  text::ChatTemplate chat_;
  runtime::Generator gen_;
  std::vector<text::ChatMessage> history_;
  uint64_t turns_ = 0;
  bool warned_ = false;
};

Status run(const ChatCliOptions& o) {
  STRATA_RETURN_IF_ERROR(check_device_flag(o.device));
  STRATA_RETURN_IF_ERROR(check_sampling_flags(o.temperature, o.top_p, o.top_k));
  if (o.max_tokens < 1) return invalid_argument("--max-tokens must be an integer >= 1 (got " + std::to_string(o.max_tokens) + ")");
  if (o.threads < 0) return invalid_argument("--threads must be >= 0 (0 = all cores), got " + std::to_string(o.threads));
  runtime::ContextOptions copts;
  copts.device = o.device;
  copts.threads = o.threads;
  copts.log_level = LogLevel::kWarn;
  STRATA_ASSIGN_OR_RETURN(auto ctx, runtime::make_context(copts));
  STRATA_ASSIGN_OR_RETURN(auto tok, text::Tokenizer::load_dir(o.model));
  std::vector<std::string> warnings;
  STRATA_ASSIGN_OR_RETURN(text::ChatTemplate chat, text::ChatTemplate::choose(*tok, o.chat_template, warnings));
  for (const auto& w : warnings) ctx->logger.warn(w);
  STRATA_ASSIGN_OR_RETURN(auto model, runtime::load_model_dir(*ctx, o.model));
  Conversation conversation(o, *model, *tok, std::move(chat));
  const bool terminal = isatty(STDIN_FILENO) != 0;
  if (terminal) std::fprintf(stderr, "chat with %s (/reset starts over, /exit or Ctrl-D ends)\n", o.model.c_str());
  std::string line;
  for (;;) {
    if (terminal) std::fprintf(stderr, "> ");
    if (!std::getline(std::cin, line)) break;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    if (line == "/exit" || line == "/quit") break;
    if (line == "/reset") {
      conversation.reset();
      continue;
    }
    // A message that cannot be answered is reported; the conversation goes on.
    if (Status s = conversation.turn(line); !s.is_ok()) std::fprintf(stderr, "strata chat: %s\n", s.to_string().c_str());
  }
  return Status::ok();
}

}  // namespace

void register_chat(CLI::App& app, int* exit_code) {
  static ChatCliOptions o;
  auto* cmd = app.add_subcommand("chat", "Talk with a model on the terminal: each input line is a user message");
  cmd->add_option("--model", o.model, "Hugging Face model directory or strata weight store")->required();
  cmd->add_option("--system", o.system, "a system message that starts the conversation");
  cmd->add_option("--chat-template", o.chat_template,
                  "llama2, llama3, mistral, chatml or a .jinja file (default: the model's own template)");
  cmd->add_option("--max-tokens", o.max_tokens, "tokens per answer at most")->capture_default_str();
  cmd->add_option("--temperature", o.temperature, "0 = greedy")->capture_default_str();
  cmd->add_option("--top-k", o.top_k, "0 = no limit")->capture_default_str();
  cmd->add_option("--top-p", o.top_p, "1 = no limit")->capture_default_str();
  cmd->add_option("--seed", o.seed, "random seed (answer i uses seed + i)")->capture_default_str();
  cmd->add_option("--threads", o.threads, "CPU threads (0 = all cores)")->capture_default_str();
  cmd->add_option("--device", o.device, "cpu or cuda")->capture_default_str();
  cmd->callback([exit_code] { *exit_code = report("chat", run(o)); });
}

}  // namespace strata::tools
