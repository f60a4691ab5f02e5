#include "text/json_schema.h"

#include <cmath>
#include <cstdlib>
#include <map>
#include <set>
#include <string_view>
#include <vector>

#include "text/regex_grammar.h"

namespace strata::text {

namespace {

using ojson = nlohmann::ordered_json;
using Frag = GrammarBuilder::Frag;
using i128 = __int128;

// Numbers: at most this many integer digits (so |x| < 1e15) and fraction digits.
constexpr int kIntDigits = 15;
constexpr int kFracDigits = 6;
constexpr int kMaxItems = 1000;
constexpr int kMaxLength = 10000;

const std::set<std::string, std::less<>> kAnnotations = {
    "title", "description", "$schema", "$id", "$comment", "examples", "default", "deprecated",
    "readOnly", "writeOnly", "$defs", "definitions", "$anchor", "contentMediaType", "contentEncoding"};
const std::set<std::string, std::less<>> kSupported = {
    "type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
    "enum", "const", "pattern", "format", "minLength", "maxLength", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "anyOf", "oneOf", "allOf", "$ref", "uniqueItems"};

std::string pointer_escape(const std::string& key) {
  std::string out;
  for (char c : key) {
    if (c == '~') out += "~0";
    else if (c == '/') out += "~1";
    else out += c;
  }
  return out;
}

std::string dump(const ojson& v) { return v.dump(-1, ' ', false, ojson::error_handler_t::replace); }

std::string i128_text(i128 v) {
  if (v == 0) return "0";
  const bool neg = v < 0;
  if (neg) v = -v;
  std::string s;
  while (v > 0) {
    s.insert(s.begin(), static_cast<char>('0' + static_cast<int>(v % 10)));
    v /= 10;
  }
  return neg ? "-" + s : s;
}

i128 pow10(int k) {
  i128 p = 1;
  while (k-- > 0) p *= 10;
  return p;
}

// The double a reader makes of the decimal c * 10^-kFracDigits (as Python's float() does).
double micro_value(i128 c) {
  const bool neg = c < 0;
  std::string digits = i128_text(neg ? -c : c);
  while (static_cast<int>(digits.size()) <= kFracDigits) digits.insert(digits.begin(), '0');
  const std::string text = (neg ? "-" : "") + digits.substr(0, digits.size() - kFracDigits) + "." +
                           digits.substr(digits.size() - kFracDigits);
  return std::strtod(text.c_str(), nullptr);
}

i128 floor_div(i128 a, i128 b) {  // b > 0
  i128 q = a / b;
  if (a % b != 0 && a < 0) --q;
  return q;
}
i128 ceil_div(i128 a, i128 b) { return -floor_div(-a, b); }

class Compiler {
 public:
  Compiler(const ojson& root, std::string what) : root_(root), what_(std::move(what)) {}

  Result<Grammar> run() {
    const uint32_t top = b_.new_rule();
    auto f = compile(root_, "", 0);
    if (!f.is_ok()) return f.status();
    b_.define(top, *f);
    // Rules of $refs are compiled once each, after their first use.
    while (!pending_.empty()) {
      auto [pointer, rule] = pending_.back();
      pending_.pop_back();
      const ojson* target = resolve(pointer);
      auto body = compile(*target, pointer.substr(1), 0);
      if (!body.is_ok()) return body.status();
      b_.define(rule, *body);
    }
    auto g = b_.finish(top);
    if (!g.is_ok()) return Status(g.status().code(), what_ + ": " + g.status().message());
    return g;
  }

 private:
  Status bad(const std::string& path, const std::string& msg) const {
    return invalid_argument(what_ + ": " + msg + " at '" + (path.empty() ? "/" : path) + "'");
  }
  Status unsupported_kw(const std::string& path, const std::string& kw, const std::string& hint = "") const {
    return unsupported(what_ + ": the JSON Schema keyword '" + kw + "' at '" + (path.empty() ? "/" : path) +
                       "' is not supported" + (hint.empty() ? "" : " (" + hint + ")") +
                       "; strata supports type, properties, required, items, minItems, maxItems, enum, const, "
                       "pattern, format, minLength, maxLength, minimum, maximum, exclusiveMinimum, "
                       "exclusiveMaximum, anyOf, oneOf, allOf of one schema and $ref");
  }

  Frag ws() { return b_.optional(b_.literal(" ")); }

