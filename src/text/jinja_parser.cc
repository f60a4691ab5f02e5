#include "text/jinja_parser.h"

#include <initializer_list>

#include "text/jinja_builtins.h"
#include "text/jinja_lexer.h"

namespace strata::text::jinja {

namespace {

ExprPtr make_expr(ExprKind kind, int line) {
  auto e = std::make_unique<Expr>();
  e->kind = kind;
  e->line = line;
  return e;
}

ExprPtr make_binary(ExprKind kind, std::string op, ExprPtr a, ExprPtr b) {
  auto e = make_expr(kind, a->line);
  e->name = std::move(op);
  e->args.push_back(std::move(a));
  e->args.push_back(std::move(b));
  return e;
}

std::string describe(const Token& t) {
  switch (t.type) {
    case TokenType::kText:
      return "template text";
    case TokenType::kVarBegin:
      return "'{{'";
    case TokenType::kVarEnd:
      return "'}}'";
    case TokenType::kBlockBegin:
      return "'{%'";
    case TokenType::kBlockEnd:
      return "'%}'";
    case TokenType::kString:
      return "string '" + t.text + "'";
    case TokenType::kEnd:
      return "the end of the template";
    default:
      return "'" + t.text + "'";
  }
}

class Parser {
 public:
  Parser(std::vector<Token> tokens, const std::string& name)
      : toks_(std::move(tokens)), name_(name) {}

  Result<Body> parse_all() {
    std::string found;
    STRATA_ASSIGN_OR_RETURN(Body body, parse_body({}, found));
    return body;
  }

 private:
  const Token& cur() const { return toks_[pos_]; }
  const Token& peek(size_t ahead = 1) const {
    return toks_[std::min(pos_ + ahead, toks_.size() - 1)];
  }
  const Token& next() { return toks_[pos_ < toks_.size() - 1 ? pos_++ : pos_]; }
  bool at_op(std::string_view op) const {
    return cur().type == TokenType::kOperator && cur().text == op;
  }
  bool at_name(std::string_view n) const {
    return cur().type == TokenType::kName && cur().text == n;
  }
  bool skip_op(std::string_view op) {
    if (!at_op(op)) return false;
    ++pos_;
    return true;
  }
  bool skip_name(std::string_view n) {
    if (!at_name(n)) return false;
    ++pos_;
    return true;
  }
  Status fail(int line, const std::string& msg) const {
    return invalid_argument(name_ + ", line " + std::to_string(line) + ": " + msg);
  }
  Status unexpected(const std::string& wanted) const {
    return fail(cur().line, "expected " + wanted + ", found " + describe(cur()));
  }
  Status expect_op(std::string_view op) {
    if (skip_op(op)) return Status::ok();
    return unexpected("'" + std::string(op) + "'");
  }
  Status expect_block_end() {
    if (cur().type == TokenType::kBlockEnd) {
      ++pos_;
      return Status::ok();
    }
    return unexpected("the end of the tag '%}'");
  }
  Result<std::string> expect_name() {
    if (cur().type != TokenType::kName) return unexpected("a name");
    return next().text;
  }

  // Statements until one of `ends` ({% end... %}, {% else %}, ...); `found` says which (its tag
  // name is consumed, the rest of the tag is left to the caller).
  Result<Body> parse_body(std::initializer_list<std::string_view> ends, std::string& found) {
    Body body;
    while (true) {
      const Token& t = cur();
      if (t.type == TokenType::kEnd) {
        if (ends.size() == 0) return body;
        return fail(t.line, "unexpected end of template: expected '{% " +
                                std::string(*ends.begin()) + " %}'");
      }
      auto s = std::make_unique<Stmt>();
      s->line = t.line;
      if (t.type == TokenType::kText) {
        s->kind = StmtKind::kText;
        s->text = next().text;
      } else if (t.type == TokenType::kVarBegin) {
        next();
        s->kind = StmtKind::kOutput;
        STRATA_ASSIGN_OR_RETURN(s->expr, parse_tuple());
        if (cur().type != TokenType::kVarEnd) return unexpected("the end of the expression '}}'");
        next();
      } else if (t.type == TokenType::kBlockBegin) {
        const Token& tag = peek();
        for (std::string_view e : ends) {
          if (tag.type == TokenType::kName && tag.text == e) {
            pos_ += 2;
            found = std::string(e);
            return body;
          }
        }
        next();
        STRATA_ASSIGN_OR_RETURN(s, parse_statement());
      } else {
        return fail(t.line, "unexpected " + describe(t));
      }
      body.push_back(std::move(s));
    }
  }

