// Regexes for constrained generation (vLLM's guided_regex, JSON Schema's pattern), compiled into
// a GrammarBuilder fragment over UTF-8 bytes. The subset, with Python's `re` meaning: literals
// (UTF-8 included), escapes of punctuation, \n \t \r \f \v \0 \xHH \uHHHH \UHHHHHHHH, classes
// [...] with ranges and negation, \d \w \s (ASCII: [0-9], [A-Za-z0-9_], [ \t\n\r\f\v]), \S (every
// character Python's \s does not match), \D \W (the ASCII characters \d \w do not match: Python's also
// hold non-ASCII ones; a negated class holding \d \w \s stays in ASCII too, for the same reason), `.`
// (any character but \n), groups (...), (?:...),
// (?P<name>...), alternation |, quantifiers ? * + {m} {m,} {m,n} {,n} (lazy forms allowed: they
// match the same strings), and ^ / $ only at the very start / end. Backreferences, lookaround,
// word boundaries, inline flags, Unicode properties and possessive quantifiers are errors that
// name the construct and its offset. Pure functions; thread safe.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"
#include "text/grammar.h"

namespace strata::text {

struct RegexOptions {
  // Match the text anywhere inside the string (JSON Schema's `pattern`) unless anchored with ^ or
  // $; otherwise the whole text matches (guided_regex).
  bool search = false;
  // The fragment spells the matching string as the inside of a JSON string literal: " \ and
  // control characters appear escaped.
  bool json_string = false;
};

// Largest count in a {m,n} quantifier.
inline constexpr int kMaxRegexRepeat = 1000;

// A fragment of `b` matching `pattern`. Errors name `what` (e.g. "guided_regex") and the offset.
Result<GrammarBuilder::Frag> compile_regex(GrammarBuilder& b, std::string_view pattern, const RegexOptions& options,
                                           const std::string& what);

// A fragment of `b` for one character of a JSON string's inside: any code point but " \ and
// control characters, or one of the escapes \" \\ \/ \b \f \n \r \t.
GrammarBuilder::Frag json_string_char(GrammarBuilder& b);

}  // namespace strata::text
