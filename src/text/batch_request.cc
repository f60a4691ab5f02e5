#include "text/batch_request.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "common/json_read.h"

namespace strata::text {

namespace {

using json = nlohmann::json;
using nlohmann::ordered_json;

constexpr int32_t kMaxTopLogprobs = 20;
// Choices per request (vLLM and OpenAI accept up to 128).
constexpr int64_t kMaxChoices = 128;
// Beyond this a temperature is a flat distribution anyway; the bound keeps it a finite float.
constexpr double kMaxTemperature = 1e6;
// A request line: a long prompt is a few MiB; nesting past a few levels is not a request.
constexpr JsonLimits kLineLimits{.max_bytes = 64 << 20, .max_depth = 32};

struct Fail {
  std::string code, message;
};

// Reads the optional fields of a completions/chat body into `r`; returns a failure or nothing.
std::optional<Fail> read_body(const json& body, BatchRequest& r, const std::string& at) {
  auto bad = [&](const std::string& field, const std::string& what) {
    return Fail{"invalid_request", at + ": '" + field + "' " + what};
  };
  for (const char* key : {"max_tokens", "max_completion_tokens"}) {
    if (!body.contains(key) || body[key].is_null()) continue;
    if (!body[key].is_number_integer() || body[key].get<int64_t>() < 1 || body[key].get<int64_t>() > INT32_MAX)
      return bad(key, "must be an integer >= 1");
    r.overrides.max_tokens = static_cast<int32_t>(body[key].get<int64_t>());
  }
  if (body.contains("temperature") && !body["temperature"].is_null()) {
    const auto& v = body["temperature"];
    if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() < 0 || v.get<double>() > kMaxTemperature)
      return bad("temperature", "must be a number in [0, 1e6]");
    r.overrides.temperature = v.get<float>();
  }
  if (body.contains("top_p") && !body["top_p"].is_null()) {
    const auto& v = body["top_p"];
    if (!v.is_number() || !(v.get<double>() > 0 && v.get<double>() <= 1)) return bad("top_p", "must be a number in (0, 1]");
    r.overrides.top_p = v.get<float>();
  }
  if (body.contains("top_k") && !body["top_k"].is_null()) {
    const auto& v = body["top_k"];
    const std::optional<int64_t> k = v.is_number_integer() ? json_to_int64(v) : std::nullopt;
    if (!k || *k < -1 || *k > INT32_MAX) return bad("top_k", "must be an integer >= 0 (or -1 for no limit)");
    r.overrides.top_k = static_cast<int32_t>(std::max<int64_t>(0, *k));
  }
  if (body.contains("seed") && !body["seed"].is_null()) {
    const auto& v = body["seed"];
    if (!v.is_number_integer()) return bad("seed", "must be an integer");
    r.overrides.seed = v.is_number_unsigned() ? v.get<uint64_t>() : static_cast<uint64_t>(v.get<int64_t>());
  }
  if (body.contains("stop_token_ids") && !body["stop_token_ids"].is_null()) {
    const auto& v = body["stop_token_ids"];
    if (!v.is_array() || v.size() > 256) return bad("stop_token_ids", "must be an array of at most 256 token ids");
    for (const auto& t : v) {
      const std::optional<int64_t> id = t.is_number_integer() ? json_to_int64(t) : std::nullopt;
      if (!id || *id < 0 || *id > INT32_MAX) return bad("stop_token_ids", "must hold token ids (integers >= 0)");
      r.overrides.stop_token_ids.push_back(static_cast<int32_t>(*id));
    }
  }
  if (body.contains("echo") && body["echo"].is_boolean()) r.echo = body["echo"].get<bool>();
  if (body.contains("n") && !body["n"].is_null()) {
    const auto& v = body["n"];
    const std::optional<int64_t> n = v.is_number_integer() ? json_to_int64(v) : std::nullopt;
    if (!n || *n < 1 || *n > kMaxChoices)
      return bad("n", "must be an integer in [1, " + std::to_string(kMaxChoices) + "]");
    r.n = static_cast<int32_t>(*n);
  }
  if (body.contains("min_tokens") && !body["min_tokens"].is_null()) {
    const auto& v = body["min_tokens"];
    const std::optional<int64_t> n = v.is_number_integer() ? json_to_int64(v) : std::nullopt;
    if (!n || *n < 0 || *n > INT32_MAX) return bad("min_tokens", "must be an integer >= 0");
    r.overrides.min_tokens = static_cast<int32_t>(*n);
  }
  auto number_in = [&](const char* field, double lo, double hi, bool open_lo, float& out) -> bool {
    if (!body.contains(field) || body[field].is_null()) return true;
    const auto& v = body[field];
    if (!v.is_number()) return false;
    const double x = v.get<double>();
    if (!(open_lo ? x > lo : x >= lo) || !(x <= hi)) return false;
    out = static_cast<float>(x);
    return true;
  };
  if (!number_in("presence_penalty", -2, 2, false, r.overrides.presence_penalty))
    return bad("presence_penalty", "must be a number in [-2, 2]");
  if (!number_in("frequency_penalty", -2, 2, false, r.overrides.frequency_penalty))
    return bad("frequency_penalty", "must be a number in [-2, 2]");
  if (!number_in("repetition_penalty", 0, 100, true, r.overrides.repetition_penalty))
    return bad("repetition_penalty", "must be a number in (0, 100]");
  if (!number_in("min_p", 0, 1, false, r.overrides.min_p)) return bad("min_p", "must be a number in [0, 1]");
  if (body.contains("logit_bias") && !body["logit_bias"].is_null()) {
    const auto& v = body["logit_bias"];
    if (!v.is_object() || v.size() > 1024) return bad("logit_bias", "must be an object of at most 1024 \"token id\": bias");
    for (const auto& [key, bias] : v.items()) {
      char* end = nullptr;
      const long long id = std::strtoll(key.c_str(), &end, 10);
      if (key.empty() || *end != '\0' || id < 0 || id > INT32_MAX)
        return bad("logit_bias", "keys must be token ids (\"" + key.substr(0, 32) + "\" is not)");
      if (!bias.is_number() || !(bias.get<double>() >= -100 && bias.get<double>() <= 100))
        return bad("logit_bias", "values must be numbers in [-100, 100]");
      r.overrides.logit_bias.emplace_back(static_cast<int32_t>(id), bias.get<float>());
    }
  }
  if (body.contains("include_stop_str_in_output") && !body["include_stop_str_in_output"].is_null()) {
    if (!body["include_stop_str_in_output"].is_boolean()) return bad("include_stop_str_in_output", "must be true or false");
    r.overrides.include_stop_str_in_output = body["include_stop_str_in_output"].get<bool>();
  }
  if (body.contains("stop") && !body["stop"].is_null()) {
    const auto& v = body["stop"];
    std::vector<std::string> stop;
    if (v.is_string()) {
      stop.push_back(v.get<std::string>());
    } else if (v.is_array()) {
      for (const auto& s : v) {
        if (!s.is_string()) return bad("stop", "must be a string or an array of strings");
        stop.push_back(s.get<std::string>());
      }
    } else {
      return bad("stop", "must be a string or an array of strings");
    }
    for (const auto& s : stop)
      if (s.empty()) return bad("stop", "must not contain empty strings");
    r.overrides.stop = std::move(stop);
  }
  if (body.contains("ignore_eos") && !body["ignore_eos"].is_null()) {
    if (!body["ignore_eos"].is_boolean()) return bad("ignore_eos", "must be true or false");
    r.overrides.ignore_eos = body["ignore_eos"].get<bool>();
  }
  // logprobs: an integer (completions) or a boolean with top_logprobs (chat).
  if (body.contains("logprobs") && !body["logprobs"].is_null()) {
    const auto& v = body["logprobs"];
    if (r.endpoint == Endpoint::kCompletions && v.is_number_integer()) {
      if (v.get<int64_t>() < 0 || v.get<int64_t>() > kMaxTopLogprobs) return bad("logprobs", "must be in [0, 20]");
      r.logprobs = true;
      r.top_logprobs = static_cast<int32_t>(v.get<int64_t>());
    } else if (v.is_boolean()) {
      r.logprobs = v.get<bool>();
    } else {
      return bad("logprobs", r.endpoint == Endpoint::kCompletions ? "must be an integer in [0, 20]" : "must be true or false");
    }
  }
  if (body.contains("top_logprobs") && !body["top_logprobs"].is_null()) {
    const auto& v = body["top_logprobs"];
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > kMaxTopLogprobs)
      return bad("top_logprobs", "must be an integer in [0, 20]");
    if (!r.logprobs) return bad("top_logprobs", "needs 'logprobs': true");
    r.top_logprobs = static_cast<int32_t>(v.get<int64_t>());
  }
  // The prompt.
  if (r.endpoint == Endpoint::kCompletions) {
    if (!body.contains("prompt") || body["prompt"].is_null()) return Fail{"invalid_prompt", at + ": missing 'prompt'"};
    json p = body["prompt"];
    // A one-element batch of prompts is that prompt.
    if (p.is_array() && p.size() == 1 && (p[0].is_string() || p[0].is_array())) p = json(p[0]);
    if (p.is_string()) {
      r.prompt = p.get<std::string>();
    } else if (p.is_array()) {
      std::vector<int32_t> ids;
      for (const auto& t : p) {
        if (t.is_string() || t.is_array())
          return Fail{"unsupported", at + ": 'prompt' holds several prompts; send one request per prompt"};
        if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() > INT32_MAX)
          return bad("prompt", "must be a string or an array of non-negative token ids");
        ids.push_back(static_cast<int32_t>(t.get<int64_t>()));
      }
      r.prompt_ids = std::move(ids);
    } else {
      return bad("prompt", "must be a string or an array of token ids");
    }
  } else {
    if (!body.contains("messages") || !body["messages"].is_array() || body["messages"].empty())
      return Fail{"invalid_prompt", at + ": 'messages' must be a non-empty array"};
    for (size_t i = 0; i < body["messages"].size(); ++i) {
      const auto& m = body["messages"][i];
      const std::string mi = "messages[" + std::to_string(i) + "]";
      if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
        return bad(mi, "must be an object with a string 'role'");
      if (m.contains("tool_calls") && !m["tool_calls"].is_null() && !m["tool_calls"].is_array())
        return bad(mi + ".tool_calls", "must be an array");
      ChatMessage msg{m["role"].get<std::string>(), "", {}};
      const json content = m.contains("content") ? m["content"] : json();
      if (content.is_string()) {
        msg.content = content.get<std::string>();
      } else if (content.is_array()) {  // [{"type": "text", "text": "..."}]
        for (const auto& part : content) {
          const bool text_part = part.is_object() && part.contains("type") && part["type"].is_string() &&
                                 part["type"].get_ref<const std::string&>() == "text" && part.contains("text") &&
                                 part["text"].is_string();
          if (!text_part)
            return Fail{"unsupported", at + ": " + mi + ".content: only text parts are supported"};
          msg.content += part["text"].get<std::string>();
        }
      } else if (!content.is_null()) {
        return bad(mi + ".content", "must be a string or an array of text parts");
      }
      r.messages.push_back(std::move(msg));
    }
    if (body.contains("tools") && !body["tools"].is_null()) {
      const auto& t = body["tools"];
      if (!t.is_array() ||
          !std::all_of(t.begin(), t.end(), [](const json& x) { return x.is_object(); }))
        return bad("tools", "must be an array of tool objects");
    }
    if (body.contains("chat_template_kwargs") && !body["chat_template_kwargs"].is_null() &&
        !body["chat_template_kwargs"].is_object())
      return bad("chat_template_kwargs", "must be an object");
    if (body.contains("add_generation_prompt") && !body["add_generation_prompt"].is_null()) {
      if (!body["add_generation_prompt"].is_boolean())
        return bad("add_generation_prompt", "must be true or false");
      r.chat.add_generation_prompt = body["add_generation_prompt"].get<bool>();
    }
  }
  return std::nullopt;
}

