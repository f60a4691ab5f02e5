// What the chat-template Jinja interpreter knows how to do with values: operators, attribute and
// item access, slices, iteration, the filters and tests chat templates use, Python string and
// dict methods, and the globals range/namespace/dict, all behaving as in jinja2's
// ImmutableSandboxedEnvironment (so list.append is refused, as there). Errors are plain messages;
// the evaluator adds the template name and line. Pure functions; thread safe.
#pragma once

#include <string_view>

#include "common/status.h"
#include "text/jinja_value.h"

namespace strata::text::jinja {

bool is_filter(std::string_view name);
bool is_test(std::string_view name);
// `value | name(args)` and `value is name(args)`.
Result<Value> apply_filter(std::string_view name, const Value& value, CallArgs& args);
Result<bool> apply_test(std::string_view name, const Value& value, CallArgs& args);

// obj.name: a dict key or a method (dict.items, str.split, ...); undefined when absent; an error
// on an undefined obj.
Result<Value> get_attr(const Value& obj, std::string_view name);
// obj[key]: a dict key, a list or string index (negative from the end); undefined when absent.
Result<Value> get_item(const Value& obj, const Value& key);
// obj[start:stop:step] with Python's rules; none (or undefined) parts take their defaults.
Result<Value> get_slice(const Value& obj, const Value& start, const Value& stop, const Value& step);
// The arithmetic and concatenation operators: + - * / // % ** ~.
Result<Value> binary_op(std::string_view op, const Value& a, const Value& b);
// `item in container`.
Result<bool> contains(const Value& container, const Value& item);
// What a for loop visits: list items, dict keys, string characters; nothing for undefined.
Result<List> iterate(const Value& v);
// A global function other than the ones tied to a render (raise_exception, strftime_now):
// range, namespace, dict; undefined for other names.
Value builtin_global(std::string_view name);

// Positional argument `pos` or keyword `name` of a call, or null.
const Value* find_arg(const CallArgs& args, size_t pos, std::string_view name);

// The code points of a UTF-8 string, as Python indexes a str.
std::vector<std::string_view> code_points(std::string_view s);

// Python's str.upper(), str.lower(), str.title() and str.capitalize(), and jinja2's title filter
// (words start after whitespace, "-" or an opening bracket), with Unicode simple case mapping.
enum class CaseChange { kUpper, kLower, kPythonTitle, kCapitalize, kJinjaTitle };
std::string change_case(std::string_view s, CaseChange how);

}  // namespace strata::text::jinja
