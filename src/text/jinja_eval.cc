// The evaluator of the chat-template Jinja interpreter: statements and expressions over the
// syntax tree, with jinja2's scoping (each loop iteration and each macro call has its own scope;
// {% set %} inside them does not leak out; namespaces carry values across).
#include <algorithm>
#include <unordered_map>

#include "text/jinja.h"
#include "text/jinja_ast.h"
#include "text/jinja_builtins.h"
#include "text/jinja_parser.h"

namespace strata::text::jinja {

namespace {

constexpr int kMaxCallDepth = 100;  // nested macro calls

enum class Flow { kNormal, kBreak, kContinue };

struct Scope {
  std::unordered_map<std::string, Value> vars;
  std::shared_ptr<Scope> parent;
};

class Renderer {
 public:
  Renderer(const std::string& name, const RenderOptions& options) : name_(name), options_(options) {
    root_ = std::make_shared<Scope>();
    scope_ = root_;
  }

  Result<std::string> render(const Body& body, const Dict& context) {
    for (const char* g : {"range", "namespace", "dict"}) root_->vars[g] = builtin_global(g);
    root_->vars["raise_exception"] =
        Value(Callable{"raise_exception", [](CallArgs& a) -> Result<Value> {
                         const Value* msg = find_arg(a, 0, "message");
                         return invalid_argument(msg ? msg->str() : "raise_exception called");
                       }});
    root_->vars["strftime_now"] =
        Value(Callable{"strftime_now", [this](CallArgs& a) { return strftime_now(a); }});
    for (const auto& [k, v] : context.items) root_->vars[k] = v;
    std::string out;
    STRATA_ASSIGN_OR_RETURN(Flow f, exec(body, out));
    (void)f;
    return out;
  }

 private:
  // Enters a new scope under `parent` for the life of the guard.
  struct ScopeGuard {
    Renderer& r;
    std::shared_ptr<Scope> saved;
    ScopeGuard(Renderer& renderer, std::shared_ptr<Scope> parent)
        : r(renderer), saved(renderer.scope_) {
      r.scope_ = std::make_shared<Scope>();
      r.scope_->parent = std::move(parent);
    }
    ~ScopeGuard() { r.scope_ = saved; }
  };

  Status fail(int line, const std::string& msg) {
    located_ = true;
    return invalid_argument(name_ + ", line " + std::to_string(line) + ": " + msg);
  }
  // Adds the template name and line to an error from a builtin (not to one already located).
  Status at(int line, const Status& s) {
    if (located_) return s;
    return fail(line, s.message());
  }

  Value lookup(const std::string& n) const {
    for (const Scope* s = scope_.get(); s; s = s->parent.get())
      if (auto it = s->vars.find(n); it != s->vars.end()) return it->second;
    return Value::undefined("'" + n + "' is undefined");
  }

  Result<Value> strftime_now(CallArgs& a) {
    const Value* fmt = find_arg(a, 0, "format");
    if (!fmt || !fmt->is_string()) return invalid_argument("strftime_now needs a format string");
    std::tm tm{};
    if (options_.now) {
      tm = *options_.now;
    } else {
      const std::time_t t = std::time(nullptr);
      localtime_r(&t, &tm);
    }
    char buf[512];
    const size_t n = std::strftime(buf, sizeof buf, fmt->as_string().c_str(), &tm);
    return Value(std::string(buf, n));
  }

  Status bind(const std::vector<std::string>& targets, const Value& v, int line) {
    if (targets.size() == 1) {
      scope_->vars[targets[0]] = v;
      return Status::ok();
    }
    auto parts = iterate(v);
    if (!parts.is_ok()) return at(line, parts.status());
    if (parts->size() != targets.size())
      return fail(line, std::string(parts->size() > targets.size() ? "too many" : "not enough") +
                            " values to unpack (expected " + std::to_string(targets.size()) +
                            ", got " + std::to_string(parts->size()) + ")");
    for (size_t i = 0; i < targets.size(); ++i) scope_->vars[targets[i]] = (*parts)[i];
    return Status::ok();
  }

