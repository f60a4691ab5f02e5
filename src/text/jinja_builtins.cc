// Operators, attribute/item access, tests, methods and globals; the filters are in
// jinja_filters.cc.
#include "text/jinja_builtins.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "text/utf8.h"

#ifdef STRATA_HAVE_ICU
#include <unicode/uchar.h>
#endif

namespace strata::text::jinja {

namespace {

Status type_error(const std::string& msg) { return invalid_argument(msg); }

bool is_ascii_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
[[maybe_unused]] char ascii_upper(char c) {
  return c >= 'a' && c <= 'z' ? static_cast<char>(c - 32) : c;
}
[[maybe_unused]] char ascii_lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c;
}
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

int64_t to_index(const Value& v) { return v.is_bool() ? (v.as_bool() ? 1 : 0) : v.as_int(); }
bool is_index(const Value& v) { return v.is_int() || v.is_bool(); }

// Python's str.strip family: `chars` null (or none) strips whitespace.
std::string strip_chars(std::string_view s, const Value* chars, bool left, bool right) {
  const bool ws = !chars || chars->is_none() || chars->is_undefined();
  const std::string set = ws ? "" : chars->str();
  const auto strip = [&](std::string_view cp) {
    size_t i = 0;
    return ws ? is_python_space(next_code_point(cp, i)) : set.find(cp) != std::string::npos;
  };
  const auto cps = code_points(s);
  size_t b = 0, e = cps.size();
  while (left && b < e && strip(cps[b])) ++b;
  while (right && e > b && strip(cps[e - 1])) --e;
  std::string out;
  for (size_t i = b; i < e; ++i) out += cps[i];
  return out;
}

// Python's str.split / str.rsplit.
List split(const std::string& s, const Value* sep_arg, int64_t maxsplit, bool from_right) {
  std::vector<std::string> parts;
  if (!sep_arg || sep_arg->is_none()) {  // runs of whitespace, ends ignored
    std::vector<std::pair<size_t, size_t>> words;
    for (size_t i = 0; i < s.size();) {
      while (i < s.size() && is_ascii_space(s[i])) ++i;
      const size_t b = i;
      while (i < s.size() && !is_ascii_space(s[i])) ++i;
      if (i > b) words.emplace_back(b, i);
    }
    if (maxsplit < 0 || static_cast<size_t>(maxsplit) + 1 >= words.size()) {
      for (auto [b, e] : words) parts.push_back(s.substr(b, e - b));
    } else if (!from_right) {
      for (int64_t k = 0; k < maxsplit; ++k)
        parts.push_back(s.substr(words[k].first, words[k].second - words[k].first));
      parts.push_back(std::string(python_strip(s.substr(words[maxsplit].first))));
    } else {
      const size_t first = words.size() - static_cast<size_t>(maxsplit);
      parts.push_back(std::string(python_strip(s.substr(0, words[first - 1].second))));
      for (size_t k = first; k < words.size(); ++k)
        parts.push_back(s.substr(words[k].first, words[k].second - words[k].first));
    }
  } else {
    const std::string sep = sep_arg->str();
    std::vector<size_t> cuts;  // positions of separators used
    if (!from_right) {
      for (size_t p = s.find(sep);
           p != std::string::npos && (maxsplit < 0 || cuts.size() < static_cast<size_t>(maxsplit));
           p = s.find(sep, p + sep.size()))
        cuts.push_back(p);
    } else {
      size_t end = s.size();
      while ((maxsplit < 0 || cuts.size() < static_cast<size_t>(maxsplit)) && end >= sep.size()) {
        const size_t p = s.rfind(sep, end - sep.size());
        if (p == std::string::npos) break;
        cuts.insert(cuts.begin(), p);
        if (p == 0) break;
        end = p;
      }
    }
    size_t b = 0;
    for (size_t c : cuts) {
      parts.push_back(s.substr(b, c - b));
      b = c + sep.size();
    }
    parts.push_back(s.substr(b));
  }
  List out;
  for (auto& p : parts) out.emplace_back(std::move(p));
  return out;
}

std::string replace_all(const std::string& s, const std::string& old, const std::string& rep,
                        int64_t count) {
  std::string out;
  if (old.empty()) {  // Python inserts `rep` around every character
    const auto cps = code_points(s);
    for (size_t i = 0; i <= cps.size(); ++i) {
      if (count < 0 || static_cast<int64_t>(i) < count) out += rep;
      if (i < cps.size()) out += cps[i];
    }
    return out;
  }
  size_t b = 0;
  for (int64_t n = 0; count < 0 || n < count; ++n) {
    const size_t p = s.find(old, b);
    if (p == std::string::npos) break;
    out.append(s, b, p - b);
    out += rep;
    b = p + old.size();
  }
  return out + s.substr(b);
}

// str.format with {}, {0} and {name} fields (format specs are not supported).
Result<Value> python_format(const std::string& f, const CallArgs& a) {
  std::string out;
  size_t auto_index = 0;
  for (size_t i = 0; i < f.size(); ++i) {
    if (f[i] == '}' && i + 1 < f.size() && f[i + 1] == '}') {
      out += '}';
      ++i;
    } else if (f[i] != '{') {
      out += f[i];
    } else if (i + 1 < f.size() && f[i + 1] == '{') {
      out += '{';
      ++i;
    } else {
      const size_t e = f.find('}', i);
      if (e == std::string::npos) return type_error("Single '{' encountered in format string");
      const std::string field = f.substr(i + 1, e - i - 1);
      if (field.find_first_of(":!") != std::string::npos)
        return unsupported("format specs in str.format");
      const Value* v = nullptr;
      if (field.empty())
        v = find_arg(a, auto_index++, "\x01");
      else if (std::all_of(field.begin(), field.end(), [](char c) { return c >= '0' && c <= '9'; }))
        v = find_arg(a, std::stoul(field), "\x01");
      else
        v = find_arg(a, SIZE_MAX, field);
      if (!v) return type_error("str.format: no argument for {" + field + "}");
      out += v->str();
      i = e;
    }
  }
  return Value(std::move(out));
}

size_t cp_index(const std::string& s, size_t byte_pos) {
  size_t n = 0;
  for (size_t i = 0; i < byte_pos; ++i)
    if ((static_cast<uint8_t>(s[i]) & 0xC0) != 0x80) ++n;
  return n;
}

Result<Value> string_method(const std::string& s, std::string_view m, CallArgs& a) {
  const Value* a0 = find_arg(a, 0, "");
  const Value* a1 = find_arg(a, 1, "");
  const auto int_arg = [&](const Value* v, int64_t fallback) {
    return v && is_index(*v) ? to_index(*v) : fallback;
  };
  if (m == "strip" || m == "lstrip" || m == "rstrip")
    return Value(strip_chars(s, a0, m != "rstrip", m != "lstrip"));
  if (m == "split" || m == "rsplit") {
    const Value* sep = find_arg(a, 0, "sep");
    if (sep && sep->is_string() && sep->as_string().empty()) return type_error("empty separator");
    return Value(split(s, sep, int_arg(find_arg(a, 1, "maxsplit"), -1), m == "rsplit"));
  }
  if (m == "startswith" || m == "endswith") {
    if (!a0) return type_error(std::string(m) + "() takes at least 1 argument");
    const auto test = [&](const Value& p) {
      const std::string& x = p.str();
      return x.size() <= s.size() &&
             (m == "startswith" ? s.compare(0, x.size(), x) == 0
                                : s.compare(s.size() - x.size(), x.size(), x) == 0);
    };
    if (a0->is_list()) return Value(std::any_of(a0->as_list().begin(), a0->as_list().end(), test));
    return Value(test(*a0));
  }
  if (m == "replace") {
    if (!a0 || !a1) return type_error("replace() takes at least 2 arguments");
    return Value(replace_all(s, a0->str(), a1->str(), int_arg(find_arg(a, 2, "count"), -1)));
  }
  if (m == "upper") return Value(change_case(s, CaseChange::kUpper));
  if (m == "lower") return Value(change_case(s, CaseChange::kLower));
  if (m == "title") return Value(change_case(s, CaseChange::kPythonTitle));
  if (m == "capitalize") return Value(change_case(s, CaseChange::kCapitalize));
  if (m == "format") return python_format(s, a);
  if (m == "count" || m == "find" || m == "rfind" || m == "index") {
    if (!a0) return type_error(std::string(m) + "() takes at least 1 argument");
    const std::string sub = a0->str();
    if (m == "count") {
      if (sub.empty()) return Value(static_cast<int64_t>(code_points(s).size() + 1));
      int64_t n = 0;
      for (size_t p = s.find(sub); p != std::string::npos; p = s.find(sub, p + sub.size())) ++n;
      return Value(n);
    }
    const size_t p = m == "rfind" ? s.rfind(sub) : s.find(sub);
    if (p == std::string::npos && m == "index") return type_error("substring not found");
    return Value(p == std::string::npos ? int64_t{-1} : static_cast<int64_t>(cp_index(s, p)));
  }
  if (m == "join") {
    if (!a0) return type_error("join() takes exactly one argument");
    STRATA_ASSIGN_OR_RETURN(List items, iterate(*a0));
    std::string out;
    for (size_t i = 0; i < items.size(); ++i) out += (i ? s : "") + items[i].str();
    return Value(std::move(out));
  }
  if (m == "splitlines") {
    List out;
    size_t b = 0;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] != '\n' && s[i] != '\r') continue;
      out.emplace_back(s.substr(b, i - b));
      if (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n') ++i;
      b = i + 1;
    }
    if (b < s.size()) out.emplace_back(s.substr(b));
    return Value(std::move(out));
  }
  const auto all = [&](auto pred) {
    return Value(!s.empty() && std::all_of(s.begin(), s.end(), pred));
  };
  if (m == "isdigit") return all([](char c) { return c >= '0' && c <= '9'; });
  if (m == "isalpha") return all([](char c) { return is_alpha(c); });
  if (m == "isalnum") return all([](char c) { return is_alpha(c) || (c >= '0' && c <= '9'); });
  if (m == "isspace") return all([](char c) { return is_ascii_space(c); });
  if (m == "isupper" || m == "islower") {
    const bool upper = m == "isupper";
    bool cased = false;
    for (char c : s) {
      if (!is_alpha(c)) continue;
      cased = true;
      if ((c >= 'A' && c <= 'Z') != upper) return Value(false);
    }
    return Value(cased);
  }
  return internal_error("unknown string method");
}

