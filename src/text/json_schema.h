// JSON Schema to Grammar: compiles the schemas that structured output uses (OpenAI's
// response_format json_schema, vLLM's guided_json) into a byte grammar whose sentences are JSON
// texts valid against the schema. Supported: type (a name or a list), properties in schema order
// with required and optional ones (only the listed properties are written, whatever
// additionalProperties says, unless it is a schema: an error), items, minItems, maxItems, enum
// and const of any JSON value, string minLength/maxLength/pattern (regex_grammar.h, searched as
// JSON Schema says unless anchored)/format (date, date-time, time, uuid, email), integer and
// number bounds (minimum, maximum, exclusiveMinimum, exclusiveMaximum: enforced exactly; numbers
// are written as plain decimals with at most 15 integer and 6 fraction digits), anyOf, oneOf (as
// anyOf), allOf of one schema, $ref to "#", "#/$defs/..." or "#/definitions/..." (recursion nests
// at most GrammarState::kMaxDepth deep), and annotations (title, description, ...), ignored. Any
// other keyword is an error naming it and its JSON pointer. Whitespace: none, except one optional
// space after ':' and ','. Pure functions; thread safe.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "text/grammar.h"

namespace strata::text {

// Errors (kUnsupported for a keyword strata cannot honour, kInvalidArgument for a malformed
// schema) start with `what` (e.g. "response_format.json_schema.schema") and name the path.
Result<Grammar> compile_json_schema(const nlohmann::ordered_json& schema, const std::string& what);

}  // namespace strata::text