  Result<Flow> exec(const Body& body, std::string& out) {
    for (const auto& sp : body) {
      const Stmt& s = *sp;
      switch (s.kind) {
        case StmtKind::kText:
          out += s.text;
          break;
        case StmtKind::kOutput: {
          STRATA_ASSIGN_OR_RETURN(Value v, eval(*s.expr));
          out += v.str();
          break;
        }
        case StmtKind::kIf: {
          const Body* chosen = &s.else_body;
          for (const auto& [cond, b] : s.branches) {
            STRATA_ASSIGN_OR_RETURN(Value c, eval(*cond));
            if (c.truthy()) {
              chosen = &b;
              break;
            }
          }
          STRATA_ASSIGN_OR_RETURN(Flow f, exec(*chosen, out));
          if (f != Flow::kNormal) return f;
          break;
        }
        case StmtKind::kFor:
          STRATA_RETURN_IF_ERROR(exec_for(s, out));
          break;
        case StmtKind::kSet:
          STRATA_RETURN_IF_ERROR(exec_set(s));
          break;
        case StmtKind::kSetBlock: {
          std::string text;
          STRATA_RETURN_IF_ERROR(exec(s.body, text).status());
          Value v(std::move(text));
          if (s.expr) {
            STRATA_ASSIGN_OR_RETURN(v, apply_chain(*s.expr, v));
          }
          scope_->vars[s.targets[0]] = v;
          break;
        }
        case StmtKind::kMacro:
          scope_->vars[s.name] = make_macro(s);
          break;
        case StmtKind::kCallBlock: {
          STRATA_ASSIGN_OR_RETURN(Value v, eval_call(*s.expr, &s));
          out += v.str();
          break;
        }
        case StmtKind::kFilterBlock: {
          std::string text;
          STRATA_RETURN_IF_ERROR(exec(s.body, text).status());
          STRATA_ASSIGN_OR_RETURN(Value v, apply_chain(*s.expr, Value(std::move(text))));
          out += v.str();
          break;
        }
        case StmtKind::kBreak:
          return Flow::kBreak;
        case StmtKind::kContinue:
          return Flow::kContinue;
        case StmtKind::kBlock: {  // a caller()-like body: its {% set %} stays inside
          ScopeGuard g(*this, scope_);
          STRATA_ASSIGN_OR_RETURN(Flow f, exec(s.body, out));
          if (f != Flow::kNormal) return f;
          break;
        }
      }
    }
    return Flow::kNormal;
  }

  Status exec_for(const Stmt& s, std::string& out) {
    STRATA_ASSIGN_OR_RETURN(Value seq, eval(*s.expr));
    auto all = iterate(seq);
    if (!all.is_ok()) return at(s.line, all.status());
    List items;
    for (const Value& item : *all) {
      if (s.cond) {  // {% for x in xs if cond %}: the condition sees x, not loop
        ScopeGuard g(*this, scope_);
        STRATA_RETURN_IF_ERROR(bind(s.targets, item, s.line));
        STRATA_ASSIGN_OR_RETURN(Value keep, eval(*s.cond));
        if (!keep.truthy()) continue;
      }
      items.push_back(item);
    }
    if (items.empty()) return exec(s.else_body, out).status();
    const auto n = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < n; ++i) {
      ScopeGuard g(*this, scope_);
      STRATA_RETURN_IF_ERROR(bind(s.targets, items[static_cast<size_t>(i)], s.line));
      Dict loop;
      loop.items = {
          {"index", Value(i + 1)},
          {"index0", Value(i)},
          {"revindex", Value(n - i)},
          {"revindex0", Value(n - i - 1)},
          {"first", Value(i == 0)},
          {"last", Value(i == n - 1)},
          {"length", Value(n)},
          {"depth", Value(1)},
          {"depth0", Value(0)},
          {"previtem", i > 0 ? items[static_cast<size_t>(i - 1)]
                             : Value::undefined("there is no previous item")},
          {"nextitem", i + 1 < n ? items[static_cast<size_t>(i + 1)]
                                 : Value::undefined("there is no next item")},
          {"cycle",
           Value(Callable{"cycle", [i](CallArgs& a) -> Result<Value> {
                            if (a.positional.empty())
                              return invalid_argument("no items for cycling given");
                            return a.positional[static_cast<size_t>(i) % a.positional.size()];
                          }})}};
      scope_->vars["loop"] = Value(std::move(loop));
      STRATA_ASSIGN_OR_RETURN(Flow f, exec(s.body, out));
      if (f == Flow::kBreak) break;
    }
    return Status::ok();
  }

