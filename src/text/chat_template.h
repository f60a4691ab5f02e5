// Chat templates: renders a list of chat messages into a prompt the way a model's Jinja
// chat_template does, for the four families strata implements natively (Llama 2, Llama 3,
// Mistral, ChatML). The family is detected from the template text in tokenizer_config.json or
// chosen by name. Pure functions; thread safe.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "common/status.h"

namespace strata::text {

enum class ChatFamily { kLlama2, kLlama3, kMistral, kChatml };

struct ChatMessage {
  std::string role;     // "system", "user", "assistant", ...
  std::string content;
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

}  // namespace strata::text