constexpr std::string_view kStringMethods[] = {
    "strip",   "lstrip",  "rstrip",  "split",  "rsplit",     "startswith", "endswith",
    "replace", "upper",   "lower",   "title",  "capitalize", "format",     "count",
    "find",    "rfind",   "index",   "join",   "splitlines", "isdigit",    "isalpha",
    "isalnum", "isspace", "isupper", "islower"};
constexpr std::string_view kUnsafeListMethods[] = {"append", "extend",  "insert", "pop",
                                                   "remove", "reverse", "sort",   "clear"};
constexpr std::string_view kUnsafeDictMethods[] = {"update", "pop", "popitem", "setdefault",
                                                   "clear"};

template <size_t N>
bool one_of(std::string_view s, const std::string_view (&names)[N]) {
  return std::find(std::begin(names), std::end(names), s) != std::end(names);
}

Value bound_method(const Value& self, std::string name,
                   std::function<Result<Value>(const Value&, CallArgs&)> fn) {
  return Value(Callable{name, [self, fn = std::move(fn)](CallArgs& a) { return fn(self, a); }});
}

Result<Value> dict_method(const Value& self, std::string_view m, CallArgs& a) {
  const Dict& d = self.as_dict();
  if (m == "get") {
    const Value* key = find_arg(a, 0, "key");
    const Value* def = find_arg(a, 1, "default");
    const Value* v = key && key->is_string() ? d.find(key->as_string()) : nullptr;
    return v ? *v : (def ? *def : Value(nullptr));
  }
  List out;
  for (const auto& [k, v] : d.items) {
    if (m == "keys")
      out.emplace_back(k);
    else if (m == "values")
      out.push_back(v);
    else
      out.emplace_back(List{Value(k), v});
  }
  return Value(std::move(out));
}

}  // namespace