  const ojson* resolve(const std::string& ref) const {
    if (ref == "#") return &root_;
    const ojson* at = &root_;
    size_t i = 2;  // after "#/"
    while (i <= ref.size()) {
      size_t j = ref.find('/', i);
      if (j == std::string::npos) j = ref.size();
      std::string key;
      for (size_t k = i; k < j; ++k) {
        if (ref[k] == '~' && k + 1 < j) {
          key += ref[k + 1] == '1' ? '/' : '~';
          ++k;
        } else {
          key += ref[k];
        }
      }
      if (!at->is_object() || !at->contains(key)) return nullptr;
      at = &(*at)[key];
      i = j + 1;
    }
    return at;
  }

  Result<Frag> compile(const ojson& s, const std::string& path, int depth) {
    if (depth > 64) return bad(path, "the schema nests deeper than 64 levels");
    if (b_.too_big()) return bad(path, "the schema compiles to too large an automaton");
    if (s.is_boolean()) {
      if (s.get<bool>()) return any_value();
      return bad(path, "the schema false allows no value");
    }
    if (!s.is_object()) return bad(path, "a schema must be an object or a boolean");
    for (const auto& [k, v] : s.items()) {
      if (kAnnotations.count(k) || kSupported.count(k)) continue;
      return unsupported_kw(path + "/" + pointer_escape(k), k);
    }
    if (s.contains("uniqueItems") && s["uniqueItems"] != false) return unsupported_kw(path + "/uniqueItems", "uniqueItems");
    auto only = [&](const char* kw) -> Status {
      for (const auto& [k, v] : s.items())
        if (k != kw && !kAnnotations.count(k))
          return unsupported_kw(path + "/" + pointer_escape(k), k,
                                std::string("next to '") + kw + "': move it into the referenced or alternative schemas");
      return Status::ok();
    };
    if (s.contains("$ref")) {
      STRATA_RETURN_IF_ERROR(only("$ref"));
      if (!s["$ref"].is_string()) return bad(path + "/$ref", "$ref must be a string");
      const std::string ref = s["$ref"];
      if (!(ref == "#" || ref.starts_with("#/$defs/") || ref.starts_with("#/definitions/")))
        return unsupported_kw(path + "/$ref", "$ref", "only \"#\", \"#/$defs/...\" and \"#/definitions/...\" are, not '" + ref + "'");
      if (!resolve(ref)) return bad(path + "/$ref", "'" + ref + "' points at nothing in the schema");
      auto [it, fresh] = refs_.try_emplace(ref, 0);
      if (fresh) {
        it->second = b_.new_rule();
        pending_.emplace_back(ref, it->second);
      }
      return b_.call(it->second);
    }
    for (const char* kw : {"anyOf", "oneOf"}) {
      if (!s.contains(kw)) continue;
      STRATA_RETURN_IF_ERROR(only(kw));
      const ojson& list = s[kw];
      if (!list.is_array() || list.empty()) return bad(path + "/" + kw, std::string(kw) + " must be a non-empty array");
      std::vector<Frag> options;
      for (size_t i = 0; i < list.size(); ++i) {
        auto f = compile(list[i], path + "/" + kw + "/" + std::to_string(i), depth + 1);
        if (!f.is_ok()) return f;
        options.push_back(*f);
      }
      return b_.alt(options);
    }
    if (s.contains("allOf")) {
      STRATA_RETURN_IF_ERROR(only("allOf"));
      if (!s["allOf"].is_array() || s["allOf"].size() != 1)
        return unsupported_kw(path + "/allOf", "allOf", "only with exactly one schema");
      return compile(s["allOf"][0], path + "/allOf/0", depth + 1);
    }
    // The types this schema allows.
    std::vector<std::string> types;
    if (s.contains("type")) {
      const ojson& t = s["type"];
      if (t.is_string()) types.push_back(t);
      else if (t.is_array())
        for (const auto& x : t) {
          if (!x.is_string()) return bad(path + "/type", "type must be a name or an array of names");
          types.push_back(x);
        }
      else return bad(path + "/type", "type must be a name or an array of names");
      static const std::set<std::string> kTypes = {"object", "array", "string", "number", "integer", "boolean", "null"};
      for (const auto& x : types)
        if (!kTypes.count(x)) return bad(path + "/type", "unknown type '" + x + "'");
    }
    auto type_ok = [&](const ojson& v) {
      if (types.empty()) return true;
      for (const auto& t : types) {
        if ((t == "object" && v.is_object()) || (t == "array" && v.is_array()) || (t == "string" && v.is_string()) ||
            (t == "number" && v.is_number()) || (t == "boolean" && v.is_boolean()) || (t == "null" && v.is_null()) ||
            (t == "integer" && (v.is_number_integer() || (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>()))))
          return true;
      }
      return false;
    };
    if (s.contains("const")) {
      if (!type_ok(s["const"])) return bad(path + "/const", "const does not have the schema's type");
      return b_.literal(dump(s["const"]));
    }
    if (s.contains("enum")) {
      const ojson& e = s["enum"];
      if (!e.is_array() || e.empty()) return bad(path + "/enum", "enum must be a non-empty array");
      std::vector<std::string> texts;
      for (const auto& v : e)
        if (type_ok(v)) texts.push_back(dump(v));
      if (texts.empty()) return bad(path + "/enum", "no value of enum has the schema's type");
      return b_.one_of(texts);
    }
    if (types.empty()) {
      // Untyped: what its keywords are about, or any value.
      auto has = [&](std::initializer_list<const char*> kws) {
        for (const char* k : kws)
          if (s.contains(k)) return true;
        return false;
      };
      if (has({"properties", "required", "additionalProperties"})) types.push_back("object");
      if (has({"items", "minItems", "maxItems"})) types.push_back("array");
      if (has({"pattern", "format", "minLength", "maxLength"})) types.push_back("string");
      if (has({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})) types.push_back("number");
      if (types.empty()) return any_value();
    }
    std::vector<Frag> options;
    for (const auto& t : types) {
      Result<Frag> f = Frag{};
      if (t == "object") f = object(s, path, depth);
      else if (t == "array") f = array(s, path, depth);
      else if (t == "string") f = string(s, path);
      else if (t == "number" || t == "integer") f = number(s, path, t == "integer");
      else if (t == "boolean") f = b_.one_of({"true", "false"});
      else f = b_.literal("null");
      if (!f.is_ok()) return f;
      options.push_back(*f);
    }
    return options.size() == 1 ? options[0] : b_.alt(options);
  }