// Structured output: response_format json_object / json_schema, guided_json, guided_regex,
// guided_choice (at most one), read from the line parsed again with its keys in order (a schema's
// properties are written in the order the request gives them).
std::optional<Fail> read_constraint(std::string_view line, const json& body, BatchRequest& r, const std::string& at,
                                    const std::vector<FieldProblem>& ignored) {
  auto given = [&](const char* k) {
    for (const FieldProblem& p : ignored)
      if (p.field == k) return false;  // --ignore-unknown-fields left it out
    return body.contains(k) && !body[k].is_null();
  };
  auto type_of = [](const auto& f) {
    return f.contains("type") && f["type"].is_string() ? f["type"].template get<std::string>() : std::string();
  };
  const bool format = given("response_format") && body["response_format"].is_object() &&
                      type_of(body["response_format"]) != "text";
  if (!format && !given("guided_json") && !given("guided_regex") && !given("guided_choice")) return std::nullopt;
  auto bad = [&](const std::string& field, const std::string& what) {
    return Fail{"invalid_request", at + ": '" + field + "' " + what};
  };
  const auto j = nlohmann::ordered_json::parse(line, nullptr, /*allow_exceptions=*/false);
  const nlohmann::ordered_json none;
  const auto& ob = j.is_object() && j.contains("body") && j["body"].is_object() ? j["body"] : j;
  auto field = [&](const char* k) -> const nlohmann::ordered_json& {
    return ob.is_object() && ob.contains(k) ? ob[k] : none;
  };
  std::vector<ConstraintSpec> specs;
  if (format) {
    const auto& f = field("response_format");
    if (!f.is_object()) return bad("response_format", "must be an object");
    const std::string type = type_of(f);
    if (type == "json_object") {
      specs.push_back({ConstraintSpec::Kind::kJsonObject, "response_format", "", {}});
    } else if (type == "json_schema") {
      for (const auto& [k, v] : f.items())
        if (k != "type" && k != "json_schema") return bad("response_format." + k, "is not a field of a json_schema format");
      if (!f.contains("json_schema") || !f["json_schema"].is_object())
        return bad("response_format.json_schema", "must be an object {\"name\": ..., \"schema\": {...}, \"strict\": ...}");
      const auto& js = f["json_schema"];
      for (const auto& [k, v] : js.items())
        if (k != "name" && k != "schema" && k != "strict" && k != "description")
          return bad("response_format.json_schema." + k, "is not a field of json_schema (name, description, schema, strict)");
      if (!js.contains("name") || !js["name"].is_string() || js["name"].get<std::string>().empty())
        return bad("response_format.json_schema.name", "must be a non-empty string");
      if (js.contains("strict") && !js["strict"].is_null() && !js["strict"].is_boolean())
        return bad("response_format.json_schema.strict", "must be true or false");
      if (!js.contains("schema") || !(js["schema"].is_object() || js["schema"].is_boolean()))
        return bad("response_format.json_schema.schema", "must be a JSON Schema object");
      specs.push_back({ConstraintSpec::Kind::kJsonSchema, "response_format.json_schema.schema", js["schema"].dump(), {}});
    } else {
      return bad("response_format.type", "must be \"text\", \"json_object\" or \"json_schema\"");
    }
  }
  if (given("guided_json")) {
    const auto& g = field("guided_json");
    if (g.is_string()) {
      const auto schema = nlohmann::ordered_json::parse(g.get<std::string>(), nullptr, false);
      if (schema.is_discarded() || !(schema.is_object() || schema.is_boolean()))
        return bad("guided_json", "must be a JSON Schema (an object, or a string holding one)");
      specs.push_back({ConstraintSpec::Kind::kJsonSchema, "guided_json", schema.dump(), {}});
    } else if (g.is_object()) {
      specs.push_back({ConstraintSpec::Kind::kJsonSchema, "guided_json", g.dump(), {}});
    } else {
      return bad("guided_json", "must be a JSON Schema (an object, or a string holding one)");
    }
  }
  if (given("guided_regex")) {
    if (!body["guided_regex"].is_string()) return bad("guided_regex", "must be a string (a regular expression)");
    specs.push_back({ConstraintSpec::Kind::kRegex, "guided_regex", body["guided_regex"].get<std::string>(), {}});
  }
  if (given("guided_choice")) {
    const auto& c = body["guided_choice"];
    if (!c.is_array() || c.empty() || c.size() > 4096)
      return bad("guided_choice", "must be a non-empty array of at most 4096 strings");
    ConstraintSpec spec{ConstraintSpec::Kind::kChoice, "guided_choice", "", {}};
    for (const auto& x : c) {
      if (!x.is_string() || x.get<std::string>().empty()) return bad("guided_choice", "must hold non-empty strings");
      spec.choices.push_back(x.get<std::string>());
    }
    specs.push_back(std::move(spec));
  }
  if (specs.size() > 1)
    return Fail{"invalid_request", at + ": give only one of 'response_format' (json_object or json_schema), "
                                        "'guided_json', 'guided_regex' and 'guided_choice' (got '" +
                                        specs[0].field + "' and '" + specs[1].field + "')"};
  r.constraint = std::move(specs[0]);
  return std::nullopt;
}