  Result<std::unique_ptr<Stmt>> parse_statement() {
    DepthGuard guard(depth_);
    if (depth_ > kMaxDepth) return too_deep();
    const Token& tag = cur();
    if (tag.type != TokenType::kName) return unexpected("a tag name");
    const std::string name = next().text;
    auto s = std::make_unique<Stmt>();
    s->line = tag.line;
    std::string found;
    if (name == "if") {
      s->kind = StmtKind::kIf;
      std::string kw = "if";
      while (kw == "if" || kw == "elif") {
        STRATA_ASSIGN_OR_RETURN(ExprPtr c, parse_expression());
        STRATA_RETURN_IF_ERROR(expect_block_end());
        STRATA_ASSIGN_OR_RETURN(Body b, parse_body({"elif", "else", "endif"}, kw));
        s->branches.emplace_back(std::move(c), std::move(b));
      }
      if (kw == "else") {
        STRATA_RETURN_IF_ERROR(expect_block_end());
        STRATA_ASSIGN_OR_RETURN(s->else_body, parse_body({"endif"}, kw));
      }
    } else if (name == "for") {
      STRATA_RETURN_IF_ERROR(parse_for(*s));
      return s;
    } else if (name == "set") {
      STRATA_RETURN_IF_ERROR(parse_set(*s));
      return s;
    } else if (name == "macro" || name == "call") {
      STRATA_RETURN_IF_ERROR(parse_macro_or_call(*s, name == "macro"));
      return s;
    } else if (name == "filter") {
      s->kind = StmtKind::kFilterBlock;
      STRATA_ASSIGN_OR_RETURN(s->expr, parse_filters(nullptr, /*start_inline=*/true));
      STRATA_RETURN_IF_ERROR(expect_block_end());
      STRATA_ASSIGN_OR_RETURN(s->body, parse_body({"endfilter"}, found));
    } else if (name == "break" || name == "continue") {
      s->kind = name == "break" ? StmtKind::kBreak : StmtKind::kContinue;
      if (loops_ == 0) return fail(tag.line, "'" + name + "' outside of a loop");
    } else if (name == "generation") {
      s->kind = StmtKind::kBlock;
      STRATA_RETURN_IF_ERROR(expect_block_end());
      STRATA_ASSIGN_OR_RETURN(s->body, parse_body({"endgeneration"}, found));
    } else {
      return fail(tag.line, "unknown tag '" + name + "'");
    }
    STRATA_RETURN_IF_ERROR(expect_block_end());
    return s;
  }

  Status parse_targets(std::vector<std::string>& names) {
    const bool paren = skip_op("(");
    do {
      STRATA_ASSIGN_OR_RETURN(std::string n, expect_name());
      names.push_back(std::move(n));
    } while (skip_op(","));
    if (paren) STRATA_RETURN_IF_ERROR(expect_op(")"));
    return Status::ok();
  }

  Status parse_for(Stmt& s) {
    s.kind = StmtKind::kFor;
    STRATA_RETURN_IF_ERROR(parse_targets(s.targets));
    if (!skip_name("in")) return unexpected("'in'");
    STRATA_ASSIGN_OR_RETURN(s.expr, parse_tuple(/*with_condexpr=*/false));
    if (skip_name("if")) {
      STRATA_ASSIGN_OR_RETURN(s.cond, parse_expression());
    }
    if (at_name("recursive")) return fail(cur().line, "recursive loops are not supported");
    STRATA_RETURN_IF_ERROR(expect_block_end());
    std::string found;
    ++loops_;
    STRATA_ASSIGN_OR_RETURN(s.body, parse_body({"else", "endfor"}, found));
    --loops_;
    if (found == "else") {
      STRATA_RETURN_IF_ERROR(expect_block_end());
      STRATA_ASSIGN_OR_RETURN(s.else_body, parse_body({"endfor"}, found));
    }
    return expect_block_end();
  }

