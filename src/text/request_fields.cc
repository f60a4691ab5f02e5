#include "text/request_fields.h"

#include <algorithm>
#include <cctype>
#include <vector>

namespace strata::text {

namespace {

using json = nlohmann::json;
using Use = FieldUse;
using Place = FieldPlace;

bool is_false(const json& v, const json&, Endpoint) { return v.is_boolean() && !v.get<bool>(); }
bool is_true(const json& v, const json&, Endpoint) { return v.is_boolean() && v.get<bool>(); }
bool is_zero(const json& v, const json&, Endpoint) { return v.is_number() && v.get<double>() == 0; }
bool is_one(const json& v, const json&, Endpoint) { return v.is_number() && v.get<double>() == 1; }
bool is_integer_one(const json& v, const json&, Endpoint) {
  return v.is_number_integer() && v.get<int64_t>() == 1;
}
// best_of: as many as n (default 1), i.e. no choice among extra candidates.
bool is_n(const json& v, const json& body, Endpoint) {
  const json n = body.contains("n") && !body["n"].is_null() ? body["n"] : json(1);
  return v.is_number_integer() && n.is_number_integer() && v.get<int64_t>() == n.get<int64_t>();
}
// echo: false anywhere; true on completions when no log-probabilities are asked for (those of the
// prompt's tokens are not computed).
bool echo_honoured(const json& v, const json& body, Endpoint e) {
  if (!v.is_boolean()) return false;
  if (!v.get<bool>()) return true;
  const bool logprobs = body.contains("logprobs") && !body["logprobs"].is_null() && body["logprobs"] != false;
  return e == Endpoint::kCompletions && !logprobs;
}
bool is_empty(const json& v, const json&, Endpoint) {
  return (v.is_object() || v.is_array() || v.is_string()) && v.empty();
}
bool only_null(const json&, const json&, Endpoint) { return false; }
bool is_text_modality(const json& v, const json&, Endpoint) { return v == json::array({"text"}); }
// The types strata reads (batch_request.cc checks the rest of a json_schema format).
bool is_text_format(const json& v, const json&, Endpoint) {
  if (!v.is_object() || !v.contains("type")) return false;
  if (v["type"] == "json_schema") return true;
  return v.size() == 1 && (v["type"] == "text" || v["type"] == "json_object");
}
bool has_tools(const json& body) {
  return body.contains("tools") && body["tools"].is_array() && !body["tools"].empty();
}
// "auto" is what strata does (the tools reach the template; the model's answer is its text);
// "none" is the same when there are no tools.
bool is_auto_choice(const json& v, const json& body, Endpoint) {
  return v == "auto" || (v == "none" && !has_tools(body));
}
bool is_auto_function_call(const json& v, const json&, Endpoint) {
  return v == "auto" || v == "none";
}
// Completions add the tokenizer's special tokens (BOS) to the prompt; a chat template writes its
// own.
bool is_endpoint_special_tokens(const json& v, const json&, Endpoint e) {
  return v.is_boolean() && v.get<bool>() == (e == Endpoint::kCompletions);
}

// Every field, OpenAI's (completions and chat completions) then vLLM's extras.
const RequestField kFields[] = {
    // The Batch API line.
    {"custom_id", Place::kLine, Use::kRead},
    {"method", Place::kLine, Use::kRead},
    {"url", Place::kLine, Use::kRead},
    {"body", Place::kLine, Use::kRead},
    // OpenAI: read.
    {"prompt", Place::kCompletions, Use::kRead},
    {"messages", Place::kChat, Use::kRead},
    {"max_tokens", Place::kAny, Use::kRead},
    {"max_completion_tokens", Place::kAny, Use::kRead},
    {"temperature", Place::kAny, Use::kRead},
    {"top_p", Place::kAny, Use::kRead},
    {"seed", Place::kAny, Use::kRead},
    {"stop", Place::kAny, Use::kRead},
    {"logprobs", Place::kAny, Use::kRead},
    {"top_logprobs", Place::kAny, Use::kRead},
    {"tools", Place::kChat, Use::kRead},
    // OpenAI: accepted, no effect on the answer.
    {"model", Place::kAny, Use::kIgnored},  // the results name the served model
    {"user", Place::kAny, Use::kIgnored},
    {"safety_identifier", Place::kAny, Use::kIgnored},
    {"metadata", Place::kAny, Use::kIgnored},
    {"store", Place::kAny, Use::kIgnored},
    {"service_tier", Place::kAny, Use::kIgnored},
    {"stream_options", Place::kAny, Use::kIgnored},
    {"prompt_cache_key", Place::kAny, Use::kIgnored},
    {"parallel_tool_calls", Place::kChat, Use::kIgnored},  // strata does not parse tool calls
    {"prediction", Place::kChat,
     Use::kIgnored},  // predicted outputs make answers faster, not other
    // OpenAI: only the default.
    {"n", Place::kAny, Use::kRead},
    {"best_of", Place::kAny, Use::kDefaultOnly, is_n,
     "other than n is not supported (strata returns every choice it generates)"},
    {"stream", Place::kAny, Use::kDefaultOnly, is_false,
     "is not available in batch mode (leave it out or set false)"},
    {"presence_penalty", Place::kAny, Use::kRead},
    {"frequency_penalty", Place::kAny, Use::kRead},
    {"logit_bias", Place::kAny, Use::kRead},
    {"echo", Place::kAny, Use::kDefaultOnly, echo_honoured,
     "true is supported on /v1/completions without logprobs only (the prompt's log-probabilities "
     "are not computed)"},
    {"suffix", Place::kCompletions, Use::kDefaultOnly, is_empty,
     "is not supported (insertion needs a fill-in-the-middle model)"},
    {"response_format", Place::kAny, Use::kDefaultOnly, is_text_format,
     "is supported as {\"type\": \"text\"}, {\"type\": \"json_object\"} or {\"type\": \"json_schema\", "
     "\"json_schema\": {\"name\": ..., \"schema\": {...}}}"},
    {"tool_choice", Place::kChat, Use::kDefaultOnly, is_auto_choice,
     "is not supported other than \"auto\": strata cannot force or forbid a tool call"},
    {"functions", Place::kChat, Use::kDefaultOnly, is_empty, "is not supported (pass 'tools')"},
    {"function_call", Place::kChat, Use::kDefaultOnly, is_auto_function_call,
     "is not supported other than \"auto\" or \"none\""},
    {"modalities", Place::kChat, Use::kDefaultOnly, is_text_modality,
     "is not supported other than [\"text\"]"},
    {"audio", Place::kChat, Use::kDefaultOnly, only_null,
     "is not supported: strata answers with text"},
    {"reasoning_effort", Place::kChat, Use::kDefaultOnly, only_null,
     "is not supported (a template's switch such as enable_thinking goes in "
     "'chat_template_kwargs')"},
    {"verbosity", Place::kChat, Use::kDefaultOnly, only_null, "is not supported"},
    {"web_search_options", Place::kChat, Use::kDefaultOnly, only_null, "is not supported"},
    // vLLM: read.
    {"top_k", Place::kAny, Use::kRead},
    {"ignore_eos", Place::kAny, Use::kRead},
    {"add_generation_prompt", Place::kChat, Use::kRead},
    {"chat_template_kwargs", Place::kChat, Use::kRead},
    // vLLM: accepted, no effect on the answer.
    {"priority", Place::kAny, Use::kIgnored},
    {"request_id", Place::kAny, Use::kIgnored},
    {"cache_salt", Place::kAny, Use::kIgnored},
    {"guided_decoding_backend", Place::kAny, Use::kIgnored},
    {"guided_whitespace_pattern", Place::kAny, Use::kIgnored},
    // vLLM: only the default.
    {"min_p", Place::kAny, Use::kRead},
    {"min_tokens", Place::kAny, Use::kRead},
    {"repetition_penalty", Place::kAny, Use::kRead},
    {"length_penalty", Place::kAny, Use::kDefaultOnly, is_one,
     "is not supported (leave it out or set 1)"},
    {"use_beam_search", Place::kAny, Use::kDefaultOnly, is_false,
     "is not supported (leave it out or set false)"},
    {"stop_token_ids", Place::kAny, Use::kRead},
    {"include_stop_str_in_output", Place::kAny, Use::kRead},
    {"skip_special_tokens", Place::kAny, Use::kDefaultOnly, is_true,
     "is not supported other than true (special tokens are left out of the text)"},
    {"spaces_between_special_tokens", Place::kAny, Use::kDefaultOnly, is_true,
     "is not supported other than true"},
    {"add_special_tokens", Place::kAny, Use::kDefaultOnly, is_endpoint_special_tokens,
     "is not supported other than its default (true for completions, false for chat)"},
    {"truncate_prompt_tokens", Place::kAny, Use::kDefaultOnly, only_null, "is not supported"},
    {"prompt_logprobs", Place::kAny, Use::kDefaultOnly, only_null, "is not supported"},
    {"allowed_token_ids", Place::kAny, Use::kDefaultOnly, only_null, "is not supported"},
    {"bad_words", Place::kAny, Use::kDefaultOnly, is_empty, "is not supported"},
    {"logits_processors", Place::kAny, Use::kDefaultOnly, only_null, "is not supported"},
    {"return_tokens_as_token_ids", Place::kAny, Use::kDefaultOnly, is_false, "is not supported"},
    {"guided_json", Place::kAny, Use::kRead},
    {"guided_regex", Place::kAny, Use::kRead},
    {"guided_choice", Place::kAny, Use::kRead},
    {"guided_grammar", Place::kAny, Use::kDefaultOnly, only_null,
     "is not supported (use guided_json with a JSON Schema, guided_regex or guided_choice)"},
    {"structural_tag", Place::kAny, Use::kDefaultOnly, only_null,
     "is not supported: strata has no structured output"},
    {"structured_outputs", Place::kAny, Use::kDefaultOnly, only_null,
     "is not supported: strata has no structured output"},
    {"prompt_embeds", Place::kCompletions, Use::kDefaultOnly, only_null, "is not supported"},
    {"vllm_xargs", Place::kAny, Use::kDefaultOnly, only_null, "is not supported"},
    {"continue_final_message", Place::kChat, Use::kDefaultOnly, is_false,
     "is not supported (leave it out or set false)"},
    {"chat_template", Place::kChat, Use::kDefaultOnly, only_null,
     "is not supported per request (the job's --chat-template sets it)"},
    {"documents", Place::kChat, Use::kDefaultOnly, only_null, "is not supported"},
    {"mm_processor_kwargs", Place::kChat, Use::kDefaultOnly, is_empty, "is not supported"},
};

const RequestField* find_field(std::string_view name) {
  for (const RequestField& f : kFields)
    if (f.name == name) return &f;
  return nullptr;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string did_you_mean(std::string_view name, std::span<const FieldPlace> places) {
  const auto near = closest_field(name, places);
  return near ? " (did you mean '" + std::string(*near) + "'?)" : "";
}

std::string_view endpoint_url(Endpoint e) {
  return e == Endpoint::kCompletions ? "/v1/completions" : "/v1/chat/completions";
}

constexpr FieldPlace kBodyPlaces[] = {Place::kAny, Place::kCompletions, Place::kChat};
constexpr FieldPlace kPlainPlaces[] = {Place::kLine, Place::kAny, Place::kCompletions,
                                       Place::kChat};

}  // namespace

std::span<const RequestField> request_fields() { return kFields; }

int edit_distance(std::string_view a, std::string_view b) {
  const size_t n = a.size(), m = b.size();
  // d[i][j]: the distance between a[0, i) and b[0, j).
  std::vector<std::vector<int>> d(n + 1, std::vector<int>(m + 1));
  for (size_t i = 0; i <= n; ++i) d[i][0] = static_cast<int>(i);
  for (size_t j = 0; j <= m; ++j) d[0][j] = static_cast<int>(j);
  for (size_t i = 1; i <= n; ++i) {
    for (size_t j = 1; j <= m; ++j) {
      const int cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[n][m];
}

std::optional<std::string_view> closest_field(std::string_view name,
                                              std::span<const FieldPlace> places) {
  if (name.size() > 64) return std::nullopt;  // no field is that long; spare the table
  const std::string key = lower(name);
  const int limit = key.size() < 5 ? 1 : 2;
  std::optional<std::string_view> best;
  int best_d = limit + 1;
  for (const RequestField& f : kFields) {
    if (std::find(places.begin(), places.end(), f.place) == places.end()) continue;
    const int d = edit_distance(key, f.name);
    if (d < best_d) {
      best_d = d;
      best = f.name;
    }
  }
  return best;
}

std::vector<FieldProblem> check_body_fields(const json& body, Endpoint endpoint, bool plain) {
  const std::span<const FieldPlace> places =
      plain ? std::span<const FieldPlace>(kPlainPlaces) : std::span<const FieldPlace>(kBodyPlaces);
  std::vector<FieldProblem> unknown, unsupported;
  for (auto it = body.begin(); it != body.end(); ++it) {
    const std::string& name = it.key();
    const RequestField* f = find_field(name);
    if (!f) {
      unknown.push_back(
          {name, "unknown_field", "unknown field '" + name + "'" + did_you_mean(name, places)});
      continue;
    }
    if (f->place == Place::kLine && !(plain && name == "custom_id")) {
      unknown.push_back({name, "unknown_field",
                         "'" + name + "' is a field of the Batch API line, not of its 'body'"});
      continue;
    }
    if (f->place == Place::kLine) continue;  // a plain line's custom_id
    const Place other = endpoint == Endpoint::kCompletions ? Place::kChat : Place::kCompletions;
    if (f->place == other) {
      unknown.push_back({name, "unknown_field",
                         "'" + name + "' is a field of " +
                             std::string(endpoint_url(endpoint == Endpoint::kCompletions
                                                          ? Endpoint::kChatCompletions
                                                          : Endpoint::kCompletions)) +
                             " requests, not of " + std::string(endpoint_url(endpoint)) + " ones"});
      continue;
    }
    if (f->use == Use::kDefaultOnly && !it.value().is_null() &&
        !f->is_default(it.value(), body, endpoint))
      unsupported.push_back({name, "unsupported", "'" + name + "' " + std::string(f->unsupported)});
  }
  unknown.insert(unknown.end(), unsupported.begin(), unsupported.end());
  return unknown;
}

std::vector<FieldProblem> check_message_fields(const json& messages) {
  // OpenAI's message fields, and what chat templates read besides (reasoning of earlier turns).
  static constexpr std::string_view kFields[] = {"role",          "content",      "name",
                                                 "tool_calls",    "tool_call_id", "function_call",
                                                 "refusal",       "audio",        "reasoning_content",
                                                 "reasoning"};
  std::vector<FieldProblem> out;
  if (!messages.is_array()) return out;
  for (size_t i = 0; i < messages.size(); ++i) {
    const json& m = messages[i];
    if (!m.is_object()) continue;  // read_body says what a message must be
    for (auto it = m.begin(); it != m.end(); ++it) {
      const std::string& name = it.key();
      if (std::find(std::begin(kFields), std::end(kFields), name) != std::end(kFields)) continue;
      std::string_view best;
      int best_d = 3;
      for (std::string_view f : kFields)
        if (const int d = edit_distance(name, f); d < best_d && d <= (name.size() < 5 ? 1 : 2)) {
          best = f;
          best_d = d;
        }
      const std::string where = "messages[" + std::to_string(i) + "]";
      out.push_back({"messages[]." + name, "unknown_field",
                     "unknown field '" + name + "' in " + where +
                         (best.empty() ? "" : " (did you mean '" + std::string(best) + "'?)")});
    }
  }
  return out;
}

std::vector<FieldProblem> check_line_fields(const json& line) {
  constexpr FieldPlace kLinePlaces[] = {Place::kLine};
  std::vector<FieldProblem> out;
  for (auto it = line.begin(); it != line.end(); ++it) {
    const std::string& name = it.key();
    const RequestField* f = find_field(name);
    if (f && f->place == Place::kLine) continue;
    if (f)
      out.push_back({name, "unknown_field",
                     "'" + name + "' is a field of the request's 'body', not of the line"});
    else
      out.push_back({name, "unknown_field",
                     "unknown field '" + name + "'" + did_you_mean(name, kLinePlaces)});
  }
  return out;
}

}  // namespace strata::text