  Result<Frag> object(const ojson& s, const std::string& path, int depth) {
    if (s.contains("additionalProperties") && !s["additionalProperties"].is_boolean())
      return unsupported_kw(path + "/additionalProperties", "additionalProperties",
                            "only true or false: strata writes the listed properties only");
    std::set<std::string> required;
    if (s.contains("required")) {
      if (!s["required"].is_array()) return bad(path + "/required", "required must be an array of names");
      for (const auto& r : s["required"]) {
        if (!r.is_string()) return bad(path + "/required", "required must be an array of names");
        required.insert(r.get<std::string>());
      }
    }
    if (!s.contains("properties")) {
      if (!required.empty()) return bad(path + "/required", "required names properties the schema does not list");
      if (s.value("additionalProperties", true) == false) return b_.literal("{}");
      return call_any("object");
    }
    const ojson& props = s["properties"];
    if (!props.is_object()) return bad(path + "/properties", "properties must be an object");
    for (const auto& r : required)
      if (!props.contains(r)) return bad(path + "/required", "required property '" + r + "' is not in properties");
    // Two tracks: A before any property is written, B after one is (the next needs a comma).
    const Frag open = b_.literal("{");
    uint32_t a = open.out, bt = 0;
    bool has_b = false;
    for (const auto& [key, sub] : props.items()) {
      const std::string sub_path = path + "/properties/" + pointer_escape(key);
      auto value = compile(sub, sub_path, depth + 1);
      if (!value.is_ok()) return value;
      const uint32_t rule = b_.new_rule();
      b_.define(rule, b_.seq(b_.seq(b_.literal(dump(ojson(key)) + ":"), ws()), *value));
      const bool optional = !required.count(key);
      const Frag na = b_.empty(), nb = b_.empty();
      if (optional) {
        b_.seq({a, a}, na);
        if (has_b) b_.seq({bt, bt}, nb);
      }
      b_.seq(b_.seq({a, a}, b_.call(rule)), nb);
      if (has_b) b_.seq(b_.seq(b_.seq({bt, bt}, b_.seq(b_.literal(","), ws())), b_.call(rule)), nb);
      a = na.out;
      bt = nb.out;
      has_b = true;
    }
    const Frag close = b_.literal("}");
    b_.seq({a, a}, close);
    if (has_b) b_.seq({bt, bt}, close);
    return Frag{open.in, close.out};
  }