  Status exec_set(const Stmt& s) {
    STRATA_ASSIGN_OR_RETURN(Value v, eval(*s.expr));
    if (s.attr.empty()) return bind(s.targets, v, s.line);
    Value ns = lookup(s.targets[0]);
    if (!ns.is_namespace()) return fail(s.line, "cannot assign attribute on non-namespace object");
    ns.mutable_dict().set(s.attr, std::move(v));
    return Status::ok();
  }

  // A macro, or the caller() of a {% call %} block: renders `s.body` with `s.params` bound, in a
  // scope under the one it was defined in.
  Value make_macro(const Stmt& s) {
    std::weak_ptr<Scope> defined_in = scope_;
    const std::string name = s.kind == StmtKind::kMacro ? s.name : "caller";
    return Value(Callable{
        name, [this, &s, defined_in, name](CallArgs& a) -> Result<Value> {
          if (depth_ >= kMaxCallDepth)
            return fail(s.line, "macro calls nested too deeply (recursion?)");
          auto parent = defined_in.lock();
          ScopeGuard g(*this, parent ? parent : root_);
          if (a.positional.size() > s.params.size())
            return fail(s.line, "macro '" + name + "' takes not more than " +
                                    std::to_string(s.params.size()) + " argument(s)");
          for (const auto& [k, v] : a.named) {
            const std::string& key = k;  // clang does not capture structured bindings
            const bool known =
                key == "caller" || std::any_of(s.params.begin(), s.params.end(),
                                               [&](const auto& p) { return p.first == key; });
            if (!known)
              return fail(s.line, "macro '" + name + "' takes no keyword argument '" + k + "'");
            if (k == "caller") scope_->vars["caller"] = v;
          }
          for (size_t i = 0; i < s.params.size(); ++i) {
            const auto& [pname, pdefault] = s.params[i];
            if (const Value* v = find_arg(a, i, pname)) {
              scope_->vars[pname] = *v;
            } else if (pdefault) {
              STRATA_ASSIGN_OR_RETURN(scope_->vars[pname], eval(*pdefault));
            } else {
              scope_->vars[pname] = Value::undefined("parameter '" + pname + "' was not provided");
            }
          }
          ++depth_;
          std::string text;
          auto r = exec(s.body, text);
          --depth_;
          if (!r.is_ok()) return r.status();
          return Value(std::move(text));
        }});
  }

  // Applies the filters of a chain whose innermost operand is absent to `input`.
  Result<Value> apply_chain(const Expr& e, Value input) {
    if (e.kind != ExprKind::kFilter) return eval(e);
    Value v = e.args[0] ? Value() : std::move(input);
    if (e.args[0]) {
      STRATA_ASSIGN_OR_RETURN(v, apply_chain(*e.args[0], std::move(input)));
    }
    STRATA_ASSIGN_OR_RETURN(CallArgs args, eval_args(e, 1));
    auto r = apply_filter(e.name, v, args);
    if (!r.is_ok()) return at(e.line, r.status());
    return r;
  }