namespace {

char32_t map_case(char32_t c, bool upper, bool title) {
#ifdef STRATA_HAVE_ICU
  return static_cast<char32_t>(title   ? u_totitle(static_cast<UChar32>(c))
                               : upper ? u_toupper(static_cast<UChar32>(c))
                                       : u_tolower(static_cast<UChar32>(c)));
#else
  (void)title;
  if (c < 0x80)
    return static_cast<char32_t>(upper ? ascii_upper(static_cast<char>(c))
                                       : ascii_lower(static_cast<char>(c)));
  return c;
#endif
}

bool is_cased(char32_t c) {
#ifdef STRATA_HAVE_ICU
  const auto u = static_cast<UChar32>(c);
  return u_isupper(u) || u_islower(u) || u_istitle(u);
#else
  return c < 0x80 && is_alpha(static_cast<char>(c));
#endif
}

}  // namespace

std::string change_case(std::string_view s, CaseChange how) {
  std::string out;
  bool word_start =
      true;  // kPythonTitle: after an uncased character; kJinjaTitle: after a separator
  bool first = true;
  for (size_t i = 0; i < s.size();) {
    const char32_t c = next_code_point(s, i);
    char32_t r = c;
    switch (how) {
      case CaseChange::kUpper:
        r = map_case(c, true, false);
        break;
      case CaseChange::kLower:
        r = map_case(c, false, false);
        break;
      case CaseChange::kCapitalize:
        r = map_case(c, first, first);
        break;
      case CaseChange::kPythonTitle:
        r = map_case(c, word_start, word_start);
        word_start = !is_cased(c);
        break;
      case CaseChange::kJinjaTitle: {
        const bool sep =
            is_python_space(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
        r = sep ? c : map_case(c, word_start, false);
        word_start = sep;
        break;
      }
    }
    first = false;
    append_utf8(out, r);
  }
  return out;
}

const Value* find_arg(const CallArgs& args, size_t pos, std::string_view name) {
  if (pos < args.positional.size()) return &args.positional[pos];
  for (const auto& [k, v] : args.named)
    if (k == name) return &v;
  return nullptr;
}

std::vector<std::string_view> code_points(std::string_view s) {
  std::vector<std::string_view> out;
  for (size_t i = 0; i < s.size();) {
    const size_t b = i;
    next_code_point(s, i);
    out.push_back(s.substr(b, i - b));
  }
  return out;
}

Result<Value> get_attr(const Value& obj, std::string_view name) {
  const std::string n(name);
  switch (obj.type()) {
    case Value::Type::kUndefined:
      return type_error(obj.undefined_hint());
    case Value::Type::kDict: {
      if (!obj.is_namespace()) {
        if (name == "items" || name == "keys" || name == "values" || name == "get")
          return bound_method(
              obj, n, [n](const Value& self, CallArgs& a) { return dict_method(self, n, a); });
        if (one_of(name, kUnsafeDictMethods))
          return type_error("access to attribute '" + n + "' of 'dict' object is unsafe");
      }
      if (const Value* v = obj.as_dict().find(name)) return *v;
      return Value::undefined(std::string(obj.is_namespace() ? "'Namespace" : "'dict") +
                              " object' has no attribute '" + n + "'");
    }
    case Value::Type::kString:
      if (one_of(name, kStringMethods))
        return bound_method(obj, n, [n](const Value& self, CallArgs& a) {
          return string_method(self.as_string(), n, a);
        });
      break;
    case Value::Type::kList:
      if (one_of(name, kUnsafeListMethods))
        return type_error("access to attribute '" + n + "' of 'list' object is unsafe");
      break;
    case Value::Type::kNone:
      return Value::undefined("'None' has no attribute '" + n + "'");
    default:
      break;
  }
  return Value::undefined(std::string("'") + obj.type_name() + " object' has no attribute '" + n +
                          "'");
}

Result<Value> get_item(const Value& obj, const Value& key) {
  if (obj.is_undefined()) return type_error(obj.undefined_hint());
  if (obj.is_dict() && key.is_string()) {
    if (const Value* v = obj.as_dict().find(key.as_string())) return *v;
    return get_attr(obj, key.as_string());
  }
  if ((obj.is_list() || obj.is_string()) && is_index(key)) {
    int64_t i = to_index(key);
    if (obj.is_list()) {
      const auto n = static_cast<int64_t>(obj.as_list().size());
      if (i < 0) i += n;
      if (i >= 0 && i < n) return obj.as_list()[static_cast<size_t>(i)];
    } else {
      const auto cps = code_points(obj.as_string());
      const auto n = static_cast<int64_t>(cps.size());
      if (i < 0) i += n;
      if (i >= 0 && i < n) return Value(cps[static_cast<size_t>(i)]);
    }
    return Value::undefined(std::string("'") + obj.type_name() + " object' has no element " +
                            key.str());
  }
  if (key.is_string()) return get_attr(obj, key.as_string());
  return Value::undefined(std::string("'") + obj.type_name() + " object' has no element " +
                          key.repr());
}

Result<Value> get_slice(const Value& obj, const Value& start_v, const Value& stop_v,
                        const Value& step_v) {
  const auto unset = [](const Value& v) { return v.is_none() || v.is_undefined(); };
  for (const Value* v : {&start_v, &stop_v, &step_v})
    if (!unset(*v) && !is_index(*v)) return type_error("slice indices must be integers or None");
  if (!obj.is_list() && !obj.is_string())
    return type_error(std::string("'") + obj.type_name() + "' object is not subscriptable");
  std::vector<std::string_view> cps;
  if (obj.is_string()) cps = code_points(obj.as_string());
  const auto n = static_cast<int64_t>(obj.is_list() ? obj.as_list().size() : cps.size());
  const int64_t step = unset(step_v) ? 1 : to_index(step_v);
  if (step == 0) return type_error("slice step cannot be zero");
  const auto bound = [&](const Value& v, int64_t fallback) {
    if (unset(v)) return fallback;
    int64_t i = to_index(v);
    if (i < 0) i += n;
    return step > 0 ? std::clamp<int64_t>(i, 0, n) : std::clamp<int64_t>(i, -1, n - 1);
  };
  const int64_t start = bound(start_v, step > 0 ? 0 : n - 1);
  const int64_t stop = bound(stop_v, step > 0 ? n : -1);
  List items;
  std::string text;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
    if (obj.is_list())
      items.push_back(obj.as_list()[static_cast<size_t>(i)]);
    else
      text += cps[static_cast<size_t>(i)];
  }
  return obj.is_list() ? Value(std::move(items)) : Value(std::move(text));
}

