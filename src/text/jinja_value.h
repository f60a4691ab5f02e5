// Values of the chat-template Jinja interpreter, with the Python semantics jinja2 gives them:
// undefined, none, bool, int (64-bit), float, str (UTF-8), list, dict (insertion-ordered, string
// keys), namespace and callable; truthiness, str(), repr(), ==, ordering and json.dumps. Lists and
// dicts are shared like Python objects; rendering mutates only namespaces. A value that is only
// read may be shared by threads.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace strata::text::jinja {

class Value;
using List = std::vector<Value>;

// A dict with Python's insertion order. Namespaces (namespace()) are dicts whose attributes a
// template may assign.
struct Dict {
  std::vector<std::pair<std::string, Value>> items;
  bool is_namespace = false;

  const Value* find(std::string_view key) const;
  void set(const std::string& key, Value v);
};

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> named;
};

// Something a template can call: a global (namespace, range, raise_exception), a bound method
// ("text".split) or a macro.
struct Callable {
  std::string name;
  std::function<Result<Value>(CallArgs&)> fn;
};

class Value {
 public:
  enum class Type { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kCallable };

  Value() = default;  // undefined
  Value(std::nullptr_t) : v_(None{}) {}
  Value(bool b) : v_(b) {}
  Value(int i) : v_(int64_t{i}) {}
  Value(int64_t i) : v_(i) {}
  Value(double d) : v_(d) {}
  Value(std::string s) : v_(std::move(s)) {}
  Value(std::string_view s) : v_(std::string(s)) {}
  Value(const char* s) : v_(std::string(s)) {}
  Value(List l) : v_(std::make_shared<List>(std::move(l))) {}
  Value(Dict d) : v_(std::make_shared<Dict>(std::move(d))) {}
  Value(Callable c) : v_(std::make_shared<const Callable>(std::move(c))) {}
  template <typename T>
  Value(T*) = delete;  // not a bool

  // An undefined value; `hint` is what using it says ("'x' is undefined").
  static Value undefined(std::string hint);
  // Python's json.loads of `j`, keys in the order `j` keeps them.
  static Value from_json(const nlohmann::ordered_json& j);

  Type type() const { return static_cast<Type>(v_.index()); }
  bool is_undefined() const { return type() == Type::kUndefined; }
  bool is_none() const { return type() == Type::kNone; }
  bool is_bool() const { return type() == Type::kBool; }
  bool is_int() const { return type() == Type::kInt; }
  bool is_float() const { return type() == Type::kFloat; }
  bool is_number() const { return is_int() || is_float() || is_bool(); }  // Python's numbers.Number
  bool is_string() const { return type() == Type::kString; }
  bool is_list() const { return type() == Type::kList; }
  bool is_dict() const { return type() == Type::kDict; }
  bool is_namespace() const { return is_dict() && as_dict().is_namespace; }
  bool is_callable() const { return type() == Type::kCallable; }

  bool as_bool() const { return std::get<bool>(v_); }
  int64_t as_int() const { return std::get<int64_t>(v_); }
  double as_float() const { return std::get<double>(v_); }
  double as_double() const;  // int, bool or float as a double
  const std::string& as_string() const { return std::get<std::string>(v_); }
  const List& as_list() const { return *std::get<std::shared_ptr<List>>(v_); }
  const Dict& as_dict() const { return *std::get<std::shared_ptr<Dict>>(v_); }
  Dict& mutable_dict() const { return *std::get<std::shared_ptr<Dict>>(v_); }
  const Callable& as_callable() const { return *std::get<std::shared_ptr<const Callable>>(v_); }
  const std::string& undefined_hint() const { return std::get<Undefined>(v_).hint; }

  bool truthy() const;
  std::string str() const;   // Python's str(): what {{ value }} renders
  std::string repr() const;  // Python's repr()
  // Python's type name, as error messages give it: 'str', 'int', 'dict', 'NoneType', ...
  const char* type_name() const;

 private:
  struct Undefined {
    std::string hint;
  };
  struct None {};
  std::variant<Undefined, None, bool, int64_t, double, std::string, std::shared_ptr<List>,
               std::shared_ptr<Dict>, std::shared_ptr<const Callable>>
      v_;
};

// Python's ==: numbers compare by value (True == 1), containers element by element, and two
// undefined values are equal (as jinja2's Undefined are).
bool equals(const Value& a, const Value& b);
// Python's ordering: numbers, strings (by code point) and lists; an error for other pairs.
Result<int> compare(const Value& a, const Value& b);

// json.dumps(value, ensure_ascii, indent, separators, sort_keys) as Python writes it.
struct JsonStyle {
  bool ensure_ascii = false;
  int indent = -1;  // -1: None (one line)
  std::string item_separator = ", ";
  std::string key_separator = ": ";
  bool sort_keys = false;
};
Result<std::string> to_json(const Value& v, const JsonStyle& style);

// repr() of a Python float ("0.1", "1e+16", "1.0") and of a str ('it''s' quoting and escapes).
std::string python_float_repr(double d);
std::string python_str_repr(std::string_view s);

}  // namespace strata::text::jinja