  Result<CallArgs> eval_args(const Expr& e, size_t first) {
    CallArgs a;
    for (size_t i = first; i < e.args.size(); ++i) {
      STRATA_ASSIGN_OR_RETURN(Value v, eval(*e.args[i]));
      a.positional.push_back(std::move(v));
    }
    for (const auto& [k, x] : e.kwargs) {
      STRATA_ASSIGN_OR_RETURN(Value v, eval(*x));
      a.named.emplace_back(k, std::move(v));
    }
    return a;
  }

  // A call; `call_block` passes its body as caller().
  Result<Value> eval_call(const Expr& e, const Stmt* call_block) {
    STRATA_ASSIGN_OR_RETURN(Value fn, eval(*e.args[0]));
    if (fn.is_undefined()) return fail(e.line, fn.undefined_hint());
    if (!fn.is_callable())
      return fail(e.line, std::string("'") + fn.type_name() + "' object is not callable");
    STRATA_ASSIGN_OR_RETURN(CallArgs args, eval_args(e, 1));
    if (call_block) args.named.emplace_back("caller", make_macro(*call_block));
    auto r = fn.as_callable().fn(args);
    if (!r.is_ok()) return at(e.line, r.status());
    return r;
  }

  Result<Value> eval(const Expr& e) {
    switch (e.kind) {
      case ExprKind::kLiteral:
        return e.value;
      case ExprKind::kName:
        return lookup(e.name);
      case ExprKind::kList:
      case ExprKind::kTuple: {
        List items;
        for (const auto& x : e.args) {
          STRATA_ASSIGN_OR_RETURN(Value v, eval(*x));
          items.push_back(std::move(v));
        }
        return Value(std::move(items));
      }
      case ExprKind::kDict: {
        Dict d;
        for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
          STRATA_ASSIGN_OR_RETURN(Value k, eval(*e.args[i]));
          if (!k.is_string())
            return fail(e.line,
                        "dict keys must be strings here, not " + std::string(k.type_name()));
          STRATA_ASSIGN_OR_RETURN(Value v, eval(*e.args[i + 1]));
          d.set(k.as_string(), std::move(v));
        }
        return Value(std::move(d));
      }
      case ExprKind::kCall:
        return eval_call(e, nullptr);
      case ExprKind::kFilter:
        return apply_chain(e, Value());
      case ExprKind::kCond: {
        STRATA_ASSIGN_OR_RETURN(Value c, eval(*e.args[1]));
        if (c.truthy()) return eval(*e.args[0]);
        return e.args[2] ? eval(*e.args[2])
                         : Value::undefined("the condition was false and there is no else");
      }
      case ExprKind::kAnd:
      case ExprKind::kOr: {
        STRATA_ASSIGN_OR_RETURN(Value a, eval(*e.args[0]));
        if (a.truthy() == (e.kind == ExprKind::kOr)) return a;
        return eval(*e.args[1]);
      }
      case ExprKind::kNot: {
        STRATA_ASSIGN_OR_RETURN(Value a, eval(*e.args[0]));
        return Value(!a.truthy());
      }
      case ExprKind::kCompare:
        return eval_compare(e);
      default:
        return eval_operator(e);
    }
  }