Result<Value> binary_op(std::string_view op, const Value& a, const Value& b) {
  if (op == "~") return Value(a.str() + b.str());
  if (a.is_undefined()) return type_error(a.undefined_hint());
  if (b.is_undefined()) return type_error(b.undefined_hint());
  const auto bad = [&]() {
    return type_error("unsupported operand type(s) for " + std::string(op) + ": '" + a.type_name() +
                      "' and '" + b.type_name() + "'");
  };
  if (a.is_number() && b.is_number()) {
    const bool ints = !a.is_float() && !b.is_float();
    const int64_t x = ints ? to_index(a) : 0, y = ints ? to_index(b) : 0;
    const double p = a.as_double(), q = b.as_double();
    if (op == "+") return ints ? Value(x + y) : Value(p + q);
    if (op == "-") return ints ? Value(x - y) : Value(p - q);
    if (op == "*") return ints ? Value(x * y) : Value(p * q);
    if ((op == "/" || op == "//" || op == "%") && q == 0)
      return type_error(op == "/" ? "division by zero" : "integer division or modulo by zero");
    if (op == "/") return Value(p / q);
    if (op == "//")
      return ints ? Value(x / y - ((x % y != 0) && ((x < 0) != (y < 0)) ? 1 : 0))
                  : Value(std::floor(p / q));
    if (op == "%") {
      if (ints) return Value(((x % y) + y) % y);
      const double r = std::fmod(p, q);
      return Value(r != 0 && ((r < 0) != (q < 0)) ? r + q : r);
    }
    if (op == "**") {
      if (ints && y >= 0) {
        int64_t r = 1;
        for (int64_t i = 0; i < y; ++i) r *= x;
        return Value(r);
      }
      return Value(std::pow(p, q));
    }
    return bad();
  }
  if (op == "%" && a.is_string())
    return unsupported(
        "printf-style string formatting ('...' % args) is not supported; use '...'.format() or ~");
  if (op == "+" && a.is_string() && b.is_string()) return Value(a.as_string() + b.as_string());
  if (op == "+" && a.is_list() && b.is_list()) {
    List l = a.as_list();
    l.insert(l.end(), b.as_list().begin(), b.as_list().end());
    return Value(std::move(l));
  }
  if (op == "+" && a.is_string())
    return type_error(std::string("can only concatenate str (not \"") + b.type_name() +
                      "\") to str");
  if (op == "*" && (a.is_string() || a.is_list() || b.is_string() || b.is_list())) {
    const Value& seq = a.is_string() || a.is_list() ? a : b;
    const Value& times = &seq == &a ? b : a;
    if (!is_index(times)) return bad();
    const int64_t k = std::max<int64_t>(0, to_index(times));
    const size_t unit = seq.is_string() ? seq.as_string().size() : seq.as_list().size();
    if (unit > 0 && static_cast<uint64_t>(k) > (uint64_t{1} << 26) / unit)
      return type_error("the repeated " + std::string(seq.type_name()) + " would be too large");
    if (seq.is_string()) {
      std::string out;
      for (int64_t i = 0; i < k; ++i) out += seq.as_string();
      return Value(std::move(out));
    }
    List out;
    for (int64_t i = 0; i < k; ++i)
      out.insert(out.end(), seq.as_list().begin(), seq.as_list().end());
    return Value(std::move(out));
  }
  return bad();
}

