#include "text/chat_template.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "text/jinja.h"
#include "text/tokenizer.h"
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
  return invalid_argument("unknown chat template family '" + std::string(name) +
                          "' (use llama2, llama3, mistral or chatml, or give a .jinja file)");
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

namespace {

// The markers a family's prompt is made of that must be special tokens to mean anything.
std::vector<std::string> family_markers(ChatFamily f, const Tokenizer& tok) {
  switch (f) {
    case ChatFamily::kLlama3:
      return {"<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"};
    case ChatFamily::kChatml:
      return {"<|im_start|>", "<|im_end|>"};
    default:
      return {tok.bos_token().empty() ? "<s>" : tok.bos_token(),
              tok.eos_token().empty() ? "</s>" : tok.eos_token()};
  }
}

Result<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found("--chat-template " + path + ": cannot open the file");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Prepares a message for a Jinja template as vLLM does: tool call arguments given as a JSON
// string are parsed; without `as_parts`, content parts are joined with "\n" and null content
// is "" (with it, null content is an empty list of parts).
jinja::Value template_message(const ChatMessage& m, bool as_parts) {
  nlohmann::ordered_json j = m.message;
  if (!j.is_object()) j = {{"role", m.role}, {"content", m.content}};
  auto& content = j["content"];
  if (content.is_null()) {
    content = as_parts ? nlohmann::ordered_json::array() : nlohmann::ordered_json("");
  } else if (content.is_array() && !as_parts) {
    std::string text;
    for (size_t i = 0; i < content.size(); ++i) {
      if (i) text += "\n";
      if (content[i].is_object() && content[i].contains("text") && content[i]["text"].is_string())
        text += content[i]["text"].get<std::string>();
    }
    content = text;
  }
  if (j.contains("tool_calls") && j["tool_calls"].is_array()) {
    for (auto& call : j["tool_calls"]) {
      if (!call.is_object() || !call.contains("function") || !call["function"].is_object())
        continue;
      auto& fn = call["function"];
      if (!fn.contains("arguments") || !fn["arguments"].is_string()) continue;
      auto parsed =
          nlohmann::ordered_json::parse(fn["arguments"].get<std::string>(), nullptr, false);
      if (!parsed.is_discarded()) fn["arguments"] = std::move(parsed);
    }
  }
  return jinja::Value::from_json(j);
}

}  // namespace

Result<ChatTemplate> ChatTemplate::from_jinja(const std::string& source, const std::string& name,
                                              const std::string& tool_use) {
  ChatTemplate t;
  t.name_ = name;
  STRATA_ASSIGN_OR_RETURN(jinja::Template main, jinja::Template::parse(source, name));
  t.content_as_parts_ = main.loops_over("content");
  t.jinja_ = std::make_shared<const jinja::Template>(std::move(main));
  if (!tool_use.empty()) {
    STRATA_ASSIGN_OR_RETURN(jinja::Template tu,
                            jinja::Template::parse(tool_use, name + " (tool_use)"));
    t.tool_use_content_as_parts_ = tu.loops_over("content");
    t.tool_use_ = std::make_shared<const jinja::Template>(std::move(tu));
  }
  return t;
}

ChatTemplate ChatTemplate::from_family(ChatFamily family) {
  ChatTemplate t;
  t.family_ = family;
  t.name_ = std::string("built-in ") + chat_family_name(family);
  return t;
}

void ChatTemplate::set_special_tokens(std::vector<std::pair<std::string, std::string>> named,
                                      std::vector<std::string> additional) {
  special_tokens_ = std::move(named);
  additional_special_tokens_ = std::move(additional);
}

