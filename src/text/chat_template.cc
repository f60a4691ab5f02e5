#include "text/chat_template.h"

#include "text/utf8.h"

namespace strata::text {

const char* chat_family_name(ChatFamily f) {
  switch (f) {
    case ChatFamily::kLlama2: return "llama2";
    case ChatFamily::kLlama3: return "llama3";
    case ChatFamily::kMistral: return "mistral";
    case ChatFamily::kChatml: return "chatml";
  }
  return "?";
}

Result<ChatFamily> parse_chat_family(std::string_view name) {
  for (ChatFamily f : {ChatFamily::kLlama2, ChatFamily::kLlama3, ChatFamily::kMistral, ChatFamily::kChatml})
    if (name == chat_family_name(f)) return f;
  return invalid_argument("unknown chat template '" + std::string(name) + "' (use llama2, llama3, mistral or chatml)");
}

std::optional<ChatFamily> detect_chat_family(std::string_view t) {
  if (t.find("<|start_header_id|>") != std::string_view::npos) return ChatFamily::kLlama3;
  if (t.find("<|im_start|>") != std::string_view::npos) return ChatFamily::kChatml;
  if (t.find("<<SYS>>") != std::string_view::npos) return ChatFamily::kLlama2;
  if (t.find("[INST]") != std::string_view::npos) return ChatFamily::kMistral;
  return std::nullopt;
}

namespace {

constexpr const char* kAlternate = "Conversation roles must alternate user/assistant/user/assistant/...";

std::string strip(const std::string& s) { return std::string(python_strip(s)); }

Result<std::string> render_llama2(std::span<const ChatMessage> messages, const std::string& bos,
                                  const std::string& eos) {
  std::optional<std::string> system;
  if (!messages.empty() && messages[0].role == "system") {
    system = messages[0].content;
    messages = messages.subspan(1);
  }
  std::string out;
  for (size_t i = 0; i < messages.size(); ++i) {
    const auto& m = messages[i];
    if ((m.role == "user") != (i % 2 == 0)) return invalid_argument(kAlternate);
    std::string content = m.content;
    if (i == 0 && system) content = "<<SYS>>\n" + *system + "\n<</SYS>>\n\n" + m.content;
    if (m.role == "user") out += bos + "[INST] " + strip(content) + " [/INST]";
    else if (m.role == "assistant") out += " " + strip(content) + " " + eos;
  }
  return out;
}

Result<std::string> render_llama3(std::span<const ChatMessage> messages, const std::string& bos) {
  std::string out;
  for (size_t i = 0; i < messages.size(); ++i) {
    if (i == 0) out += bos;
    out += "<|start_header_id|>" + messages[i].role + "<|end_header_id|>\n\n" + strip(messages[i].content) +
           "<|eot_id|>";
  }
  out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

Result<std::string> render_mistral(std::span<const ChatMessage> messages, const std::string& bos,
                                   const std::string& eos) {
  std::string out = bos;
  for (size_t i = 0; i < messages.size(); ++i) {
    const auto& m = messages[i];
    if ((m.role == "user") != (i % 2 == 0)) return invalid_argument(kAlternate);
    if (m.role == "user") out += "[INST] " + m.content + " [/INST]";
    else if (m.role == "assistant") out += m.content + eos;
    else return invalid_argument("Only user and assistant roles are supported!");
  }
  return out;
}

Result<std::string> render_chatml(std::span<const ChatMessage> messages) {
  std::string out;
  for (const auto& m : messages) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
  out += "<|im_start|>assistant\n";
  return out;
}

}  // namespace

Result<std::string> render_chat(ChatFamily family, std::span<const ChatMessage> messages, const std::string& bos,
                                const std::string& eos) {
  switch (family) {
    case ChatFamily::kLlama2: return render_llama2(messages, bos, eos);
    case ChatFamily::kLlama3: return render_llama3(messages, bos);
    case ChatFamily::kMistral: return render_mistral(messages, bos, eos);
    case ChatFamily::kChatml: return render_chatml(messages);
  }
  return internal_error("unknown chat family");
}

}  // namespace strata::text
