// Constraint: what a constrained generation must write, as a byte automaton: JSON mode's one
// JSON object (json_automaton.h), or a Grammar compiled from a JSON Schema (json_schema.h), a regex
// (regex_grammar.h, whole match) or a list of choices (exactly one of them). A Constraint is
// immutable and shared by the requests that use it; ConstraintState is one sequence's progress, a
// small value copied while a token trie is searched (token_trie.h). A Constraint must outlive its
// states. Thread safety: a Constraint may be shared; a state is not thread safe.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "text/grammar.h"
#include "text/json_automaton.h"

namespace strata::text {

class ConstraintState {
 public:
  // False when `c` cannot continue the text; the state is then unchanged.
  bool feed(unsigned char c) {
    return std::holds_alternative<JsonAutomaton>(s_) ? std::get<JsonAutomaton>(s_).feed(c)
                                                     : std::get<GrammarState>(s_).feed(c);
  }
  // The text so far is a whole answer: the sequence may end.
  bool complete() const;
  // Nothing may follow the text: the sequence must end (JSON mode ends as its object closes).
  bool dead_end() const;
  // Bytes equal for two states of one Constraint exactly when they allow the same continuations.
  std::string key() const;
  // The grammar state, or null in JSON mode.
  const GrammarState* grammar_state() const { return std::get_if<GrammarState>(&s_); }

 private:
  friend class Constraint;
  std::variant<JsonAutomaton, GrammarState> s_;
};

class Constraint {
 public:
  enum class Kind { kJsonObject, kJsonSchema, kRegex, kChoice };

  static std::shared_ptr<const Constraint> json_object();
  // Errors start with `what`, the request field the schema or pattern came from.
  static Result<std::shared_ptr<const Constraint>> json_schema(const nlohmann::ordered_json& schema,
                                                               const std::string& what);
  static Result<std::shared_ptr<const Constraint>> regex(std::string_view pattern, const std::string& what);
  static Result<std::shared_ptr<const Constraint>> choice(const std::vector<std::string>& choices,
                                                          const std::string& what);

  Kind kind() const { return kind_; }
  // "JSON object", "JSON Schema", "regex", "choice": for messages.
  const char* name() const;
  ConstraintState start() const;
  // The grammar, or null in JSON mode.
  const Grammar* grammar() const { return grammar_ ? &*grammar_ : nullptr; }

 private:
  Kind kind_ = Kind::kJsonObject;
  std::optional<Grammar> grammar_;
};

}  // namespace strata::text