  Result<Value> eval_operator(const Expr& e) {
    std::vector<Value> v;
    for (const auto& x : e.args) {
      if (!x) {
        v.emplace_back(nullptr);
        continue;
      }
      STRATA_ASSIGN_OR_RETURN(Value r, eval(*x));
      v.push_back(std::move(r));
    }
    Result<Value> r = Value();
    switch (e.kind) {
      case ExprKind::kAttr:
        r = get_attr(v[0], e.name);
        break;
      case ExprKind::kItem:
        r = get_item(v[0], v[1]);
        break;
      case ExprKind::kSlice:
        r = get_slice(v[0], v[1], v[2], v[3]);
        break;
      case ExprKind::kBinary:
        r = binary_op(e.name, v[0], v[1]);
        break;
      case ExprKind::kNeg:
      case ExprKind::kPos:
        if (!v[0].is_number())
          return fail(e.line, std::string("bad operand type for unary ") +
                                  (e.kind == ExprKind::kNeg ? "-" : "+") + ": '" +
                                  v[0].type_name() + "'");
        if (e.kind == ExprKind::kPos) return v[0];
        return v[0].is_float() ? Value(-v[0].as_float())
                               : Value(-(v[0].is_bool() ? int64_t{v[0].as_bool()} : v[0].as_int()));
      case ExprKind::kTest: {
        CallArgs args;
        for (size_t i = 1; i < v.size(); ++i) args.positional.push_back(v[i]);
        for (const auto& [k, x] : e.kwargs) {
          STRATA_ASSIGN_OR_RETURN(Value kv, eval(*x));
          args.named.emplace_back(k, std::move(kv));
        }
        auto t = apply_test(e.name, v[0], args);
        if (!t.is_ok()) return at(e.line, t.status());
        return Value(*t != e.negated);
      }
      default:
        return fail(e.line, "internal error: unknown expression");
    }
    if (!r.is_ok()) return at(e.line, r.status());
    return r;
  }

  Result<Value> eval_compare(const Expr& e) {
    STRATA_ASSIGN_OR_RETURN(Value left, eval(*e.args[0]));
    for (size_t i = 0; i < e.ops.size(); ++i) {
      STRATA_ASSIGN_OR_RETURN(Value right, eval(*e.args[i + 1]));
      const std::string& op = e.ops[i];
      bool ok;
      if (op == "==" || op == "!=") {
        ok = equals(left, right) == (op == "==");
      } else if (op == "in" || op == "notin") {
        auto c = contains(right, left);
        if (!c.is_ok()) return at(e.line, c.status());
        ok = *c == (op == "in");
      } else {
        auto c = compare(left, right);
        if (!c.is_ok()) return at(e.line, c.status());
        ok = op == "<" ? *c < 0 : op == "<=" ? *c <= 0 : op == ">" ? *c > 0 : *c >= 0;
      }
      if (!ok) return Value(false);
      left = std::move(right);
    }
    return Value(true);
  }

  const std::string& name_;
  const RenderOptions& options_;
  std::shared_ptr<Scope> root_, scope_;
  bool located_ = false;
  int depth_ = 0;
};

bool expr_reads_key(const Expr& e, std::string_view key) {
  if (e.kind == ExprKind::kFilter) return e.args[0] && expr_reads_key(*e.args[0], key);
  if (e.kind == ExprKind::kAttr) return e.name == key;
  if (e.kind == ExprKind::kItem)
    return e.args[1]->kind == ExprKind::kLiteral && e.args[1]->value.is_string() &&
           e.args[1]->value.as_string() == key;
  return false;
}

bool body_loops_over(const Body& body, std::string_view key) {
  for (const auto& s : body) {
    if (s->kind == StmtKind::kFor && expr_reads_key(*s->expr, key)) return true;
    for (const auto& [c, b] : s->branches)
      if (body_loops_over(b, key)) return true;
    if (body_loops_over(s->body, key) || body_loops_over(s->else_body, key)) return true;
  }
  return false;
}

}  // namespace

Result<Template> Template::parse(std::string_view source, std::string name) {
  STRATA_ASSIGN_OR_RETURN(Body body, parse_template(source, name));
  Template t;
  t.name_ = std::move(name);
  t.body_ = std::make_shared<const Body>(std::move(body));
  return t;
}

Result<std::string> Template::render(const Dict& context, const RenderOptions& options) const {
  return Renderer(name_, options).render(*body_, context);
}

bool Template::loops_over(std::string_view key) const { return body_loops_over(*body_, key); }

}  // namespace strata::text::jinja
