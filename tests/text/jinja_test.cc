// The Jinja interpreter against jinja2: every snippet of tests/data/chat_templates/snippets.json
// renders byte for byte as jinja2 rendered it in transformers' environment (references.json, made
// by make_chat_template_refs.py), or fails where jinja2 failed; plus the errors' names and lines.
#include "text/jinja.h"

#include <gtest/gtest.h>

#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>

#include "testing/test_data.h"
#include "text/jinja_value.h"

namespace strata::text::jinja {
namespace {

using ojson = nlohmann::ordered_json;

ojson read_ordered(const std::filesystem::path& p) {
  std::ifstream in(p);
  return ojson::parse(in, nullptr, /*allow_exceptions=*/false);
}

// The clock of the references (make_chat_template_refs.py CLOCK): 2025-03-14 09:26:53.
std::tm reference_clock() {
  std::tm tm{};
  tm.tm_year = 2025 - 1900;
  tm.tm_mon = 2;
  tm.tm_mday = 14;
  tm.tm_hour = 9;
  tm.tm_min = 26;
  tm.tm_sec = 53;
  timegm(&tm);  // fills in the weekday and the day of the year
  return tm;
}

Result<std::string> render(std::string_view source, const Dict& ctx = {},
                           const std::string& name = "t.jinja") {
  STRATA_ASSIGN_OR_RETURN(Template t, Template::parse(source, name));
  RenderOptions o;
  o.now = reference_clock();
  return t.render(ctx, o);
}

TEST(Jinja, SnippetsMatchJinja2) {
  const auto dir = testing::test_data_dir() / "chat_templates";
  const ojson snippets = read_ordered(dir / "snippets.json");
  const ojson refs = read_ordered(dir / "references.json");
  ASSERT_TRUE(snippets.is_array() && refs.is_object());
  ASSERT_EQ(snippets.size(), refs["snippets"].size());
  int rendered = 0, errors = 0;
  for (size_t i = 0; i < snippets.size(); ++i) {
    const auto& s = snippets[i];
    const auto& r = refs["snippets"][i];
    ASSERT_EQ(s["name"], r["name"]);
    SCOPED_TRACE(s["name"].get<std::string>() + ": " + s["template"].get<std::string>());
    const Value ctx = Value::from_json(s["context"]);
    auto out = render(s["template"].get<std::string>(), ctx.as_dict(), "snippet.jinja");
    if (r.contains("rendered")) {
      EXPECT_TRUE(out.is_ok()) << out.status().message();
      if (out.is_ok()) {
        EXPECT_EQ(*out, r["rendered"].get<std::string>());
      }
      ++rendered;
      continue;
    }
    EXPECT_FALSE(out.is_ok()) << "rendered " << *out << " where jinja2 failed: " << r["error"];
    if (out.is_ok()) continue;
    const std::string& msg = out.status().message();
    EXPECT_EQ(msg.rfind("snippet.jinja, line ", 0), 0u) << msg;
    if (r["kind"] == "syntax") {
      EXPECT_NE(msg.find("line " + std::to_string(r["line"].get<int>()) + ":"), std::string::npos)
          << msg;
    } else if (r["kind"] != "SyntaxError") {  // jinja2's own message, less a final period
      std::string want = r["error"].get<std::string>();
      if (!want.empty() && want.back() == '.') want.pop_back();
      EXPECT_NE(msg.find(want), std::string::npos) << msg;
    }
    ++errors;
  }
  EXPECT_GE(rendered, 60);
  EXPECT_GE(errors, 20);
}

TEST(Jinja, SyntaxErrorsNameTheTemplateAndLine) {
  struct Case {
    const char* source;
    const char* expect;
  };
  const Case cases[] = {
      {"a\n{% if x %}\nb", "my.jinja, line 3: unexpected end of template: expected '{% elif %}'"},
      {"a\n\n{% unknown %}", "my.jinja, line 3: unknown tag 'unknown'"},
      {"{{ x | nosuchfilter }}", "my.jinja, line 1: no filter named 'nosuchfilter'"},
      {"\n{{ x is nosuchtest }}", "my.jinja, line 2: no test named 'nosuchtest'"},
      {"{{ 'abc }}", "my.jinja, line 1: unterminated string literal"},
      {"x\n{{ 1 + }}", "my.jinja, line 2: expected an expression"},
      {"{{ (1 }}", "my.jinja, line 1: unexpected '}', expected ')'"},
      {"{% for x in y recursive %}{% endfor %}", "recursive loops are not supported"},
      {"{{ f(*args) }}", "*args and **kwargs in calls are not supported"},
      {"{% continue %}", "'continue' outside of a loop"},
      {"{% macro m() %}{% break %}{% endmacro %}", "'break' outside of a loop"},
      {"{{ x }", "line 1: unexpected '}'"},
      {"{# unclosed", "missing end of comment tag"},
      {"{% raw %} never ends", "missing end of raw directive"},
      {"{{ a ] }}", "unexpected ']'"},
      {"{% set x %}", "unexpected end of template"},
      {"{% if %}{% endif %}", "expected an expression"},
      {"{{ 'a' @ 'b' }}", "unexpected character '@'"},
  };
  for (const auto& c : cases) {
    auto t = Template::parse(c.source, "my.jinja");
    ASSERT_FALSE(t.is_ok()) << c.source;
    EXPECT_NE(t.status().message().find(c.expect), std::string::npos)
        << c.source << " -> " << t.status().message();
  }
}

TEST(Jinja, RuntimeErrorsNameTheLineTheyHappenOn) {
  const char* source =
      "{% for m in messages %}\n{% if m.role == 'bad' %}\n{{ raise_exception('no ' + m.role) }}\n"
      "{% endif %}\n{% endfor %}";
  Dict ctx;
  Dict bad;
  bad.set("role", Value("bad"));
  ctx.set("messages", Value(List{Value(std::move(bad))}));
  auto out = render(source, ctx, "chat.jinja");
  ASSERT_FALSE(out.is_ok());
  EXPECT_EQ(out.status().message(), "chat.jinja, line 3: no bad");
  out = render("{{ x }}\n\n{{ x.y.z }}", {}, "chat.jinja");
  ASSERT_FALSE(out.is_ok());
  EXPECT_EQ(out.status().message(), "chat.jinja, line 3: 'x' is undefined");
}

TEST(Jinja, RunawayRecursionAndDeepNestingAreErrorsNotCrashes) {
  auto out = render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}");
  ASSERT_FALSE(out.is_ok());
  EXPECT_NE(out.status().message().find("nested too deeply"), std::string::npos)
      << out.status().message();
  for (const std::string& deep :
       {std::string(5000, '(') + "1" + std::string(5000, ')'), std::string(5000, '-') + "1",
        std::string(5000, '[') + std::string(5000, ']'), [] {
          std::string s;
          for (int i = 0; i < 5000; ++i) s += "not ";
          return s + "1";
        }()}) {
    auto t = Template::parse("{{ " + deep + " }}", "deep.jinja");
    ASSERT_FALSE(t.is_ok());
  }
  std::string nested;
  for (int i = 0; i < 5000; ++i) nested += "{% if true %}";
  auto t = Template::parse(nested, "deep.jinja");
  ASSERT_FALSE(t.is_ok());
  EXPECT_NE(t.status().message().find("nested too deeply"), std::string::npos)
      << t.status().message();
  out = render("{{ ('x' * 1000000000) | length }}");
  ASSERT_FALSE(out.is_ok());
  EXPECT_NE(out.status().message().find("too large"), std::string::npos) << out.status().message();
  out = render("{{ range(1000000) | length }}");
  ASSERT_FALSE(out.is_ok());
  EXPECT_NE(out.status().message().find("range too big"), std::string::npos)
      << out.status().message();
}

TEST(Jinja, ATemplateRendersTheSameTwiceAndLeavesItsContextAlone) {
  auto t = Template::parse(
      "{% set ns = namespace(n=0) %}{% for x in xs %}{% set ns.n = ns.n + x %}{% endfor %}{{ ns.n "
      "}}",
      "t");
  ASSERT_TRUE(t.is_ok());
  Dict ctx;
  ctx.set("xs", Value(List{Value(1), Value(2)}));
  EXPECT_EQ(*t->render(ctx), "3");
  EXPECT_EQ(*t->render(ctx), "3");
  EXPECT_EQ(ctx.find("xs")->as_list().size(), 2u);
}

TEST(JinjaValue, PythonReprOfFloats) {
  // Python 3: repr(x) for these doubles.
  const std::pair<double, const char*> cases[] = {
      {0.1, "0.1"},
      {1.0, "1.0"},
      {-2.5, "-2.5"},
      {1e16, "1e+16"},
      {1e15, "1000000000000000.0"},
      {1.5e-5, "1.5e-05"},
      {0.0001, "0.0001"},
      {123456.789, "123456.789"},
      {1.7976931348623157e308, "1.7976931348623157e+308"},
      {5e-324, "5e-324"},
      {-0.0, "-0.0"},
      {100.0, "100.0"},
  };
  for (const auto& [d, want] : cases) EXPECT_EQ(python_float_repr(d), want) << d;
}

}  // namespace
}  // namespace strata::text::jinja