  Status parse_set(Stmt& s) {
    s.kind = StmtKind::kSet;
    if (cur().type == TokenType::kName && peek().type == TokenType::kOperator &&
        peek().text == ".") {
      s.targets.push_back(next().text);
      next();
      STRATA_ASSIGN_OR_RETURN(s.attr, expect_name());
    } else {
      STRATA_RETURN_IF_ERROR(parse_targets(s.targets));
    }
    if (skip_op("=")) {
      STRATA_ASSIGN_OR_RETURN(s.expr, parse_tuple());
      return expect_block_end();
    }
    if (s.targets.size() != 1 || !s.attr.empty()) return unexpected("'='");
    s.kind = StmtKind::kSetBlock;
    if (at_op("|")) {
      STRATA_ASSIGN_OR_RETURN(s.expr, parse_filters(nullptr));
    }
    STRATA_RETURN_IF_ERROR(expect_block_end());
    std::string found;
    STRATA_ASSIGN_OR_RETURN(s.body, parse_body({"endset"}, found));
    return expect_block_end();
  }

  Status parse_params(Stmt& s) {
    STRATA_RETURN_IF_ERROR(expect_op("("));
    while (!skip_op(")")) {
      if (!s.params.empty()) STRATA_RETURN_IF_ERROR(expect_op(","));
      if (skip_op(")")) break;
      STRATA_ASSIGN_OR_RETURN(std::string n, expect_name());
      ExprPtr def;
      if (skip_op("=")) {
        STRATA_ASSIGN_OR_RETURN(def, parse_expression());
      }
      s.params.emplace_back(std::move(n), std::move(def));
    }
    return Status::ok();
  }

  Status parse_macro_or_call(Stmt& s, bool macro) {
    std::string found;
    if (macro) {
      s.kind = StmtKind::kMacro;
      STRATA_ASSIGN_OR_RETURN(s.name, expect_name());
      STRATA_RETURN_IF_ERROR(parse_params(s));
    } else {
      s.kind = StmtKind::kCallBlock;
      if (at_op("(")) STRATA_RETURN_IF_ERROR(parse_params(s));
      STRATA_ASSIGN_OR_RETURN(s.expr, parse_expression());
      if (s.expr->kind != ExprKind::kCall)
        return fail(s.line, "{% call %} needs a call expression");
    }
    STRATA_RETURN_IF_ERROR(expect_block_end());
    const int saved = loops_;
    loops_ = 0;
    STRATA_ASSIGN_OR_RETURN(s.body, parse_body({macro ? "endmacro" : "endcall"}, found));
    loops_ = saved;
    return expect_block_end();
  }

  // --- Expressions, lowest precedence first (jinja2's parser.py) ---

  // A comma-separated tuple, or a single expression.
  Result<ExprPtr> parse_tuple(bool with_condexpr = true) {
    const int line = cur().line;
    std::vector<ExprPtr> items;
    bool comma = false;
    while (true) {
      if (!items.empty()) {
        if (!skip_op(",")) break;
        comma = true;
        if (cur().type == TokenType::kBlockEnd || cur().type == TokenType::kVarEnd || at_op(")"))
          break;
      }
      STRATA_ASSIGN_OR_RETURN(ExprPtr e, with_condexpr ? parse_expression() : parse_or());
      items.push_back(std::move(e));
    }
    if (items.size() == 1 && !comma) return std::move(items[0]);
    auto t = make_expr(ExprKind::kTuple, line);
    t->args = std::move(items);
    return t;
  }

  Result<ExprPtr> parse_expression() {
    DepthGuard guard(depth_);
    if (depth_ > kMaxDepth) return too_deep();
    STRATA_ASSIGN_OR_RETURN(ExprPtr e, parse_or());
    while (skip_name("if")) {
      auto c = make_expr(ExprKind::kCond, e->line);
      STRATA_ASSIGN_OR_RETURN(ExprPtr cond, parse_or());
      ExprPtr other;
      if (skip_name("else")) {
        STRATA_ASSIGN_OR_RETURN(other, parse_expression());
      }
      c->args.push_back(std::move(e));
      c->args.push_back(std::move(cond));
      c->args.push_back(std::move(other));
      e = std::move(c);
    }
    return e;
  }