Result<bool> contains(const Value& container, const Value& item) {
  switch (container.type()) {
    case Value::Type::kUndefined:
      return false;
    case Value::Type::kString:
      if (!item.is_string())
        return type_error(std::string("'in <string>' requires string as left operand, not ") +
                          item.type_name());
      return container.as_string().find(item.as_string()) != std::string::npos;
    case Value::Type::kList:
      return std::any_of(container.as_list().begin(), container.as_list().end(),
                         [&](const Value& v) { return equals(v, item); });
    case Value::Type::kDict:
      return item.is_string() && container.as_dict().find(item.as_string()) != nullptr;
    default:
      return type_error(std::string("argument of type '") + container.type_name() +
                        "' is not iterable");
  }
}

Result<List> iterate(const Value& v) {
  switch (v.type()) {
    case Value::Type::kUndefined:
      return List{};
    case Value::Type::kList:
      return v.as_list();
    case Value::Type::kDict: {
      List keys;
      for (const auto& kv : v.as_dict().items) keys.emplace_back(kv.first);
      return keys;
    }
    case Value::Type::kString: {
      List chars;
      for (auto cp : code_points(v.as_string())) chars.emplace_back(cp);
      return chars;
    }
    default:
      return type_error(std::string("'") + v.type_name() + "' object is not iterable");
  }
}