// What a chat template reads beyond role and content (tool calls, tools, template variables),
// kept with the keys in the order the request gives them (the checks above used `json`, which
// sorts them; tojson in a template must not).
void keep_chat_json(std::string_view line, BatchRequest& r) {
  const auto j = nlohmann::ordered_json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return;
  const auto& body = j.contains("body") && j["body"].is_object() ? j["body"] : j;
  if (!body.contains("messages") || !body["messages"].is_array() ||
      body["messages"].size() != r.messages.size())
    return;
  for (size_t i = 0; i < r.messages.size(); ++i) r.messages[i].message = body["messages"][i];
  if (body.contains("tools") && body["tools"].is_array()) r.chat.tools = body["tools"];
  if (body.contains("chat_template_kwargs") && body["chat_template_kwargs"].is_object())
    r.chat.kwargs = body["chat_template_kwargs"];
}

}  // namespace

ParsedLine parse_request_line(std::string_view line, int64_t line_no, const ParseOptions& options) {
  ParsedLine out;
  const std::string at = "line " + std::to_string(line_no);
  auto fail = [&](std::string code, std::string message) {
    out.error = {std::move(code), std::move(message)};
    return out;
  };
  // Fields strata cannot honour: one error naming each of them (the first one's code), or, with
  // ignore_unknown_fields, left out and listed.
  auto field_error = [&](std::vector<FieldProblem> problems, const std::string& where) -> std::optional<RequestError> {
    if (problems.empty()) return std::nullopt;
    if (options.ignore_unknown_fields) {
      for (auto& p : problems) out.ignored_fields.push_back(std::move(p));
      return std::nullopt;
    }
    std::string message = where + ": ";
    for (size_t i = 0; i < problems.size(); ++i) message += (i ? "; " : "") + problems[i].message;
    message += problems.size() == 1 ? "; pass --ignore-unknown-fields to run the request without it"
                                    : "; pass --ignore-unknown-fields to run the request without them";
    return RequestError{problems[0].code, message};
  };
  Result<json> parsed = parse_json(line, at, kLineLimits);
  if (!parsed.is_ok()) return fail("invalid_json", parsed.status().message());
  json& j = *parsed;
  if (!j.is_object()) return fail("invalid_json", at + ": expected a JSON object");
  if (j.contains("custom_id") && j["custom_id"].is_string()) out.custom_id = j["custom_id"].get<std::string>();
  if (!j.contains("custom_id")) return fail("invalid_request", at + ": missing 'custom_id'");
  if (!j["custom_id"].is_string()) return fail("invalid_request", at + ": 'custom_id' must be a string");
  if (out.custom_id->empty()) return fail("invalid_request", at + ": 'custom_id' must not be empty");

  BatchRequest r;
  r.line = line_no;
  r.custom_id = *out.custom_id;
  const std::string where = at + " (custom_id '" + r.custom_id + "')";
  const json* body = &j;
  if (j.contains("url") || j.contains("body") || j.contains("method")) {
    if (auto e = field_error(check_line_fields(j), where)) return fail(e->code, e->message);
    if (j.contains("method") && !(j["method"].is_string() && j["method"].get<std::string>() == "POST"))
      return fail("invalid_request", where + ": 'method' must be \"POST\"");
    if (!j.contains("url") || !j["url"].is_string()) return fail("invalid_url", where + ": missing 'url'");
    const std::string url = j["url"].get<std::string>();
    if (url == "/v1/completions") r.endpoint = Endpoint::kCompletions;
    else if (url == "/v1/chat/completions") r.endpoint = Endpoint::kChatCompletions;
    else return fail("invalid_url", where + ": url '" + url + "' is not supported (use /v1/completions or /v1/chat/completions)");
    if (!j.contains("body") || !j["body"].is_object()) return fail("invalid_request", where + ": 'body' must be an object");
    body = &j["body"];
  } else {
    const bool has_prompt = j.contains("prompt"), has_messages = j.contains("messages");
    if (has_prompt == has_messages)
      return fail("invalid_prompt", where + ": give exactly one of 'prompt' (a completion) or 'messages' (a chat)");
    r.endpoint = has_messages ? Endpoint::kChatCompletions : Endpoint::kCompletions;
  }
  const bool plain = body == &j;
  if (auto e = field_error(check_body_fields(*body, r.endpoint, plain), where)) return fail(e->code, e->message);
  if (r.endpoint == Endpoint::kChatCompletions && body->contains("messages"))
    if (auto e = field_error(check_message_fields((*body)["messages"]), where)) return fail(e->code, e->message);
  if (auto f = read_body(*body, r, where)) return fail(f->code, f->message);
  if (auto f = read_constraint(line, *body, r, where, out.ignored_fields)) return fail(f->code, f->message);
  if (r.endpoint == Endpoint::kChatCompletions) keep_chat_json(line, r);
  out.request = std::move(r);
  return out;
}