  Result<ExprPtr> parse_or() {
    STRATA_ASSIGN_OR_RETURN(ExprPtr e, parse_and());
    while (skip_name("or")) {
      STRATA_ASSIGN_OR_RETURN(ExprPtr r, parse_and());
      e = make_binary(ExprKind::kOr, "or", std::move(e), std::move(r));
    }
    return e;
  }

  Result<ExprPtr> parse_and() {
    STRATA_ASSIGN_OR_RETURN(ExprPtr e, parse_not());
    while (skip_name("and")) {
      STRATA_ASSIGN_OR_RETURN(ExprPtr r, parse_not());
      e = make_binary(ExprKind::kAnd, "and", std::move(e), std::move(r));
    }
    return e;
  }

  Result<ExprPtr> parse_not() {
    DepthGuard guard(depth_);
    if (depth_ > kMaxDepth) return too_deep();
    if (at_name("not")) {
      auto n = make_expr(ExprKind::kNot, next().line);
      STRATA_ASSIGN_OR_RETURN(ExprPtr e, parse_not());
      n->args.push_back(std::move(e));
      return n;
    }
    return parse_compare();
  }

  Result<ExprPtr> parse_compare() {
    STRATA_ASSIGN_OR_RETURN(ExprPtr e, parse_math1());
    ExprPtr cmp;
    while (true) {
      std::string op;
      if (cur().type == TokenType::kOperator &&
          (at_op("==") || at_op("!=") || at_op("<") || at_op("<=") || at_op(">") || at_op(">="))) {
        op = next().text;
      } else if (skip_name("in")) {
        op = "in";
      } else if (at_name("not") && peek().type == TokenType::kName && peek().text == "in") {
        pos_ += 2;
        op = "notin";
      } else {
        break;
      }
      if (!cmp) {
        cmp = make_expr(ExprKind::kCompare, e->line);
        cmp->args.push_back(std::move(e));
      }
      STRATA_ASSIGN_OR_RETURN(ExprPtr r, parse_math1());
      cmp->ops.push_back(op);
      cmp->args.push_back(std::move(r));
    }
    return cmp ? std::move(cmp) : std::move(e);
  }

  Result<ExprPtr> parse_math1() {
    STRATA_ASSIGN_OR_RETURN(ExprPtr e, parse_concat());
    while (at_op("+") || at_op("-")) {
      const std::string op = next().text;
      STRATA_ASSIGN_OR_RETURN(ExprPtr r, parse_concat());
      e = make_binary(ExprKind::kBinary, op, std::move(e), std::move(r));
    }
    return e;
  }

  Result<ExprPtr> parse_concat() {
    STRATA_ASSIGN_OR_RETURN(ExprPtr e, parse_math2());
    while (skip_op("~")) {
      STRATA_ASSIGN_OR_RETURN(ExprPtr r, parse_math2());
      e = make_binary(ExprKind::kBinary, "~", std::move(e), std::move(r));
    }
    return e;
  }

  Result<ExprPtr> parse_math2() {
    STRATA_ASSIGN_OR_RETURN(ExprPtr e, parse_pow());
    while (at_op("*") || at_op("/") || at_op("//") || at_op("%")) {
      const std::string op = next().text;
      STRATA_ASSIGN_OR_RETURN(ExprPtr r, parse_pow());
      e = make_binary(ExprKind::kBinary, op, std::move(e), std::move(r));
    }
    return e;
  }

  Result<ExprPtr> parse_pow() {
    STRATA_ASSIGN_OR_RETURN(ExprPtr e, parse_unary());
    while (skip_op("**")) {
      STRATA_ASSIGN_OR_RETURN(ExprPtr r, parse_unary());
      e = make_binary(ExprKind::kBinary, "**", std::move(e), std::move(r));
    }
    return e;
  }

  Result<ExprPtr> parse_unary(bool with_filter = true) {
    DepthGuard guard(depth_);
    if (depth_ > kMaxDepth) return too_deep();
    ExprPtr e;
    if (at_op("-") || at_op("+")) {
      e = make_expr(at_op("-") ? ExprKind::kNeg : ExprKind::kPos, cur().line);
      next();
      STRATA_ASSIGN_OR_RETURN(ExprPtr operand, parse_unary(false));
      e->args.push_back(std::move(operand));
    } else {
      STRATA_ASSIGN_OR_RETURN(e, parse_primary());
    }
    STRATA_ASSIGN_OR_RETURN(e, parse_postfix(std::move(e)));
    if (with_filter) return parse_filters(std::move(e));
    return e;
  }