  Result<int> count(const ojson& s, const char* kw, const std::string& path, int fallback, int limit) {
    if (!s.contains(kw)) return fallback;
    const ojson& v = s[kw];
    if (!v.is_number_integer() || v.get<int64_t>() < 0) return bad(path + "/" + kw, std::string(kw) + " must be an integer >= 0");
    if (v.get<int64_t>() > limit)
      return unsupported_kw(path + "/" + kw, kw, "values above " + std::to_string(limit) + " are not");
    return static_cast<int>(v.get<int64_t>());
  }

  Result<Frag> array(const ojson& s, const std::string& path, int depth) {
    if (s.contains("prefixItems")) return unsupported_kw(path + "/prefixItems", "prefixItems");
    auto lo = count(s, "minItems", path, 0, kMaxItems);
    if (!lo.is_ok()) return lo.status();
    auto hi = count(s, "maxItems", path, -1, kMaxItems);
    if (!hi.is_ok()) return hi.status();
    if (*hi >= 0 && *lo > *hi) return bad(path, "minItems is more than maxItems");
    uint32_t item = 0;
    if (s.contains("items")) {
      if (s["items"].is_array()) return unsupported_kw(path + "/items", "items", "an array of schemas (tuple form)");
      auto f = compile(s["items"], path + "/items", depth + 1);
      if (!f.is_ok()) return f;
      item = b_.new_rule();
      b_.define(item, *f);
    } else {
      item = any_rule();
    }
    const Frag open = b_.literal("[");
    Frag body;
    if (*hi == 0) {
      body = b_.empty();
    } else {
      auto more = [&] { return b_.seq(b_.seq(b_.literal(","), ws()), b_.call(item)); };
      Frag list = b_.seq(b_.call(item), b_.repeat(more, std::max(0, *lo - 1), *hi < 0 ? -1 : *hi - 1));
      body = *lo == 0 ? b_.optional(list) : list;
    }
    return b_.seq(b_.seq(open, body), b_.literal("]"));
  }

  Result<Frag> string(const ojson& s, const std::string& path) {
    auto lo = count(s, "minLength", path, 0, kMaxLength);
    if (!lo.is_ok()) return lo.status();
    auto hi = count(s, "maxLength", path, -1, kMaxLength);
    if (!hi.is_ok()) return hi.status();
    if (*hi >= 0 && *lo > *hi) return bad(path, "minLength is more than maxLength");
    const bool lengths = s.contains("minLength") || s.contains("maxLength");
    Frag inner;
    if (s.contains("format")) {
      if (!s["format"].is_string()) return bad(path + "/format", "format must be a string");
      if (lengths || s.contains("pattern"))
        return unsupported_kw(path + "/format", "format", "together with pattern, minLength or maxLength");
      const std::string f = s["format"];
      static const std::map<std::string, std::string> kFormats = {
          {"date", kDate},
          {"date-time", std::string(kDate) + "T" + kTime},
          {"time", kTime},
          {"uuid", "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"},
          {"email", "[A-Za-z0-9_+-]{1,32}(\\.[A-Za-z0-9_+-]{1,32}){0,3}@[A-Za-z0-9]{1,32}(-[A-Za-z0-9]{1,32}){0,2}"
                    "(\\.[A-Za-z0-9]{1,32}){0,3}\\.[A-Za-z]{2,8}"}};
      auto it = kFormats.find(f);
      if (it == kFormats.end())
        return unsupported_kw(path + "/format", "format", "format '" + f + "': date, date-time, time, uuid and email are supported");
      auto r = compile_regex(b_, it->second, {.search = false, .json_string = true}, what_ + " format " + f);
      if (!r.is_ok()) return r;
      inner = *r;
    } else if (s.contains("pattern")) {
      if (!s["pattern"].is_string()) return bad(path + "/pattern", "pattern must be a string");
      if (lengths) return unsupported_kw(path + "/pattern", "pattern", "together with minLength or maxLength");
      auto r = compile_regex(b_, s["pattern"].get<std::string>(), {.search = true, .json_string = true},
                             what_ + ": pattern at '" + path + "/pattern'");
      if (!r.is_ok()) return r;
      inner = *r;
    } else {
      inner = b_.repeat([&] { return json_string_char(b_); }, *lo, *hi);
    }
    return b_.seq(b_.seq(b_.literal("\""), inner), b_.literal("\""));
  }