std::string result_id(int64_t line) { return "batch_req_" + std::to_string(line); }

// Keys in the order OpenAI writes them; the logprobs keep theirs (top_logprobs best first).
std::string format_result(const BatchRequest& req, const std::string& model,
                          std::span<const CompletionResult> choices, int64_t created_unix_s) {
  ordered_json body;
  if (req.endpoint == Endpoint::kCompletions) {
    body["id"] = "cmpl-" + std::to_string(req.line);
    body["object"] = "text_completion";
  } else {
    body["id"] = "chatcmpl-" + std::to_string(req.line);
    body["object"] = "chat.completion";
  }
  body["created"] = created_unix_s;
  body["model"] = model;
  ordered_json list = ordered_json::array();
  int64_t completion_tokens = 0;
  for (size_t i = 0; i < choices.size(); ++i) {
    const CompletionResult& res = choices[i];
    ordered_json choice;
    choice["index"] = i;
    if (req.endpoint == Endpoint::kCompletions)
      choice["text"] = res.text;
    else
      choice["message"] = {{"role", "assistant"}, {"content", res.text}};
    choice["finish_reason"] = res.finish_reason;
    choice["logprobs"] = res.logprobs;
    list.push_back(std::move(choice));
    completion_tokens += res.completion_tokens;
  }
  body["choices"] = std::move(list);
  const int64_t prompt_tokens = choices.empty() ? 0 : choices[0].prompt_tokens;
  body["usage"] = {{"prompt_tokens", prompt_tokens},
                   {"completion_tokens", completion_tokens},
                   {"total_tokens", prompt_tokens + completion_tokens}};
  ordered_json out;
  out["id"] = result_id(req.line);
  out["custom_id"] = req.custom_id;
  out["response"] = {{"status_code", 200}, {"request_id", "req_" + std::to_string(req.line)}, {"body", body}};
  out["error"] = nullptr;
  return out.dump(-1, ' ', false, ordered_json::error_handler_t::replace);
}

