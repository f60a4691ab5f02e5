#include "text/constraint.h"

#include "text/json_schema.h"
#include "text/regex_grammar.h"

namespace strata::text {

bool ConstraintState::complete() const {
  return std::holds_alternative<JsonAutomaton>(s_) ? std::get<JsonAutomaton>(s_).complete()
                                                   : std::get<GrammarState>(s_).complete();
}

bool ConstraintState::dead_end() const {
  return std::holds_alternative<JsonAutomaton>(s_) ? std::get<JsonAutomaton>(s_).complete()
                                                   : std::get<GrammarState>(s_).dead_end();
}

std::string ConstraintState::key() const {
  return std::holds_alternative<JsonAutomaton>(s_) ? std::get<JsonAutomaton>(s_).key()
                                                   : std::get<GrammarState>(s_).key();
}

std::shared_ptr<const Constraint> Constraint::json_object() {
  auto c = std::make_shared<Constraint>();
  c->kind_ = Kind::kJsonObject;
  return c;
}

Result<std::shared_ptr<const Constraint>> Constraint::json_schema(const nlohmann::ordered_json& schema,
                                                                  const std::string& what) {
  auto g = compile_json_schema(schema, what);
  if (!g.is_ok()) return g.status();
  auto c = std::make_shared<Constraint>();
  c->kind_ = Kind::kJsonSchema;
  c->grammar_ = std::move(*g);
  return std::shared_ptr<const Constraint>(std::move(c));
}

Result<std::shared_ptr<const Constraint>> Constraint::regex(std::string_view pattern, const std::string& what) {
  GrammarBuilder b;
  const uint32_t rule = b.new_rule();
  auto f = compile_regex(b, pattern, {}, what);
  if (!f.is_ok()) return f.status();
  b.define(rule, *f);
  auto g = b.finish(rule);
  if (!g.is_ok()) return Status(g.status().code(), what + ": " + g.status().message());
  auto c = std::make_shared<Constraint>();
  c->kind_ = Kind::kRegex;
  c->grammar_ = std::move(*g);
  return std::shared_ptr<const Constraint>(std::move(c));
}

Result<std::shared_ptr<const Constraint>> Constraint::choice(const std::vector<std::string>& choices,
                                                             const std::string& what) {
  if (choices.empty()) return invalid_argument(what + ": give at least one choice");
  GrammarBuilder b;
  const uint32_t rule = b.new_rule();
  b.define(rule, b.one_of(choices));
  auto g = b.finish(rule);
  if (!g.is_ok()) return Status(g.status().code(), what + ": " + g.status().message());
  auto c = std::make_shared<Constraint>();
  c->kind_ = Kind::kChoice;
  c->grammar_ = std::move(*g);
  return std::shared_ptr<const Constraint>(std::move(c));
}

const char* Constraint::name() const {
  switch (kind_) {
    case Kind::kJsonObject: return "JSON object";
    case Kind::kJsonSchema: return "JSON Schema";
    case Kind::kRegex: return "regex";
    case Kind::kChoice: return "choice";
  }
  return "?";
}

ConstraintState Constraint::start() const {
  ConstraintState s;
  if (grammar_) s.s_ = GrammarState(*grammar_);
  return s;
}

}  // namespace strata::text
