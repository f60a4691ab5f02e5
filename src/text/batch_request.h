// The JSONL formats of `strata generate`: one request per input line, in the OpenAI Batch form
// ({"custom_id", "method", "url", "body"} with url /v1/completions or /v1/chat/completions) or
// the plain form ({"custom_id", "prompt" | "messages", ...}); one result per output line in the
// OpenAI Batch output form. Parsing checks types and ranges and names the field at fault; a field
// strata does not know or cannot honour is an error too (request_fields.h), or, when asked,
// reported and left out; what needs the tokenizer or the model (empty or over-long prompts) is
// checked by the batch job. Pure functions; thread safe.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "text/chat_template.h"
#include "text/request_fields.h"

namespace strata::text {

// Per-request overrides of the job's sampling defaults; unset fields take the defaults.
struct RequestOverrides {
  std::optional<int32_t> max_tokens;
  std::optional<float> temperature;
  std::optional<float> top_p;
  std::optional<int32_t> top_k;
  std::optional<uint64_t> seed;
  std::optional<std::vector<std::string>> stop;
  std::optional<bool> ignore_eos;
  std::vector<int32_t> stop_token_ids;   // vLLM: tokens that end the answer as an EOS does
  int32_t min_tokens = 0;                // vLLM: no EOS, stop token or stop string before this many
  bool include_stop_str_in_output = false;  // vLLM: the stop string that ended it stays in the text
  float presence_penalty = 0, frequency_penalty = 0;  // OpenAI, in [-2, 2]
  float repetition_penalty = 1;                       // vLLM, > 0
  float min_p = 0;                                    // vLLM, in [0, 1]
  std::vector<std::pair<int32_t, float>> logit_bias;  // OpenAI: token id -> bias in [-100, 100]
};

// Structured output a request asks for (at most one): response_format json_object or json_schema,
// or vLLM's guided_json (a schema), guided_regex, guided_choice. Compiled by the batch job
// (text::Constraint), which shares one compiled constraint between requests that ask the same.
struct ConstraintSpec {
  enum class Kind { kJsonObject, kJsonSchema, kRegex, kChoice };
  Kind kind = Kind::kJsonObject;
  std::string field;   // where the request gave it, for errors: "response_format.json_schema.schema", ...
  std::string source;  // kJsonSchema: the schema as JSON text, keys in the request's order; kRegex: the pattern
  std::vector<std::string> choices;  // kChoice
};

struct BatchRequest {
  int64_t line = 0;            // 1-based line of the input file
  std::string custom_id;
  Endpoint endpoint = Endpoint::kCompletions;
  std::optional<std::string> prompt;               // completions: text
  std::optional<std::vector<int32_t>> prompt_ids;  // completions: token ids
  std::vector<ChatMessage> messages;               // chat completions
  ChatOptions chat;  // chat completions: tools, add_generation_prompt, chat_template_kwargs
  RequestOverrides overrides;
  int32_t n = 1;               // choices to generate for this prompt
  bool echo = false;           // completions: the returned text starts with the prompt
  std::optional<ConstraintSpec> constraint;  // structured output, if asked for
  bool logprobs = false;       // return the log-probability of each generated token
  int32_t top_logprobs = 0;    // and this many alternatives per position
};

struct RequestError {
  std::string code;     // "invalid_json", "invalid_request", "invalid_url", "invalid_prompt", ...
  std::string message;  // names the line and the field
  // The request failed because of a setting of the job (a flag, the model, the policy) rather
  // than its own content: its error line says "scope": "job" and --resume retries it.
  bool job_level = false;
};

struct ParseOptions {
  // Fields strata does not know or cannot honour are left out of the request (as if absent) and
  // listed in ParsedLine::ignored_fields, rather than making the line an error.
  bool ignore_unknown_fields = false;
};

struct ParsedLine {
  std::optional<BatchRequest> request;  // set when the line is a valid request
  std::optional<std::string> custom_id; // known even for some invalid lines
  RequestError error;                   // when !request
  std::vector<FieldProblem> ignored_fields;  // with ignore_unknown_fields: what was left out
};

ParsedLine parse_request_line(std::string_view line, int64_t line_no, const ParseOptions& options = {});

// What the engine produced for one request.
struct CompletionResult {
  std::string text;
  std::string finish_reason;  // "stop" or "length"
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  nlohmann::ordered_json logprobs;  // null unless asked for; keys in the order written
};

// The stable id of the result of input line `line`: "batch_req_<line>".
std::string result_id(int64_t line);
// One output line (without "\n") for a finished request with its choices in index order;
// `model` is the served model's name (a request's own "model" is ignored). Usage counts the
// prompt once and the completion tokens of every choice.
std::string format_result(const BatchRequest& req, const std::string& model,
                          std::span<const CompletionResult> choices, int64_t created_unix_s);
inline std::string format_result(const BatchRequest& req, const std::string& model, const CompletionResult& res,
                                 int64_t created_unix_s) {
  return format_result(req, model, std::span<const CompletionResult>(&res, 1), created_unix_s);
}
// One output line for a request that failed; custom_id null when unknown. The error object holds
// code, message, line and scope ("request": the request's own fault, answered for good; "job": a
// job setting's, retried by --resume).
std::string format_error(int64_t line, const std::optional<std::string>& custom_id, const RequestError& err);

// What an existing output line says, for --resume.
struct ResultRecord {
  int64_t line = 0;                      // from "id": "batch_req_<line>"
  std::optional<std::string> custom_id;  // null for a line whose custom_id could not be read
  bool ok = false;                       // a response rather than an error
  std::string error_code;
  bool job_level = false;                // an error of scope "job"
};
// nullopt when `line` is not a result line strata writes: an object with "id" "batch_req_<N>",
// "custom_id" (a string or null), and exactly one of "response" (an object) and "error" (an
// object with a string "code").
std::optional<ResultRecord> parse_result_line(std::string_view line);

}  // namespace strata::text