  // The bound `kw` of `s` as a number, or nothing.
  Result<std::optional<double>> bound(const ojson& s, const char* kw, const std::string& path) {
    if (!s.contains(kw)) return std::optional<double>();
    const ojson& v = s[kw];
    if (v.is_boolean())
      return unsupported_kw(path + "/" + kw, kw, "the boolean form of draft 4; give the bound as a number");
    if (!v.is_number()) return bad(path + "/" + kw, std::string(kw) + " must be a number");
    return std::optional<double>(v.get<double>());
  }

  Result<Frag> number(const ojson& s, const std::string& path, bool integer) {
    if (s.contains("multipleOf")) return unsupported_kw(path + "/multipleOf", "multipleOf");
    // Bounds in units of 10^-kFracDigits (integers: of 1), as the smallest and largest values
    // whose double (as a reader parses the text) meets every bound.
    const int frac = integer ? 0 : kFracDigits;
    const i128 unit = pow10(kFracDigits - frac);  // micro units per step
    i128 lo = -(pow10(kIntDigits + kFracDigits) - 1), hi = pow10(kIntDigits + kFracDigits) - 1;
    bool any = false;
    for (const char* kw : {"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"}) {
      auto b = bound(s, kw, path);
      if (!b.is_ok()) return b.status();
      if (!*b) continue;
      any = true;
      const double x = **b;
      const std::string_view name = kw;
      const bool lower = name == "minimum" || name == "exclusiveMinimum";
      const bool strict = name.starts_with("exclusive");
      auto meets = [&](i128 c) {
        const double v = micro_value(c);
        return lower ? (strict ? v > x : v >= x) : (strict ? v < x : v <= x);
      };
      long double guess = std::floor(static_cast<long double>(x) * static_cast<long double>(pow10(kFracDigits)));
      if (!(std::fabs(guess) < 1e22L)) return unsupported_kw(path + "/" + kw, kw, "bounds beyond 1e15 are not");
      i128 c = static_cast<i128>(guess);
      c = floor_div(c, unit) * unit;
      if (lower) {
        while (meets(c - unit)) c -= unit;
        while (!meets(c)) c += unit;
        lo = std::max(lo, c);
      } else {
        while (!meets(c)) c -= unit;
        while (meets(c + unit)) c += unit;
        hi = std::min(hi, c);
      }
    }
    if (lo > hi) return bad(path, std::string("no ") + (integer ? "integer" : "number") + " meets the bounds");
    if (!any) {
      // Unbounded: the plain forms, without the range's many alternatives.
      std::string re = "-?(0|[1-9][0-9]{0," + std::to_string(kIntDigits - 1) + "})";
      if (!integer) re += "(\\.[0-9]{1," + std::to_string(kFracDigits) + "})?";
      auto r = compile_regex(b_, re, {}, what_);
      if (!r.is_ok()) return r;
      return *r;
    }
    std::vector<Frag> options;
    for (int k = 0; k <= frac; ++k) {
      const i128 u = pow10(kFracDigits - k);  // micro units per step of k fraction digits
      // Non-negative values v * 10^-k.
      const i128 plo = std::max<i128>(0, ceil_div(lo, u)), phi = floor_div(hi, u);
      if (plo <= phi) digits_ranges(plo, phi, k, options, "");
      // Negative values -v * 10^-k, v >= 1.
      const i128 nlo = std::max<i128>(1, ceil_div(-hi, u)), nhi = floor_div(-lo, u);
      if (nlo <= nhi) digits_ranges(nlo, nhi, k, options, "-");
    }
    return b_.alt(options);
  }

  // The texts of the values v in [lo, hi] (v >= 0) with k fraction digits: the digits of v padded
  // to at least k + 1, a point before the last k, no leading zero in the integer part.
  void digits_ranges(i128 lo, i128 hi, int k, std::vector<Frag>& options, const std::string& sign) {
    for (int len = k + 1; len <= kIntDigits + k; ++len) {
      const i128 first = len == k + 1 ? 0 : pow10(len - 1), last = pow10(len) - 1;
      const i128 a = std::max(lo, first), z = std::min(hi, last);
      if (a > z) continue;
      std::string sa = i128_text(a), sz = i128_text(z);
      while (static_cast<int>(sa.size()) < len) sa.insert(sa.begin(), '0');
      while (static_cast<int>(sz.size()) < len) sz.insert(sz.begin(), '0');
      const int dot = k == 0 ? -1 : len - k;  // a point before the digit at this index
      options.push_back(b_.seq(b_.literal(sign), same_length(sa, sz, 0, dot)));
    }
  }