  Result<ExprPtr> parse_primary() {
    const Token& t = cur();
    auto lit = [&](Value v) {
      auto e = make_expr(ExprKind::kLiteral, t.line);
      e->value = std::move(v);
      return e;
    };
    switch (t.type) {
      case TokenType::kName: {
        const std::string n = next().text;
        if (n == "true" || n == "True") return lit(Value(true));
        if (n == "false" || n == "False") return lit(Value(false));
        if (n == "none" || n == "None") return lit(Value(nullptr));
        auto e = make_expr(ExprKind::kName, t.line);
        e->name = n;
        return e;
      }
      case TokenType::kString: {
        std::string s;
        while (cur().type == TokenType::kString) s += next().text;  // adjacent literals concatenate
        return lit(Value(std::move(s)));
      }
      case TokenType::kInt:
        return lit(Value(next().int_value));
      case TokenType::kFloat:
        return lit(Value(next().float_value));
      case TokenType::kOperator:
        if (skip_op("(")) {
          if (skip_op(")")) return make_expr(ExprKind::kTuple, t.line);
          STRATA_ASSIGN_OR_RETURN(ExprPtr e, parse_tuple());
          STRATA_RETURN_IF_ERROR(expect_op(")"));
          return e;
        }
        if (at_op("[") || at_op("{")) return parse_list_or_dict();
        break;
      default:
        break;
    }
    return unexpected("an expression");
  }

  Result<ExprPtr> parse_list_or_dict() {
    const bool dict = at_op("{");
    auto e = make_expr(dict ? ExprKind::kDict : ExprKind::kList, next().line);
    const std::string close = dict ? "}" : "]";
    while (!skip_op(close)) {
      if (!e->args.empty()) {
        STRATA_RETURN_IF_ERROR(expect_op(","));
        if (skip_op(close)) break;
      }
      STRATA_ASSIGN_OR_RETURN(ExprPtr item, parse_expression());
      e->args.push_back(std::move(item));
      if (dict) {
        STRATA_RETURN_IF_ERROR(expect_op(":"));
        STRATA_ASSIGN_OR_RETURN(ExprPtr value, parse_expression());
        e->args.push_back(std::move(value));
      }
    }
    return e;
  }

  Status parse_call_args(Expr& e) {
    STRATA_RETURN_IF_ERROR(expect_op("("));
    bool first = true;
    while (!skip_op(")")) {
      if (!first) {
        STRATA_RETURN_IF_ERROR(expect_op(","));
        if (skip_op(")")) break;
      }
      first = false;
      if (at_op("*") || at_op("**"))
        return fail(cur().line, "*args and **kwargs in calls are not supported");
      if (cur().type == TokenType::kName && peek().type == TokenType::kOperator &&
          peek().text == "=") {
        std::string key = next().text;
        next();
        STRATA_ASSIGN_OR_RETURN(ExprPtr v, parse_expression());
        e.kwargs.emplace_back(std::move(key), std::move(v));
      } else {
        if (!e.kwargs.empty())
          return fail(cur().line, "a positional argument follows keyword arguments");
        STRATA_ASSIGN_OR_RETURN(ExprPtr v, parse_expression());
        e.args.push_back(std::move(v));
      }
    }
    return Status::ok();
  }

  Result<ExprPtr> parse_postfix(ExprPtr e) {
    while (true) {
      if (at_op(".")) {
        const int line = next().line;
        if (cur().type == TokenType::kInt) {  // foo.0 is foo[0]
          auto i = make_expr(ExprKind::kItem, line);
          auto key = make_expr(ExprKind::kLiteral, line);
          key->value = Value(next().int_value);
          i->args.push_back(std::move(e));
          i->args.push_back(std::move(key));
          e = std::move(i);
          continue;
        }
        auto a = make_expr(ExprKind::kAttr, line);
        STRATA_ASSIGN_OR_RETURN(a->name, expect_name());
        a->args.push_back(std::move(e));
        e = std::move(a);
      } else if (at_op("[")) {
        STRATA_ASSIGN_OR_RETURN(e, parse_subscript(std::move(e)));
      } else if (at_op("(")) {
        auto c = make_expr(ExprKind::kCall, cur().line);
        c->args.push_back(std::move(e));
        STRATA_RETURN_IF_ERROR(parse_call_args(*c));
        e = std::move(c);
      } else {
        return e;
      }
    }
  }

