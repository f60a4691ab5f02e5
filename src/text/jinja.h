// A Jinja interpreter for chat templates: parses a template once and renders it as jinja2's
// ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, loopcontrols) does inside
// transformers' apply_chat_template, with its raise_exception and strftime_now globals and its
// tojson filter. A Template is immutable after parse and may be rendered by several threads.
#pragma once

#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "text/jinja_value.h"

namespace strata::text::jinja {

struct Stmt;

struct RenderOptions {
  // The time strftime_now() formats; unset: the local time when it is called.
  std::optional<std::tm> now;
};

class Template {
 public:
  // Parses `source`. `name` (a file, or "tokenizer_config.json chat_template") starts every error
  // message: "<name>, line N: <what is wrong>".
  static Result<Template> parse(std::string_view source, std::string name);

  // Renders with the variables of `context` (messages, add_generation_prompt, bos_token, ...).
  // Errors name the template and the line: an undefined value used as an object, a type error,
  // or the message the template passes to raise_exception.
  Result<std::string> render(const Dict& context, const RenderOptions& options = {}) const;

  const std::string& name() const { return name_; }
  // True when a {% for %} loops over an attribute or item named `key` of something (x.content,
  // x['content'], possibly through filters): how templates that take content parts show it.
  bool loops_over(std::string_view key) const;

 private:
  Template() = default;
  std::string name_;
  std::shared_ptr<const std::vector<std::unique_ptr<Stmt>>> body_;
};

}  // namespace strata::text::jinja