Result<ChatTemplate> ChatTemplate::choose(const Tokenizer& tok, const std::string& choice,
                                          std::vector<std::string>& warnings) {
  Result<ChatTemplate> chosen = Status(StatusCode::kInternal, "no chat template chosen");
  if (!choice.empty()) {
    if (auto family = parse_chat_family(choice); family.is_ok()) {
      std::vector<std::string> missing;
      for (const auto& marker : family_markers(*family, tok)) {
        const auto id = tok.token_to_id(marker);
        if (!id || !tok.is_special(*id)) missing.push_back(marker);
      }
      if (!missing.empty()) {
        std::string list;
        for (const auto& m : missing) list += (list.empty() ? "" : ", ") + m;
        warnings.push_back(
            "--chat-template " + choice + ": " + list +
            (missing.size() > 1 ? " are not special tokens" : " is not a special token") +
            " of this tokenizer, so the prompts will spell the markers as plain text; "
            "this family is probably not the one the model was trained with");
      }
      chosen = from_family(*family);
    } else if (std::filesystem::is_regular_file(choice)) {
      STRATA_ASSIGN_OR_RETURN(std::string text, read_file(choice));
      chosen = from_jinja(text, choice);
    } else {
      return invalid_argument(
          "--chat-template " + choice +
          ": neither a built-in family (llama2, llama3, mistral, chatml) nor a readable file");
    }
  } else if (!tok.chat_template().empty()) {
    const std::string name = tok.chat_template_source().empty() ? "the model's chat template"
                                                                : tok.chat_template_source();
    chosen = from_jinja(tok.chat_template(), name, tok.tool_use_chat_template());
    if (!chosen.is_ok()) {
      const auto family = detect_chat_family(tok.chat_template());
      warnings.push_back(
          "strata cannot read the model's chat template (" + chosen.status().message() + "); " +
          (family
               ? std::string("rendering chats with the built-in ") + chat_family_name(*family) +
                     " family, whose markers it uses"
               : std::string(
                     "chat requests will fail; pass --chat-template a family or a .jinja file")));
      if (family) {
        chosen = from_family(*family);
      } else {
        ChatTemplate t;
        t.name_ = name;
        t.unavailable_ = chosen.status().message();
        chosen = std::move(t);
      }
    }
  } else {
    ChatTemplate t;
    t.name_ = "no chat template";
    t.unavailable_ =
        "the model has no chat template (no chat_template in tokenizer_config.json and no "
        "chat_template.jinja); pass --chat-template llama2|llama3|mistral|chatml or a .jinja file";
    chosen = std::move(t);
  }
  STRATA_RETURN_IF_ERROR(chosen.status());
  chosen->set_special_tokens(tok.special_tokens_map(), tok.additional_special_tokens());
  return chosen;
}

Result<std::string> ChatTemplate::render(std::span<const ChatMessage> messages,
                                         const ChatOptions& options) const {
  if (!unavailable_.empty()) return unsupported(unavailable_);
  if (family_) {
    std::string bos, eos;
    for (const auto& [k, v] : special_tokens_) {
      if (k == "bos_token") bos = v;
      if (k == "eos_token") eos = v;
    }
    return render_chat(*family_, messages, bos, eos);
  }
  const bool tools = !options.tools.is_null();
  const jinja::Template& tmpl = tools && tool_use_ ? *tool_use_ : *jinja_;
  const bool as_parts = tools && tool_use_ ? tool_use_content_as_parts_ : content_as_parts_;
  jinja::Dict ctx;
  for (const auto& [k, v] : special_tokens_) ctx.set(k, jinja::Value(v));
  if (!additional_special_tokens_.empty()) {
    jinja::List extra(additional_special_tokens_.begin(), additional_special_tokens_.end());
    ctx.set("additional_special_tokens", jinja::Value(std::move(extra)));
  }
  if (options.kwargs.is_object()) {
    for (const auto& [k, v] : options.kwargs.items()) {
      if (k == "messages" || k == "tools" || k == "documents" || k == "add_generation_prompt")
        return invalid_argument("chat_template_kwargs cannot set '" + k + "'");
      ctx.set(k, jinja::Value::from_json(v));
    }
  }
  jinja::List msgs;
  for (const auto& m : messages) msgs.push_back(template_message(m, as_parts));
  ctx.set("messages", jinja::Value(std::move(msgs)));
  ctx.set("tools", tools ? jinja::Value::from_json(options.tools) : jinja::Value(nullptr));
  ctx.set("documents", jinja::Value(nullptr));
  ctx.set("add_generation_prompt", jinja::Value(options.add_generation_prompt));
  jinja::RenderOptions ro;
  ro.now = options.now;
  return tmpl.render(ctx, ro);
}

}  // namespace strata::text