  Result<ExprPtr> parse_subscript(ExprPtr obj) {
    const int line = next().line;  // [
    std::vector<ExprPtr> parts(3);
    size_t part = 0;
    bool slice = false;
    while (!skip_op("]")) {
      if (skip_op(":")) {
        slice = true;
        if (++part > 2) return fail(line, "a slice has at most three parts");
        continue;
      }
      if (parts[part]) return unexpected("']'");
      STRATA_ASSIGN_OR_RETURN(parts[part], parse_expression());
    }
    auto e = make_expr(slice ? ExprKind::kSlice : ExprKind::kItem, line);
    e->args.push_back(std::move(obj));
    if (!slice && !parts[0]) return fail(line, "empty subscript");
    for (size_t i = 0; i < (slice ? 3u : 1u); ++i) e->args.push_back(std::move(parts[i]));
    return e;
  }

  // Filters ("| name(args)") and tests ("is [not] name args") after an operand (null for the
  // filter chain of {% filter %}, whose first filter has no "|", and {% set x | f %}).
  Result<ExprPtr> parse_filters(ExprPtr e, bool start_inline = false) {
    while (true) {
      const bool filter = at_op("|") || start_inline;
      if (!filter && !at_name("is")) {
        if (e && at_op("(")) {  // a call after a filter: (x|f)(...)
          STRATA_ASSIGN_OR_RETURN(e, parse_postfix(std::move(e)));
          continue;
        }
        return e;
      }
      const int line = start_inline ? cur().line : next().line;
      start_inline = false;
      auto f = make_expr(filter ? ExprKind::kFilter : ExprKind::kTest, line);
      if (!filter && skip_name("not")) f->negated = true;
      STRATA_ASSIGN_OR_RETURN(f->name, expect_name());
      while (skip_op(".")) {
        STRATA_ASSIGN_OR_RETURN(std::string part, expect_name());
        f->name += "." + part;
      }
      if (filter ? !is_filter(f->name) : !is_test(f->name))
        return fail(line,
                    std::string("no ") + (filter ? "filter" : "test") + " named '" + f->name + "'");
      f->args.push_back(std::move(e));
      if (at_op("(")) {
        STRATA_RETURN_IF_ERROR(parse_call_args(*f));
      } else if (!filter && starts_test_argument()) {
        STRATA_ASSIGN_OR_RETURN(ExprPtr arg, parse_primary());
        STRATA_ASSIGN_OR_RETURN(arg, parse_postfix(std::move(arg)));
        f->args.push_back(std::move(arg));
      }
      e = std::move(f);
    }
  }

  // jinja2 reads "x is divisibleby 3" as a test with one argument.
  bool starts_test_argument() const {
    const Token& t = cur();
    if (t.type == TokenType::kName)
      return t.text != "else" && t.text != "or" && t.text != "and" && t.text != "is";
    if (t.type == TokenType::kString || t.type == TokenType::kInt || t.type == TokenType::kFloat)
      return true;
    return at_op("[") || at_op("{");
  }

  // Nesting (of blocks, brackets, "not" and "-") is bounded so that no template exhausts the stack.
  static constexpr int kMaxDepth = 100;
  struct DepthGuard {
    int& depth;
    explicit DepthGuard(int& d) : depth(++d) {}
    ~DepthGuard() { --depth; }
  };
  Status too_deep() const { return fail(cur().line, "expressions or blocks nested too deeply"); }

  std::vector<Token> toks_;
  const std::string& name_;
  size_t pos_ = 0;
  int loops_ = 0;
  int depth_ = 0;
};

}  // namespace

Result<Body> parse_template(std::string_view source, const std::string& name) {
  STRATA_ASSIGN_OR_RETURN(std::vector<Token> tokens, tokenize(source, name));
  return Parser(std::move(tokens), name).parse_all();
}

}  // namespace strata::text::jinja
