// The Jinja lexer of the chat-template interpreter: splits a template into text and the tokens
// of {{ }} and {% %} tags, as jinja2's lexer does with trim_blocks and lstrip_blocks on (the
// environment transformers renders chat templates with): "-" and "+" whitespace control,
// comments, {% raw %}, newlines normalised to "\n" and one trailing newline dropped. Pure
// functions; thread safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace strata::text::jinja {

enum class TokenType {
  kText,        // template data between tags
  kVarBegin,    // {{
  kVarEnd,      // }}
  kBlockBegin,  // {%
  kBlockEnd,    // %}
  kName,
  kString,  // text holds the unescaped value
  kInt,
  kFloat,
  kOperator,  // text holds the operator: + - * / // % ** ~ == != < <= > >= = . : | , ( ) [ ] { } ;
  kEnd,       // end of the template
};

struct Token {
  TokenType type = TokenType::kEnd;
  std::string text;
  int line = 1;
  int64_t int_value = 0;
  double float_value = 0;
};

// Tokens of `source`; errors read "<name>, line N: <what is wrong>".
Result<std::vector<Token>> tokenize(std::string_view source, const std::string& name);

}  // namespace strata::text::jinja
