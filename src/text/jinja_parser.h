// The Jinja parser of the chat-template interpreter: tokens to a syntax tree, with jinja2's
// grammar and operator precedence for the subset chat templates use (if/for/set/macro/call/
// filter/raw, break/continue, {% generation %}; expressions with filters, tests, slices, calls,
// conditional expressions). Unknown tags, filters and tests are errors at parse time, as in
// jinja2. Pure functions; thread safe.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"
#include "text/jinja_ast.h"

namespace strata::text::jinja {

// Parses `source`; errors read "<name>, line N: <what is wrong>".
Result<Body> parse_template(std::string_view source, const std::string& name);

}  // namespace strata::text::jinja
