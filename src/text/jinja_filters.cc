// The filters of the chat-template Jinja interpreter, as jinja2 defines them, with tojson as
// transformers overrides it (json.dumps with ensure_ascii=False, no HTML escaping, keys in
// order).
#include <algorithm>
#include <cmath>
#include <map>

#include "text/jinja_builtins.h"
#include "text/utf8.h"

namespace strata::text::jinja {

namespace {

using FilterFn = Result<Value> (*)(const Value&, CallArgs&);

Status filter_error(const std::string& msg) { return invalid_argument(msg); }

Value arg_or(const CallArgs& a, size_t pos, std::string_view name, Value fallback) {
  const Value* v = find_arg(a, pos, name);
  return v ? *v : std::move(fallback);
}

// jinja2's attribute getter: "a.b.0" looks up a, then b, then item 0.
Result<Value> attribute_of(const Value& v, const std::string& path) {
  Value cur = v;
  size_t b = 0;
  while (b <= path.size()) {
    size_t e = path.find('.', b);
    if (e == std::string::npos) e = path.size();
    const std::string part = path.substr(b, e - b);
    const bool digits = !part.empty() && std::all_of(part.begin(), part.end(),
                                                     [](char c) { return c >= '0' && c <= '9'; });
    STRATA_ASSIGN_OR_RETURN(
        cur, get_item(cur, digits ? Value(static_cast<int64_t>(std::stoll(part))) : Value(part)));
    b = e + 1;
  }
  return cur;
}

// The key sort and unique compare by: an attribute, lower-cased unless case sensitive.
Result<Value> sort_key(const Value& v, const Value& attribute, bool case_sensitive) {
  Value k = v;
  if (!attribute.is_none() && !attribute.is_undefined()) {
    STRATA_ASSIGN_OR_RETURN(k, attribute_of(v, attribute.str()));
  }
  if (!case_sensitive && k.is_string())
    return Value(change_case(k.as_string(), CaseChange::kLower));
  return k;
}

Result<Value> f_length(const Value& v, CallArgs&) {
  if (v.is_string()) return Value(static_cast<int64_t>(code_points(v.as_string()).size()));
  if (v.is_list()) return Value(static_cast<int64_t>(v.as_list().size()));
  if (v.is_dict()) return Value(static_cast<int64_t>(v.as_dict().items.size()));
  if (v.is_undefined()) return Value(int64_t{0});
  return filter_error(std::string("object of type '") + v.type_name() + "' has no len()");
}

Result<Value> call_method(const Value& v, std::string_view method, CallArgs& a) {
  STRATA_ASSIGN_OR_RETURN(Value m, get_attr(Value(v.str()), method));
  return m.as_callable().fn(a);
}

Result<Value> f_trim(const Value& v, CallArgs& a) {
  CallArgs s;
  if (const Value* chars = find_arg(a, 0, "chars")) s.positional.push_back(*chars);
  return call_method(v, "strip", s);
}
Result<Value> f_upper(const Value& v, CallArgs& a) { return call_method(v, "upper", a); }
Result<Value> f_lower(const Value& v, CallArgs& a) { return call_method(v, "lower", a); }
Result<Value> f_capitalize(const Value& v, CallArgs& a) { return call_method(v, "capitalize", a); }
Result<Value> f_string(const Value& v, CallArgs&) { return Value(v.str()); }
Result<Value> f_safe(const Value& v, CallArgs&) { return v; }

Result<Value> f_title(const Value& v, CallArgs&) {
  return Value(change_case(v.str(), CaseChange::kJinjaTitle));
}

Result<Value> f_replace(const Value& v, CallArgs& a) {
  CallArgs r;
  r.positional = {arg_or(a, 0, "old", Value("")), arg_or(a, 1, "new", Value(""))};
  const Value count = arg_or(a, 2, "count", Value(nullptr));
  if (!count.is_none()) r.positional.push_back(count);
  return call_method(v, "replace", r);
}

// transformers' tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False).
Result<Value> f_tojson(const Value& v, CallArgs& a) {
  JsonStyle st;
  st.ensure_ascii = arg_or(a, 0, "ensure_ascii", Value(false)).truthy();
  const Value indent = arg_or(a, 1, "indent", Value(nullptr));
  if (indent.is_int()) {
    st.indent = static_cast<int>(std::max<int64_t>(0, indent.as_int()));
    st.item_separator = ",";
  } else if (!indent.is_none()) {
    return filter_error("tojson: indent must be an integer");
  }
  const Value seps = arg_or(a, 2, "separators", Value(nullptr));
  if (seps.is_list() && seps.as_list().size() == 2) {
    st.item_separator = seps.as_list()[0].str();
    st.key_separator = seps.as_list()[1].str();
  } else if (!seps.is_none()) {
    return filter_error("tojson: separators must be a pair of strings");
  }
  st.sort_keys = arg_or(a, 3, "sort_keys", Value(false)).truthy();
  STRATA_ASSIGN_OR_RETURN(std::string s, to_json(v, st));
  return Value(std::move(s));
}

Result<Value> f_join(const Value& v, CallArgs& a) {
  const std::string sep = arg_or(a, 0, "d", Value("")).str();
  const Value attribute = arg_or(a, 1, "attribute", Value(nullptr));
  STRATA_ASSIGN_OR_RETURN(List items, iterate(v));
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    Value item = items[i];
    if (!attribute.is_none()) {
      STRATA_ASSIGN_OR_RETURN(item, attribute_of(item, attribute.str()));
    }
    if (i) out += sep;
    out += item.str();
  }
  return Value(std::move(out));
}

Result<Value> f_default(const Value& v, CallArgs& a) {
  const bool boolean = arg_or(a, 1, "boolean", Value(false)).truthy();
  if (v.is_undefined() || (boolean && !v.truthy())) return arg_or(a, 0, "default_value", Value(""));
  return v;
}

Result<Value> f_first(const Value& v, CallArgs&) {
  STRATA_ASSIGN_OR_RETURN(List items, iterate(v));
  if (items.empty()) return Value::undefined("No first item, sequence was empty.");
  return items.front();
}

Result<Value> f_last(const Value& v, CallArgs&) {
  STRATA_ASSIGN_OR_RETURN(List items, iterate(v));
  if (items.empty()) return Value::undefined("No last item, sequence was empty.");
  return items.back();
}

Result<Value> f_list(const Value& v, CallArgs&) {
  STRATA_ASSIGN_OR_RETURN(List items, iterate(v));
  return Value(std::move(items));
}

Result<Value> f_items(const Value& v, CallArgs&) {
  if (v.is_undefined()) return Value(List{});
  if (!v.is_dict()) return filter_error("Can only get item pairs from a mapping.");
  List out;
  for (const auto& [k, x] : v.as_dict().items) out.emplace_back(List{Value(k), x});
  return Value(std::move(out));
}

Result<Value> f_map(const Value& v, CallArgs& a) {
  STRATA_ASSIGN_OR_RETURN(List items, iterate(v));
  const Value* attribute = find_arg(a, SIZE_MAX, "attribute");
  List out;
  for (const Value& item : items) {
    if (attribute) {
      STRATA_ASSIGN_OR_RETURN(Value x, attribute_of(item, attribute->str()));
      if (x.is_undefined()) {
        if (const Value* def = find_arg(a, SIZE_MAX, "default")) x = *def;
      }
      out.push_back(std::move(x));
      continue;
    }
    if (a.positional.empty()) return filter_error("map needs a filter name or attribute=");
    CallArgs rest;
    rest.positional.assign(a.positional.begin() + 1, a.positional.end());
    rest.named = a.named;
    STRATA_ASSIGN_OR_RETURN(Value x, apply_filter(a.positional[0].str(), item, rest));
    out.push_back(std::move(x));
  }
  return Value(std::move(out));
}

// select/reject (a test on the item) and selectattr/rejectattr (on an attribute of it).
Result<Value> select_impl(const Value& v, CallArgs& a, bool on_attr, bool keep_if) {
  STRATA_ASSIGN_OR_RETURN(List items, iterate(v));
  size_t next = 0;
  std::string attr;
  if (on_attr) {
    if (a.positional.empty()) return filter_error("selectattr/rejectattr need an attribute name");
    attr = a.positional[next++].str();
  }
  std::string test;
  if (next < a.positional.size()) test = a.positional[next++].str();
  if (!test.empty() && !is_test(test)) return filter_error("no test named '" + test + "'");
  CallArgs targs;
  targs.positional.assign(a.positional.begin() + static_cast<std::ptrdiff_t>(next),
                          a.positional.end());
  List out;
  for (const Value& item : items) {
    Value x = item;
    if (on_attr) {
      STRATA_ASSIGN_OR_RETURN(x, attribute_of(item, attr));
    }
    bool ok = x.truthy();
    if (!test.empty()) {
      STRATA_ASSIGN_OR_RETURN(ok, apply_test(test, x, targs));
    }
    if (ok == keep_if) out.push_back(item);
  }
  return Value(std::move(out));
}
Result<Value> f_select(const Value& v, CallArgs& a) { return select_impl(v, a, false, true); }
Result<Value> f_reject(const Value& v, CallArgs& a) { return select_impl(v, a, false, false); }
Result<Value> f_selectattr(const Value& v, CallArgs& a) { return select_impl(v, a, true, true); }
Result<Value> f_rejectattr(const Value& v, CallArgs& a) { return select_impl(v, a, true, false); }

Result<Value> f_int(const Value& v, CallArgs& a) {
  const Value def = arg_or(a, 0, "default", Value(int64_t{0}));
  if (v.is_int()) return v;
  if (v.is_bool()) return Value(int64_t{v.as_bool()});
  if (v.is_float())
    return std::isfinite(v.as_float()) ? Value(static_cast<int64_t>(v.as_float())) : def;
  if (!v.is_string()) return def;
  const std::string s(python_strip(v.as_string()));
  char* end = nullptr;
  const long long i =
      std::strtoll(s.c_str(), &end, static_cast<int>(arg_or(a, 1, "base", Value(10)).as_int()));
  if (!s.empty() && end && *end == '\0') return Value(static_cast<int64_t>(i));
  const double d = std::strtod(s.c_str(), &end);
  if (!s.empty() && end && *end == '\0' && std::isfinite(d)) return Value(static_cast<int64_t>(d));
  return def;
}

Result<Value> f_float(const Value& v, CallArgs& a) {
  const Value def = arg_or(a, 0, "default", Value(0.0));
  if (v.is_number()) return Value(v.as_double());
  if (!v.is_string()) return def;
  const std::string s(python_strip(v.as_string()));
  char* end = nullptr;
  const double d = std::strtod(s.c_str(), &end);
  return !s.empty() && end && *end == '\0' ? Value(d) : def;
}

Result<Value> f_abs(const Value& v, CallArgs&) {
  if (v.is_int()) return Value(v.as_int() < 0 ? -v.as_int() : v.as_int());
  if (v.is_bool()) return Value(int64_t{v.as_bool()});
  if (v.is_float()) return Value(std::fabs(v.as_float()));
  return filter_error(std::string("bad operand type for abs(): '") + v.type_name() + "'");
}

Result<Value> f_round(const Value& v, CallArgs& a) {
  if (!v.is_number()) return filter_error("round needs a number");
  const int64_t precision = arg_or(a, 0, "precision", Value(0)).as_int();
  const std::string method = arg_or(a, 1, "method", Value("common")).str();
  const double scale = std::pow(10.0, static_cast<double>(precision));
  const double x = v.as_double() * scale;
  double r;
  if (method == "common")
    r = std::nearbyint(x);  // Python's round: halves to even
  else if (method == "ceil")
    r = std::ceil(x);
  else if (method == "floor")
    r = std::floor(x);
  else
    return filter_error("round: method must be 'common', 'ceil' or 'floor'");
  if (method == "common" && v.is_int() && precision >= 0) return v;
  return Value(r / scale);
}

Result<Value> f_unique(const Value& v, CallArgs& a) {
  const bool cs = arg_or(a, 0, "case_sensitive", Value(false)).truthy();
  const Value attribute = arg_or(a, 1, "attribute", Value(nullptr));
  STRATA_ASSIGN_OR_RETURN(List items, iterate(v));
  List out, seen;
  for (const Value& item : items) {
    STRATA_ASSIGN_OR_RETURN(Value k, sort_key(item, attribute, cs));
    if (std::any_of(seen.begin(), seen.end(), [&](const Value& s) { return equals(s, k); }))
      continue;
    seen.push_back(std::move(k));
    out.push_back(item);
  }
  return Value(std::move(out));
}

Result<Value> f_reverse(const Value& v, CallArgs&) {
  if (v.is_string()) {
    auto cps = code_points(v.as_string());
    std::string out;
    for (size_t i = cps.size(); i-- > 0;) out += cps[i];
    return Value(std::move(out));
  }
  STRATA_ASSIGN_OR_RETURN(List items, iterate(v));
  std::reverse(items.begin(), items.end());
  return Value(std::move(items));
}

Result<Value> f_sort(const Value& v, CallArgs& a) {
  const bool reverse = arg_or(a, 0, "reverse", Value(false)).truthy();
  const bool cs = arg_or(a, 1, "case_sensitive", Value(false)).truthy();
  const Value attribute = arg_or(a, 2, "attribute", Value(nullptr));
  STRATA_ASSIGN_OR_RETURN(List items, iterate(v));
  std::vector<std::pair<Value, Value>> keyed;
  for (const Value& item : items) {
    STRATA_ASSIGN_OR_RETURN(Value k, sort_key(item, attribute, cs));
    keyed.emplace_back(std::move(k), item);
  }
  Status err;
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
    auto c = compare(x.first, y.first);
    if (!c.is_ok()) {
      err = c.status();
      return false;
    }
    return reverse ? *c > 0 : *c < 0;
  });
  STRATA_RETURN_IF_ERROR(err);
  List out;
  for (auto& [k, item] : keyed) out.push_back(std::move(item));
  return Value(std::move(out));
}