  Frag digit(char lo, char hi, int index, int dot) {
    Frag f = b_.range(static_cast<uint8_t>(lo), static_cast<uint8_t>(hi));
    return index + 1 == dot ? b_.seq(f, b_.literal(".")) : f;
  }

  // Digit strings between a and b (equal lengths), from absolute index `at`.
  Frag same_length(const std::string& a, const std::string& b, int at, int dot) {
    if (a.empty()) return b_.empty();
    const std::string ra = a.substr(1), rb = b.substr(1);
    if (a[0] == b[0]) return b_.seq(digit(a[0], a[0], at, dot), same_length(ra, rb, at + 1, dot));
    const bool low_full = ra.find_first_not_of('0') == std::string::npos;
    const bool high_full = rb.find_first_not_of('9') == std::string::npos;
    std::vector<Frag> options;
    char mid_lo = static_cast<char>(a[0] + 1), mid_hi = static_cast<char>(b[0] - 1);
    if (low_full) mid_lo = a[0];
    else options.push_back(b_.seq(digit(a[0], a[0], at, dot), same_length(ra, std::string(ra.size(), '9'), at + 1, dot)));
    if (high_full) mid_hi = b[0];
    else options.push_back(b_.seq(digit(b[0], b[0], at, dot), same_length(std::string(rb.size(), '0'), rb, at + 1, dot)));
    if (mid_lo <= mid_hi) {
      Frag f = digit(mid_lo, mid_hi, at, dot);
      for (int i = 1; i < static_cast<int>(a.size()); ++i) f = b_.seq(f, digit('0', '9', at + i, dot));
      options.push_back(f);
    }
    return options.size() == 1 ? options[0] : b_.alt(options);
  }

  // Any JSON value (a rule, made once; objects and arrays recurse through it).
  uint32_t any_rule() {
    if (any_) return *any_;
    any_ = b_.new_rule();
    any_object_ = b_.new_rule();
    const uint32_t str = b_.new_rule();
    b_.define(str, b_.seq(b_.seq(b_.literal("\""), b_.star(json_string_char(b_))), b_.literal("\"")));
    auto num = compile_regex(b_, "-?(0|[1-9][0-9]{0,14})(\\.[0-9]{1,6})?", {}, "number");
    const uint32_t v = *any_;
    auto member = [&] { return b_.seq(b_.seq(b_.call(str), b_.seq(b_.literal(":"), ws())), b_.call(v)); };
    const Frag members = b_.seq(member(), b_.star(b_.seq(b_.seq(b_.literal(","), ws()), member())));
    b_.define(*any_object_, b_.seq(b_.seq(b_.literal("{"), b_.optional(members)), b_.literal("}")));
    const Frag items = b_.seq(b_.call(v), b_.star(b_.seq(b_.seq(b_.literal(","), ws()), b_.call(v))));
    const Frag arr = b_.seq(b_.seq(b_.literal("["), b_.optional(items)), b_.literal("]"));
    b_.define(v, b_.alt({b_.call(*any_object_), arr, b_.call(str), *num, b_.one_of({"true", "false", "null"})}));
    return v;
  }
  Frag any_value() { return b_.call(any_rule()); }
  Frag call_any(const char* what) {
    any_rule();
    (void)what;
    return b_.call(*any_object_);
  }

  static constexpr const char* kDate =
      "([0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])|[0-9]{4}-(0[13-9]|1[0-2])-(29|30)|[0-9]{4}-(0[13578]|1[02])-31"
      "|([0-9]{2}(0[48]|[2468][048]|[13579][26])|([02468][048]|[13579][26])00)-02-29)";
  static constexpr const char* kTime =
      "([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])";

  const ojson& root_;
  std::string what_;
  GrammarBuilder b_;
  std::map<std::string, uint32_t> refs_;
  std::vector<std::pair<std::string, uint32_t>> pending_;
  std::optional<uint32_t> any_, any_object_;
};

}  // namespace

Result<Grammar> compile_json_schema(const nlohmann::ordered_json& schema, const std::string& what) {
  return Compiler(schema, what).run();
}

}  // namespace strata::text