std::string format_error(int64_t line, const std::optional<std::string>& custom_id, const RequestError& err) {
  ordered_json out;
  out["id"] = result_id(line);
  out["custom_id"] = custom_id ? ordered_json(*custom_id) : ordered_json();
  out["response"] = nullptr;
  out["error"] = {{"code", err.code}, {"message", err.message}, {"line", line}, {"scope", err.job_level ? "job" : "request"}};
  return out.dump(-1, ' ', false, ordered_json::error_handler_t::replace);
}

std::optional<ResultRecord> parse_result_line(std::string_view line) {
  Result<json> parsed = parse_json(line, "result", kLineLimits);
  if (!parsed.is_ok() || !parsed->is_object()) return std::nullopt;
  const json& j = *parsed;
  ResultRecord r;
  const auto id = j.find("id");
  const std::string prefix = "batch_req_";
  if (id == j.end() || !id->is_string()) return std::nullopt;
  const std::string& ids = id->get_ref<const std::string&>();
  if (ids.size() <= prefix.size() || ids.size() > prefix.size() + 18 || ids.compare(0, prefix.size(), prefix) != 0)
    return std::nullopt;
  for (size_t i = prefix.size(); i < ids.size(); ++i) {
    if (ids[i] < '0' || ids[i] > '9') return std::nullopt;
    r.line = r.line * 10 + (ids[i] - '0');
  }
  const auto cid = j.find("custom_id");
  if (cid == j.end() || !(cid->is_string() || cid->is_null())) return std::nullopt;
  if (cid->is_string()) r.custom_id = cid->get<std::string>();
  const auto response = j.find("response"), error = j.find("error");
  if (response == j.end() || error == j.end()) return std::nullopt;
  r.ok = response->is_object();
  if (r.ok == !error->is_null()) return std::nullopt;  // exactly one of them
  if (!r.ok) {
    if (!response->is_null() || !error->is_object() || !error->contains("code") || !(*error)["code"].is_string())
      return std::nullopt;
    r.error_code = (*error)["code"].get<std::string>();
    r.job_level = error->contains("scope") && (*error)["scope"] == "job";
  }
  return r;
}

}  // namespace strata::text
