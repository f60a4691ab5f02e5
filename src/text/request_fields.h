// The fields a request line of `strata generate` may carry, in one table: every field of the
// OpenAI completions and chat-completions request bodies, vLLM's sampling extras and the Batch
// API's line (custom_id, method, url, body), each with what strata does with it (reads it, accepts
// and ignores it because it does not change the answer, or supports only its default value). A
// field the table lacks is unknown; check_fields() names each field strata cannot honour, with a
// "did you mean" for a misspelling. Pure functions over a static table; thread safe.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace strata::text {

enum class Endpoint { kCompletions, kChatCompletions };

enum class FieldUse {
  kRead,         // parsed and honoured (batch_request.cc)
  kIgnored,      // accepted and ignored: it does not change the answer ("user", "model")
  kDefaultOnly,  // not implemented: null or its default value is accepted, anything else is
                 // "unsupported"
};

enum class FieldPlace {
  kLine,         // the top level of a Batch API line: custom_id, method, url, body
  kAny,          // a body (or a plain line) of either endpoint
  kCompletions,  // only /v1/completions
  kChat,         // only /v1/chat/completions
};

struct RequestField {
  std::string_view name;
  FieldPlace place;
  FieldUse use;
  // kDefaultOnly: whether `value` (never null) is the default strata honours; the body and the
  // endpoint give the context (tool_choice "none" is harmless only without tools).
  bool (*is_default)(const nlohmann::json& value, const nlohmann::json& body,
                     Endpoint endpoint) = nullptr;
  // kDefaultOnly: the end of the error message, after "'name' ".
  std::string_view unsupported = "";
};

std::span<const RequestField> request_fields();

// One field of a line that strata cannot honour.
struct FieldProblem {
  std::string field;
  std::string code;  // "unknown_field" or "unsupported"
  std::string
      message;  // names the field: "unknown field 'temprature' (did you mean 'temperature'?)"
};

// The problems of the fields of `body` for `endpoint`, unknown fields first, each group in key
// order. `plain_line`: `body` is a plain line, its custom_id beside the body's fields.
std::vector<FieldProblem> check_body_fields(const nlohmann::json& body, Endpoint endpoint,
                                            bool plain_line);
// The problems of the fields of each chat message (an object of `messages`): a field no chat
// message of OpenAI's, vLLM's or a chat template's has ("contnet"), with "did you mean".
std::vector<FieldProblem> check_message_fields(const nlohmann::json& messages);
// The problems of the top level of a Batch API line (fields beside custom_id, method, url, body).
std::vector<FieldProblem> check_line_fields(const nlohmann::json& line);

// The known field closest to `name` (Damerau-Levenshtein distance at most 2, at most 1 for names
// under 5 characters, ignoring case), among the fields of `places`; nullopt when none is.
std::optional<std::string_view> closest_field(std::string_view name,
                                              std::span<const FieldPlace> places);
// The optimal-string-alignment distance: insertions, deletions, substitutions and transpositions
// of adjacent characters.
int edit_distance(std::string_view a, std::string_view b);

}  // namespace strata::text