Value builtin_global(std::string_view name) {
  if (name == "range") {
    return Value(Callable{"range", [](CallArgs& a) -> Result<Value> {
                            for (const auto& v : a.positional)
                              if (!is_index(v))
                                return type_error("range() arguments must be integers");
                            const size_t n = a.positional.size();
                            if (n < 1 || n > 3)
                              return type_error("range expected 1 to 3 arguments");
                            const int64_t start = n > 1 ? to_index(a.positional[0]) : 0;
                            const int64_t stop = to_index(a.positional[n > 1 ? 1 : 0]);
                            const int64_t step = n > 2 ? to_index(a.positional[2]) : 1;
                            if (step == 0) return type_error("range() arg 3 must not be zero");
                            List out;
                            for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
                              if (out.size() >= 100000)
                                return type_error("range too big");  // jinja2's sandbox limit
                              out.emplace_back(i);
                            }
                            return Value(std::move(out));
                          }});
  }
  if (name == "namespace" || name == "dict") {
    const bool ns = name == "namespace";
    return Value(Callable{std::string(name), [ns](CallArgs& a) -> Result<Value> {
                            Dict d;
                            d.is_namespace = ns;
                            for (const auto& p : a.positional) {
                              if (!p.is_dict())
                                return type_error(
                                    "namespace() and dict() take a mapping or keyword arguments");
                              for (const auto& [k, v] : p.as_dict().items) d.set(k, v);
                            }
                            for (const auto& [k, v] : a.named) d.set(k, v);
                            return Value(std::move(d));
                          }});
  }
  std::string hint = "'";
  hint += name;
  return Value::undefined(hint + "' is undefined");
}

