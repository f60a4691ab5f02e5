// The fields of a request line: every field is read, accepted as harmless, or answered with an
// error naming it ("unknown_field" with a "did you mean" for a misspelling, "unsupported" for a
// known field strata cannot honour), in the plain form, a Batch API body and a Batch API line;
// with ignore_unknown_fields the request parses as if the field were absent.
#include <set>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "text/batch_request.h"
#include "text/request_fields.h"

namespace strata::text {
namespace {

using nlohmann::json;

std::string batch_line(const std::string& url, const json& body,
                       const json& extra = json::object()) {
  json j = {{"custom_id", "b1"}, {"method", "POST"}, {"url", url}, {"body", body}};
  j.update(extra);
  return j.dump();
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

TEST(RequestFields, AMisspelledFieldIsAnErrorThatSuggestsTheField) {
  const ParsedLine p =
      parse_request_line(R"({"custom_id":"t1","prompt":"Love is","temprature":0})", 3);
  ASSERT_FALSE(p.request);
  EXPECT_EQ(p.error.code, "unknown_field");
  EXPECT_EQ(p.custom_id, "t1");
  EXPECT_TRUE(contains(p.error.message, "line 3 (custom_id 't1')")) << p.error.message;
  EXPECT_TRUE(contains(p.error.message, "unknown field 'temprature' (did you mean 'temperature'?)"))
      << p.error.message;
  EXPECT_TRUE(contains(p.error.message, "--ignore-unknown-fields")) << p.error.message;

  // The same in a Batch API body, with a transposition and a case slip.
  const ParsedLine b = parse_request_line(
      batch_line("/v1/chat/completions",
                 {{"messages", json::array({{{"role", "user"}, {"content", "hi"}}})},
                  {"max_tokesn", 4},
                  {"Top_P", 0.5}}),
      9);
  ASSERT_FALSE(b.request);
  EXPECT_EQ(b.error.code, "unknown_field");
  EXPECT_TRUE(contains(b.error.message, "'Top_P' (did you mean 'top_p'?)")) << b.error.message;
  EXPECT_TRUE(contains(b.error.message, "'max_tokesn' (did you mean 'max_tokens'?)"))
      << b.error.message;
}

TEST(RequestFields, AnUnknownFieldIsAnErrorNamingIt) {
  const ParsedLine p =
      parse_request_line(R"({"custom_id":"u","prompt":"Love is","flux_capacitor":1.21})", 1);
  ASSERT_FALSE(p.request);
  EXPECT_EQ(p.error.code, "unknown_field");
  EXPECT_TRUE(contains(p.error.message, "unknown field 'flux_capacitor'")) << p.error.message;
  EXPECT_FALSE(contains(p.error.message, "did you mean")) << p.error.message;

  // A body field beside the body of a Batch API line would be dropped: it is an error too.
  const ParsedLine top =
      parse_request_line(batch_line("/v1/completions", {{"prompt", "x"}}, {{"temperature", 0}}), 2);
  ASSERT_FALSE(top.request);
  EXPECT_EQ(top.error.code, "unknown_field");
  EXPECT_TRUE(contains(top.error.message, "'temperature' is a field of the request's 'body'"))
      << top.error.message;
  const ParsedLine bodyy =
      parse_request_line(R"({"custom_id":"c","url":"/v1/completions","bodyy":{}})", 2);
  ASSERT_FALSE(bodyy.request);
  EXPECT_TRUE(contains(bodyy.error.message, "unknown field 'bodyy' (did you mean 'body'?)"))
      << bodyy.error.message;

  const ParsedLine inner =
      parse_request_line(batch_line("/v1/completions", {{"prompt", "x"}, {"custom_id", "b1"}}), 2);
  ASSERT_FALSE(inner.request);
  EXPECT_TRUE(contains(inner.error.message,
                       "'custom_id' is a field of the Batch API line, not of its 'body'"))
      << inner.error.message;

  // A field of the other endpoint.
  const ParsedLine suffix = parse_request_line(
      R"({"custom_id":"s","messages":[{"role":"user","content":"x"}],"suffix":"end"})", 4);
  ASSERT_FALSE(suffix.request);
  EXPECT_EQ(suffix.error.code, "unknown_field");
  EXPECT_TRUE(contains(suffix.error.message, "'suffix' is a field of /v1/completions requests"))
      << suffix.error.message;
  const ParsedLine tools = parse_request_line(R"({"custom_id":"t","prompt":"x","tools":[]})", 5);
  ASSERT_FALSE(tools.request);
  EXPECT_TRUE(contains(tools.error.message, "'tools' is a field of /v1/chat/completions requests"))
      << tools.error.message;
}

TEST(RequestFields, AKnownFieldStrataCannotHonourIsUnsupportedUnlessItIsTheDefault) {
  struct Case {
    const char* fields;  // added to a plain completion request
    const char* expect;  // "" = accepted
  };
  const Case cases[] = {
      {R"("n": 1, "best_of": 1, "stream": false, "presence_penalty": 0, "frequency_penalty": 0)",
       ""},
      {R"("logit_bias": {}, "echo": false, "min_p": 0, "repetition_penalty": 1, "skip_special_tokens": true)",
       ""},
      {R"("suffix": null, "stop_token_ids": [], "add_special_tokens": true, "response_format": {"type": "text"})",
       ""},
      {R"("n": 2, "best_of": 2)", ""},
      {R"("best_of": 3)", "'best_of' other than n"},
      {R"("n": 2, "best_of": 1)", "'best_of' other than n"},
      {R"("stream": true)", "'stream' is not available in batch mode"},
      {R"("length_penalty": 0.5)", "'length_penalty' is not supported"},
      {R"("use_beam_search": true)", "'use_beam_search' is not supported"},
      {R"("logit_bias": {"50256": -100}, "repetition_penalty": 1.1, "min_p": 0.05)", ""},
      {R"("presence_penalty": 0.5, "frequency_penalty": -1)", ""},
      {R"("guided_json": {"type": "object"})", ""},
      {R"("guided_grammar": "root ::= x")", "'guided_grammar' is not supported"},
      {R"("response_format": {"type": "json_object"})", ""},
      {R"("response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}})", ""},
      {R"("response_format": {"type": "xml"})", "'response_format' is supported as {\"type\": \"text\"}, {\"type\": \"json_object\"} or"},
      {R"("add_special_tokens": false)", "'add_special_tokens' is not supported"},
      {R"("echo": true)", ""},
      {R"("echo": true, "logprobs": 0)", "'echo' true is supported on /v1/completions without logprobs only"},
  };
  for (const Case& c : cases) {
    const std::string line =
        std::string(R"({"custom_id": "c", "prompt": "Love is", )") + c.fields + "}";
    const ParsedLine p = parse_request_line(line, 1);
    if (!*c.expect) {
      EXPECT_TRUE(p.request) << c.fields << ": " << p.error.message;
      continue;
    }
    ASSERT_FALSE(p.request) << c.fields;
    EXPECT_EQ(p.error.code, "unsupported") << c.fields;
    EXPECT_TRUE(contains(p.error.message, c.expect)) << p.error.message;
  }
  // tool_choice "none" cannot be honoured when there are tools to call.
  const json tools = json::array({{{"type", "function"}, {"function", {{"name", "f"}}}}});
  const json msgs = json::array({{{"role", "user"}, {"content", "hi"}}});
  EXPECT_TRUE(
      parse_request_line(
          batch_line("/v1/chat/completions", {{"messages", msgs}, {"tool_choice", "none"}}), 1)
          .request);
  const ParsedLine none = parse_request_line(
      batch_line("/v1/chat/completions",
                 {{"messages", msgs}, {"tools", tools}, {"tool_choice", "none"}}),
      1);
  ASSERT_FALSE(none.request);
  EXPECT_EQ(none.error.code, "unsupported");
  // Unknown fields come first and decide the code; every field is named.
  const ParsedLine both =
      parse_request_line(R"({"custom_id":"c","prompt":"x","best_of":4,"temprature":0})", 1);
  ASSERT_FALSE(both.request);
  EXPECT_EQ(both.error.code, "unknown_field");
  EXPECT_TRUE(contains(both.error.message, "'temprature'") &&
              contains(both.error.message, "'best_of' other than n"))
      << both.error.message;
}

TEST(RequestFields, AMessagesUnknownFieldIsNamedWithItsIndex) {
  const json msgs = json::array({{{"role", "system"}, {"content", "be brief"}},
                                 {{"role", "user"}, {"contnet", "hi"}, {"name", "ann"}}});
  const ParsedLine p = parse_request_line(batch_line("/v1/chat/completions", {{"messages", msgs}}), 4);
  ASSERT_FALSE(p.request);
  EXPECT_EQ(p.error.code, "unknown_field");
  EXPECT_TRUE(contains(p.error.message, "unknown field 'contnet' in messages[1] (did you mean 'content'?)"))
      << p.error.message;
  // What OpenAI messages and chat templates use is accepted.
  const json fine = json::array(
      {{{"role", "user"}, {"content", "hi"}, {"name", "ann"}},
       {{"role", "assistant"}, {"content", nullptr}, {"reasoning_content", "..."}, {"refusal", nullptr},
        {"tool_calls", json::array({{{"id", "1"}, {"type", "function"}, {"function", {{"name", "f"}, {"arguments", "{}"}}}}})}},
       {{"role", "tool"}, {"tool_call_id", "1"}, {"content", "42"}}});
  const ParsedLine ok = parse_request_line(batch_line("/v1/chat/completions", {{"messages", fine}}), 5);
  EXPECT_TRUE(ok.request) << ok.error.message;
  // With --ignore-unknown-fields the message runs without it, reported once per field name.
  const ParsedLine ignored = parse_request_line(batch_line("/v1/chat/completions", {{"messages", msgs}}), 4,
                                                ParseOptions{.ignore_unknown_fields = true});
  ASSERT_TRUE(ignored.request) << ignored.error.message;
  ASSERT_EQ(ignored.ignored_fields.size(), 1u);
  EXPECT_EQ(ignored.ignored_fields[0].field, "messages[].contnet");
}

TEST(RequestFields, HarmlessFieldsAreAcceptedAndTheRequestsModelIsIgnored) {
  const json body = {
      {"model", "gpt-4o-mini"},    {"prompt", "Love is"},      {"user", "u-1"},
      {"metadata", {{"k", "v"}}},  {"store", false},           {"service_tier", "auto"},
      {"stream_options", nullptr}, {"safety_identifier", "s"}, {"priority", 3},
      {"temperature", 0}};
  const ParsedLine p = parse_request_line(batch_line("/v1/completions", body), 1);
  ASSERT_TRUE(p.request) << p.error.message;
  EXPECT_EQ(p.request->overrides.temperature, 0.0f);
  CompletionResult res;
  res.text = "x";
  res.finish_reason = "length";
  const json out = json::parse(format_result(*p.request, "served-name", res, 0));
  EXPECT_EQ(out["response"]["body"]["model"], "served-name");
}

TEST(RequestFields, IgnoringUnknownFieldsParsesTheRequestWithoutThem) {
  const ParseOptions ignore{.ignore_unknown_fields = true};
  const ParsedLine p = parse_request_line(
      R"({"custom_id":"t1","prompt":"Love is","temprature":0,"best_of":3,"max_tokens":5})", 1, ignore);
  ASSERT_TRUE(p.request) << p.error.message;
  EXPECT_FALSE(p.request->overrides.temperature);  // as if absent: the job's default applies
  EXPECT_EQ(p.request->overrides.max_tokens, 5);
  ASSERT_EQ(p.ignored_fields.size(), 2u);
  EXPECT_EQ(p.ignored_fields[0].field, "temprature");
  EXPECT_EQ(p.ignored_fields[0].code, "unknown_field");
  EXPECT_TRUE(contains(p.ignored_fields[0].message, "did you mean 'temperature'?"));
  EXPECT_EQ(p.ignored_fields[1].field, "best_of");
  EXPECT_EQ(p.ignored_fields[1].code, "unsupported");
  // Batch API: a field beside the body is left out as well; a bad value of a known field is still
  // an error.
  const ParsedLine top = parse_request_line(
      batch_line("/v1/completions", {{"prompt", "x"}}, {{"seed", 1}}), 1, ignore);
  ASSERT_TRUE(top.request) << top.error.message;
  EXPECT_FALSE(top.request->overrides.seed);
  const ParsedLine bad =
      parse_request_line(R"({"custom_id":"c","prompt":"x","temperature":"hot"})", 1, ignore);
  ASSERT_FALSE(bad.request);
  EXPECT_EQ(bad.error.code, "invalid_request");
}

TEST(RequestFields, TheTableNamesEachFieldOnceAndEveryDefaultOnlyFieldHasItsRule) {
  std::set<std::string_view> names;
  for (const RequestField& f : request_fields()) {
    EXPECT_TRUE(names.insert(f.name).second) << f.name;
    if (f.use == FieldUse::kDefaultOnly) {
      EXPECT_NE(f.is_default, nullptr) << f.name;
      EXPECT_FALSE(f.unsupported.empty()) << f.name;
    }
  }
  // Every field of a body is accepted when null (null is "not given"), in the plain form too.
  for (const RequestField& f : request_fields()) {
    if (f.place == FieldPlace::kLine || f.use == FieldUse::kRead) continue;
    const bool chat = f.place == FieldPlace::kChat;
    json line = {{"custom_id", "c"}, {std::string(f.name), nullptr}};
    if (chat)
      line["messages"] = json::array({{{"role", "user"}, {"content", "x"}}});
    else
      line["prompt"] = "x";
    const ParsedLine p = parse_request_line(line.dump(), 1);
    EXPECT_TRUE(p.request) << f.name << ": " << p.error.message;
  }
}

TEST(RequestFields, EditDistanceCountsATranspositionAsOneEdit) {
  EXPECT_EQ(edit_distance("temperature", "temperature"), 0);
  EXPECT_EQ(edit_distance("temprature", "temperature"), 1);
  EXPECT_EQ(edit_distance("tempreature", "temperature"), 1);  // "er" <-> "re"
  EXPECT_EQ(edit_distance("top_p", "top_k"), 1);
  EXPECT_EQ(edit_distance("", "abc"), 3);
  constexpr FieldPlace kBody[] = {FieldPlace::kAny, FieldPlace::kCompletions, FieldPlace::kChat};
  EXPECT_EQ(closest_field("topp", kBody), "top_p");
  EXPECT_EQ(closest_field("maxtokens", kBody), "max_tokens");
  EXPECT_EQ(closest_field("STOP", kBody), "stop");
  EXPECT_EQ(closest_field("xy", kBody), std::nullopt);  // "n" is too far for a short name
  EXPECT_EQ(closest_field("completely_different", kBody), std::nullopt);
}

}  // namespace
}  // namespace strata::text
