// Chat templates: how the messages of a /v1/chat/completions request become a prompt. The
// model's own Jinja chat_template (tokenizer_config.json or chat_template.jinja) is rendered by
// strata's Jinja interpreter as transformers' apply_chat_template would; four built-in families
// (Llama 2, Llama 3, Mistral, ChatML) remain for models that ship no template; --chat-template
// picks a family or a .jinja file instead. Immutable once built; render() is thread safe.
#pragma once

#include <ctime>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace strata::text {

class Tokenizer;
namespace jinja {
class Template;
}

enum class ChatFamily { kLlama2, kLlama3, kMistral, kChatml };

struct ChatMessage {
  std::string role;     // "system", "user", "assistant", "tool", ...
  std::string content;  // the text (parts joined), what the built-in families render
  // The message object as the request gave it (content, name, tool_calls, tool_call_id, ...),
  // keys in request order; null: {"role": role, "content": content}.
  nlohmann::ordered_json message;
};

// "llama2", "llama3", "mistral", "chatml".
const char* chat_family_name(ChatFamily f);
Result<ChatFamily> parse_chat_family(std::string_view name);
// The family whose markers the template text uses, or nullopt when none does.
std::optional<ChatFamily> detect_chat_family(std::string_view template_text);

// Renders `messages` as the family's template would with add_generation_prompt=true. `bos` and
// `eos` are the tokenizer's bos_token/eos_token strings. Errors are the ones the template itself
// raises (roles that do not alternate, roles it does not support).
Result<std::string> render_chat(ChatFamily family, std::span<const ChatMessage> messages,
                                const std::string& bos, const std::string& eos);

// What a request gives a Jinja template besides its messages.
struct ChatOptions {
  nlohmann::ordered_json tools;  // the request's "tools"; null: none (the template sees none)
  bool add_generation_prompt = true;
  nlohmann::ordered_json kwargs;  // chat_template_kwargs: more variables (enable_thinking, ...)
  std::optional<std::tm> now;     // what strftime_now() formats; unset: the local time
};

class ChatTemplate {
 public:
  // The template `choice` names for the model of `tok`: "" the model's own (else, for a model
  // without one, a template whose render() says what to pass), a built-in family name, or a
  // path to a Jinja file. Adds to `warnings` what the user should know: a family whose markers are
  // not special tokens of this tokenizer, a model template strata cannot read.
  static Result<ChatTemplate> choose(const Tokenizer& tok, const std::string& choice,
                                     std::vector<std::string>& warnings);
  // A Jinja template; `name` starts its error messages. `tool_use` (may be empty) is used for
  // requests with tools, as transformers picks a "tool_use" template.
  static Result<ChatTemplate> from_jinja(const std::string& source, const std::string& name,
                                         const std::string& tool_use = "");
  static ChatTemplate from_family(ChatFamily family);

  // Special tokens the template sees as variables (bos_token, eos_token, ...), as transformers
  // passes its special_tokens_map.
  void set_special_tokens(std::vector<std::pair<std::string, std::string>> named,
                          std::vector<std::string> additional = {});

  Result<std::string> render(std::span<const ChatMessage> messages,
                             const ChatOptions& options) const;
  // Where the template comes from: "built-in llama3", a file, "<dir>/tokenizer_config.json".
  const std::string& name() const { return name_; }
  bool is_jinja() const { return jinja_ != nullptr; }

 private:
  ChatTemplate() = default;
  std::string name_;
  std::optional<ChatFamily> family_;
  std::shared_ptr<const jinja::Template> jinja_, tool_use_;
  bool content_as_parts_ = false, tool_use_content_as_parts_ = false;
  std::string unavailable_;  // set: render() fails with this
  std::vector<std::pair<std::string, std::string>> special_tokens_;
  std::vector<std::string> additional_special_tokens_;
};

}  // namespace strata::text