// indent(width=4, first=False, blank=False): indents every line but the first (and blank ones).
Result<Value> f_indent(const Value& v, CallArgs& a) {
  const Value w = arg_or(a, 0, "width", Value(4));
  const std::string pad =
      w.is_string() ? w.as_string()
                    : std::string(static_cast<size_t>(std::max<int64_t>(0, w.as_int())), ' ');
  const bool first = arg_or(a, 1, "first", Value(false)).truthy();
  const bool blank = arg_or(a, 2, "blank", Value(false)).truthy();
  const std::string s = v.str();
  std::string out;
  size_t b = 0;
  for (bool is_first = true; b <= s.size(); is_first = false) {
    size_t e = s.find('\n', b);
    const bool last = e == std::string::npos;
    if (last) e = s.size();
    const std::string line = s.substr(b, e - b);
    if ((!is_first || first) && (blank || !python_strip(line).empty())) out += pad;
    out += line;
    if (last) break;
    out += '\n';
    b = e + 1;
  }
  return Value(std::move(out));
}

const std::map<std::string_view, FilterFn>& filters() {
  static const std::map<std::string_view, FilterFn> kFilters = {
      {"abs", f_abs},         {"capitalize", f_capitalize},
      {"count", f_length},    {"d", f_default},
      {"default", f_default}, {"first", f_first},
      {"float", f_float},     {"indent", f_indent},
      {"int", f_int},         {"items", f_items},
      {"join", f_join},       {"last", f_last},
      {"length", f_length},   {"list", f_list},
      {"lower", f_lower},     {"map", f_map},
      {"reject", f_reject},   {"rejectattr", f_rejectattr},
      {"replace", f_replace}, {"reverse", f_reverse},
      {"round", f_round},     {"safe", f_safe},
      {"select", f_select},   {"selectattr", f_selectattr},
      {"sort", f_sort},       {"string", f_string},
      {"title", f_title},     {"tojson", f_tojson},
      {"trim", f_trim},       {"unique", f_unique},
      {"upper", f_upper},
  };
  return kFilters;
}

}  // namespace

bool is_filter(std::string_view name) { return filters().count(name) > 0; }

Result<Value> apply_filter(std::string_view name, const Value& value, CallArgs& args) {
  auto it = filters().find(name);
  if (it == filters().end()) return filter_error("no filter named '" + std::string(name) + "'");
  return it->second(value, args);
}

}  // namespace strata::text::jinja