// --- Tests ---

namespace {

using TestFn = Result<bool> (*)(const Value&, CallArgs&);

Result<bool> compare_test(const Value& v, CallArgs& a, int want_lt, int want_eq, int want_gt) {
  const Value* other = find_arg(a, 0, "other");
  if (!other) return type_error("the test needs a value to compare with");
  STRATA_ASSIGN_OR_RETURN(int c, compare(v, *other));
  return c < 0 ? want_lt != 0 : c == 0 ? want_eq != 0 : want_gt != 0;
}

const std::map<std::string_view, TestFn>& tests() {
  static const std::map<std::string_view, TestFn> kTests = {
      {"defined", [](const Value& v, CallArgs&) -> Result<bool> { return !v.is_undefined(); }},
      {"undefined", [](const Value& v, CallArgs&) -> Result<bool> { return v.is_undefined(); }},
      {"none", [](const Value& v, CallArgs&) -> Result<bool> { return v.is_none(); }},
      {"boolean", [](const Value& v, CallArgs&) -> Result<bool> { return v.is_bool(); }},
      {"true",
       [](const Value& v, CallArgs&) -> Result<bool> { return v.is_bool() && v.as_bool(); }},
      {"false",
       [](const Value& v, CallArgs&) -> Result<bool> { return v.is_bool() && !v.as_bool(); }},
      {"integer", [](const Value& v, CallArgs&) -> Result<bool> { return v.is_int(); }},
      {"float", [](const Value& v, CallArgs&) -> Result<bool> { return v.is_float(); }},
      {"number", [](const Value& v, CallArgs&) -> Result<bool> { return v.is_number(); }},
      {"string", [](const Value& v, CallArgs&) -> Result<bool> { return v.is_string(); }},
      {"mapping",
       [](const Value& v, CallArgs&) -> Result<bool> { return v.is_dict() && !v.is_namespace(); }},
      {"iterable",
       [](const Value& v, CallArgs&) -> Result<bool> {
         return v.is_string() || v.is_list() || (v.is_dict() && !v.is_namespace()) ||
                v.is_undefined();
       }},
      {"sequence",
       [](const Value& v, CallArgs&) -> Result<bool> {
         return v.is_string() || v.is_list() || (v.is_dict() && !v.is_namespace()) ||
                v.is_undefined();
       }},
      {"callable", [](const Value& v, CallArgs&) -> Result<bool> { return v.is_callable(); }},
      {"lower",
       [](const Value& v, CallArgs& a) -> Result<bool> {
         STRATA_ASSIGN_OR_RETURN(Value r, string_method(v.str(), "islower", a));
         return r.as_bool();
       }},
      {"upper",
       [](const Value& v, CallArgs& a) -> Result<bool> {
         STRATA_ASSIGN_OR_RETURN(Value r, string_method(v.str(), "isupper", a));
         return r.as_bool();
       }},
      {"odd",
       [](const Value& v, CallArgs&) -> Result<bool> {
         return is_index(v) && to_index(v) % 2 != 0;
       }},
      {"even",
       [](const Value& v, CallArgs&) -> Result<bool> {
         return is_index(v) && to_index(v) % 2 == 0;
       }},
      {"divisibleby",
       [](const Value& v, CallArgs& a) -> Result<bool> {
         const Value* n = find_arg(a, 0, "num");
         if (!n || !is_index(*n) || !is_index(v) || to_index(*n) == 0)
           return type_error("divisibleby needs integers");
         return to_index(v) % to_index(*n) == 0;
       }},
      {"eq",
       [](const Value& v, CallArgs& a) -> Result<bool> {
         const Value* o = find_arg(a, 0, "other");
         return o && equals(v, *o);
       }},
      {"ne",
       [](const Value& v, CallArgs& a) -> Result<bool> {
         const Value* o = find_arg(a, 0, "other");
         return !o || !equals(v, *o);
       }},
      {"sameas",
       [](const Value& v, CallArgs& a) -> Result<bool> {
         const Value* o = find_arg(a, 0, "other");
         if (!o || v.type() != o->type()) return false;
         if (v.is_list()) return &v.as_list() == &o->as_list();
         if (v.is_dict()) return &v.as_dict() == &o->as_dict();
         return v.is_none() || (v.is_bool() && v.as_bool() == o->as_bool());
       }},
      {"lt", [](const Value& v, CallArgs& a) { return compare_test(v, a, 1, 0, 0); }},
      {"le", [](const Value& v, CallArgs& a) { return compare_test(v, a, 1, 1, 0); }},
      {"gt", [](const Value& v, CallArgs& a) { return compare_test(v, a, 0, 0, 1); }},
      {"ge", [](const Value& v, CallArgs& a) { return compare_test(v, a, 0, 1, 1); }},
      {"in",
       [](const Value& v, CallArgs& a) -> Result<bool> {
         const Value* seq = find_arg(a, 0, "seq");
         if (!seq) return type_error("the 'in' test needs a container");
         return contains(*seq, v);
       }},
  };
  return kTests;
}

std::string_view test_alias(std::string_view name) {
  if (name == "equalto" || name == "==") return "eq";
  if (name == "!=") return "ne";
  if (name == "lessthan" || name == "<") return "lt";
  if (name == "<=") return "le";
  if (name == "greaterthan" || name == ">") return "gt";
  if (name == ">=") return "ge";
  return name;
}

}  // namespace

bool is_test(std::string_view name) { return tests().count(test_alias(name)) > 0; }

Result<bool> apply_test(std::string_view name, const Value& value, CallArgs& args) {
  auto it = tests().find(test_alias(name));
  if (it == tests().end()) return type_error("no test named '" + std::string(name) + "'");
  return it->second(value, args);
}

}  // namespace strata::text::jinja
