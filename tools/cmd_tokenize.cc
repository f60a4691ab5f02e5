// strata tokenize: token ids and counts of text or JSONL prompts, with the model's own
// tokenizer.json, so users can size their jobs (prompt tokens, context fit) before running them.
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "text/batch_request.h"
#include "text/chat_template.h"
#include "text/line_io.h"
#include "text/token_ids.h"
#include "text/tokenizer.h"

namespace strata::tools {

namespace {

struct TokenizeOptions {
  std::string model;
  std::vector<std::string> texts;
  std::string input;
  bool jsonl = false;
  bool no_special = false;
  bool counts_only = false;
  std::string chat_template;
  bool decode = false;
  bool ignore_unknown_fields = false;
};

Status run(const TokenizeOptions& o) {
  STRATA_ASSIGN_OR_RETURN(auto tok, text::Tokenizer::load_dir(o.model));
  const bool add_special = !o.no_special;
  if (o.decode) {
    for (const auto& t : o.texts) {
      STRATA_ASSIGN_OR_RETURN(auto ids, text::parse_token_ids(t, tok->vocab_size()));
      std::printf("%s\n", nlohmann::json(tok->decode(ids, false)).dump().c_str());
    }
    return Status::ok();
  }
  int64_t total = 0, lines = 0, max_len = 0;
  auto print = [&](const std::string& label, const std::vector<int32_t>& ids) {
    total += static_cast<int64_t>(ids.size());
    max_len = std::max<int64_t>(max_len, static_cast<int64_t>(ids.size()));
    ++lines;
    if (o.counts_only) std::printf("%s%zu\n", label.c_str(), ids.size());
    else std::printf("%s%zu tokens: %s\n", label.c_str(), ids.size(), text::format_token_ids(ids).c_str());
  };
  for (const auto& t : o.texts) print("", tok->encode(t, add_special));
  if (!o.input.empty()) {
    std::vector<std::string> warnings;
    STRATA_ASSIGN_OR_RETURN(text::ChatTemplate chat,
                            text::ChatTemplate::choose(*tok, o.chat_template, warnings));
    for (const auto& w : warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
    const bool jsonl = o.jsonl || o.input.find(".jsonl") != std::string::npos;
    STRATA_ASSIGN_OR_RETURN(auto reader, text::LineReader::open(o.input));
    std::string line, all;
    for (;;) {
      STRATA_ASSIGN_OR_RETURN(bool more, reader->next(line));
      if (!more) break;
      if (!jsonl) {
        all += line;
        all += '\n';
        continue;
      }
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      auto parsed = text::parse_request_line(line, reader->line_number(),
                                             {.ignore_unknown_fields = o.ignore_unknown_fields});
      if (!parsed.request) {
        std::printf("line %lld: error: %s\n", static_cast<long long>(reader->line_number()), parsed.error.message.c_str());
        continue;
      }
      const auto& r = *parsed.request;
      std::vector<int32_t> ids;
      if (r.prompt) {
        ids = tok->encode(*r.prompt, add_special);
      } else if (r.prompt_ids) {
        ids = *r.prompt_ids;
      } else {
        auto rendered = chat.render(r.messages, r.chat);
        if (!rendered.is_ok()) {
          std::printf("line %lld: error: %s\n", static_cast<long long>(r.line),
                      rendered.status().message().c_str());
          continue;
        }
        ids = tok->encode(*rendered, false);
      }
      print(r.custom_id + "\t", ids);
    }
    if (!jsonl) print("", tok->encode(all, add_special));
  }
  std::fprintf(stderr, "%lld prompts, %lld tokens in all, longest %lld\n", static_cast<long long>(lines),
               static_cast<long long>(total), static_cast<long long>(max_len));
  return Status::ok();
}

}  // namespace

void register_tokenize(CLI::App& app, int* exit_code) {
  static TokenizeOptions o;
  auto* cmd = app.add_subcommand("tokenize", "Token ids and counts of text or JSONL prompts");
  cmd->add_option("--model", o.model, "model directory with tokenizer.json")->required();
  cmd->add_option("--text", o.texts, "text to tokenize (repeat for several); with --decode, token ids");
  cmd->add_option("--input", o.input, "a text file, or JSONL requests (.jsonl / .jsonl.zst) as strata generate reads");
  cmd->add_flag("--jsonl", o.jsonl, "read --input as JSONL requests whatever its name");
  cmd->add_flag("--no-special", o.no_special, "do not add BOS/EOS as the tokenizer's post-processor would");
  cmd->add_flag("--counts", o.counts_only, "print counts only");
  cmd->add_flag("--decode", o.decode, "decode the --text token ids instead");
  cmd->add_flag("--ignore-unknown-fields", o.ignore_unknown_fields,
                "count requests with fields strata does not know or cannot honour, as generate does with "
                "the same flag");
  cmd->add_option("--chat-template", o.chat_template,
                  "a built-in family (llama2, llama3, mistral, chatml) or a Jinja file (default: "
                  "the model's own)");
  cmd->callback([exit_code] { *exit_code = report("tokenize", run(o)); });
}

}  // namespace strata::tools
