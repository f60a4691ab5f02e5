// Constraints (regex, choice, JSON Schema) against independent judges: Python's re and the
// jsonschema package decide, through tests/text/structured_check.py, whether the texts the
// automata accept (hand-made tables and random walks over each automaton) really satisfy their
// constraint. Unsupported constructs are errors that name them and their path.
#include "text/constraint.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "testing/test_data.h"
#include "text/token_trie.h"
#include "text/tokenizer.h"

namespace strata::text {
namespace {

using ojson = nlohmann::ordered_json;

// -1: refused at some byte; 0: a prefix; 1: complete.
int run(const Constraint& c, const std::string& s) {
  ConstraintState st = c.start();
  for (unsigned char b : s)
    if (!st.feed(b)) return -1;
  return st.complete() ? 1 : 0;
}

std::shared_ptr<const Constraint> regex(const std::string& p) {
  auto c = Constraint::regex(p, "guided_regex");
  EXPECT_TRUE(c.is_ok()) << p << ": " << c.status().to_string();
  return c.is_ok() ? *c : nullptr;
}

std::shared_ptr<const Constraint> schema(const std::string& s) {
  auto c = Constraint::json_schema(ojson::parse(s), "schema");
  EXPECT_TRUE(c.is_ok()) << s << ": " << c.status().to_string();
  return c.is_ok() ? *c : nullptr;
}

// A random text the constraint accepts whole, walked byte by byte (closing bytes and ASCII
// preferred so that walks end); nullopt when max_len is reached first. Fails the test when a
// state that is not complete allows no byte at all (a dead end the masks would hit).
std::optional<std::string> random_text(const Constraint& c, std::mt19937& rng, size_t max_len) {
  ConstraintState st = c.start();
  std::string text;
  while (text.size() < max_len) {
    if (st.complete() && (st.dead_end() || rng() % 3 == 0)) return text;
    std::vector<unsigned char> ok, ascii, closers;
    for (int b = 0; b < 256; ++b) {
      ConstraintState t = st;
      if (!t.feed(static_cast<unsigned char>(b))) continue;
      ok.push_back(static_cast<unsigned char>(b));
      if (b >= 0x20 && b < 0x7F) ascii.push_back(static_cast<unsigned char>(b));
      if (b == '"' || b == '}' || b == ']') closers.push_back(static_cast<unsigned char>(b));
    }
    if (ok.empty()) {
      ADD_FAILURE() << "dead end after '" << text << "'";
      return std::nullopt;
    }
    const unsigned r = rng() % 10;
    const auto& from = (r < 5 && !closers.empty()) ? closers : (r < 9 && !ascii.empty()) ? ascii : ok;
    const unsigned char b = from[rng() % from.size()];
    EXPECT_TRUE(st.feed(b));
    text += static_cast<char>(b);
  }
  return std::nullopt;
}

struct Case {
  std::string id, kind;
  ojson constraint;
  std::string text;
  bool expect;
  // Only what the engine accepts is judged: it may refuse strings Python matches (\D, \W and
  // negated classes with shorthands stay in ASCII).
  bool sound_only = false;
};

// Runs the Python judge over `cases`; skips when python3 or jsonschema is missing.
void judge(const std::vector<Case>& cases, const std::string& name) {
  if (std::system("python3 -c 'import jsonschema' >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "python3 with jsonschema is missing (apt-get install python3-jsonschema)";
  const auto dir = testing::make_temp_dir("strata-structured");
  const std::string in = (dir / (name + ".jsonl")).string(), out = (dir / (name + ".out")).string();
  {
    std::ofstream f(in);
    for (const auto& c : cases) {
      if (c.sound_only && !c.expect) continue;
      f << ojson({{"id", c.id}, {"kind", c.kind}, {"constraint", c.constraint}, {"text", c.text}, {"expect", c.expect}})
               .dump(-1, ' ', false, ojson::error_handler_t::replace)
        << "\n";
    }
  }
  const auto script = testing::test_data_dir() / ".." / "text" / "structured_check.py";
  const int rc = std::system(("python3 " + script.string() + " " + in + " > " + out + " 2>&1").c_str());
  std::ifstream r(out);
  const std::string report((std::istreambuf_iterator<char>(r)), std::istreambuf_iterator<char>());
  EXPECT_EQ(WEXITSTATUS(rc), 0) << report;
}

TEST(RegexConstraint, AcceptsWhatPythonFullmatchAccepts) {
  const std::vector<std::string> patterns = {
      "abc", "a|bc|", "(ab)*c?", "[a-c]{2,3}x+", "\\d{3}-\\d{4}", "[^0-9]+", "\\w+@\\w+\\.com", "(?:yes|no|maybe)",
      "caf\xc3\xa9|na\xc3\xafve", ".{2}", "[\\s\\S]{0,2}", "\\W\\D\\S", "x{2}y{,2}z{1,}", "[-a]\\.[]a]", "(a|ab)(c|bcd)",
      "\\x41\\u00e9", "[^\\d]", "[\xce\xb1-\xcf\x89]+", "^anchored$", "a+?b*?", "\\(\\)\\[\\]\\{\\}\\*"};
  const std::vector<std::string> texts = {
      "", "a", "ab", "abc", "bc", "ababc", "c", "acx", "abcxx", "555-1234", "55-1234", "xyz", "x1", "foo@bar.com",
      "maybe", "caf\xc3\xa9", "na\xc3\xafve", "\xc3\xa9\xc3\xa9", "\n\n", "a\n", " ", "!a ", "!x!", "xxz", "xxyyzz",
      "-.a", "a.]", "abcd", "acd", "Ae", "A\xc3\xa9", "\xd9\xa3", "\xce\xb2\xce\xb3", "anchored", "ab", "aabbb",
      "()[]{}*", "9", "abbcd"};
  std::vector<Case> cases;
  int accepted = 0;
  for (const auto& p : patterns) {
    auto c = regex(p);
    ASSERT_TRUE(c);
    for (const auto& t : texts) {
      const bool ok = run(*c, t) == 1;
      accepted += ok;
      const bool narrowed = p.find("\\D") != std::string::npos || p.find("\\W") != std::string::npos || p == "[^\\d]";
      cases.push_back({p + " / " + t, "regex", p, t, ok, narrowed});
    }
    std::mt19937 rng(7);
    for (int i = 0; i < 20; ++i)
      if (auto t = random_text(*c, rng, 64)) cases.push_back({p + " walk", "regex", p, *t, true});
  }
  EXPECT_GT(accepted, 30);
  judge(cases, "regex");
}

TEST(RegexConstraint, UnsupportedConstructsAreNamed) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"(a)\\1", "backreference"}, {"a(?=b)", "lookaround"}, {"a(?!b)", "lookaround"}, {"(?<=a)b", "lookaround"},
      {"\\bword", "word boundary"}, {"(?i)abc", "group extension"}, {"a^b", "anchor"}, {"\\p{L}", "Unicode property"},
      {"a++", "possessive"}, {"a{2000}", "above 1000"}, {"(ab", "missing ')'"}, {"[ab", "missing ']'"}, {"*a", "nothing to repeat"},
      {"a*{2}", "multiple repeat"}, {"[a-z]+{0,100}", "multiple repeat"}, {"a?*", "multiple repeat"}};
  for (const auto& [p, want] : bad) {
    auto c = Constraint::regex(p, "guided_regex");
    ASSERT_FALSE(c.is_ok()) << p;
    EXPECT_NE(c.status().message().find(want), std::string::npos) << p << ": " << c.status().message();
    EXPECT_NE(c.status().message().find("guided_regex"), std::string::npos) << c.status().message();
  }
}

TEST(ChoiceConstraint, ExactlyOneOfTheStrings) {
  auto c = Constraint::choice({"positive", "negative", "neutral", "pos"}, "guided_choice");
  ASSERT_TRUE(c.is_ok());
  EXPECT_EQ(run(**c, "positive"), 1);
  EXPECT_EQ(run(**c, "pos"), 1);
  EXPECT_EQ(run(**c, "posi"), 0);
  EXPECT_EQ(run(**c, "neutrals"), -1);
  EXPECT_EQ(run(**c, ""), 0);
  ConstraintState s = (*c)->start();
  for (unsigned char b : std::string("neutral")) ASSERT_TRUE(s.feed(b));
  EXPECT_TRUE(s.dead_end());  // nothing may follow: the sequence ends
  EXPECT_FALSE(Constraint::choice({}, "guided_choice").is_ok());
}

const char* const kSchemas[] = {
    // Required and optional properties, nested object, additionalProperties false.
    R"({"type":"object","properties":{"name":{"type":"string","maxLength":12},"age":{"type":"integer","minimum":0,"maximum":130},
        "email":{"type":"string","format":"email"},"address":{"type":"object","properties":{"city":{"type":"string","minLength":1,"maxLength":8},
        "zip":{"type":"string","pattern":"^[0-9]{5}$"}},"required":["city"],"additionalProperties":false}},
        "required":["name","age"],"additionalProperties":false})",
    // Arrays with bounds, enums, booleans, null.
    R"({"type":"object","properties":{"tags":{"type":"array","items":{"type":"string","enum":["a","b","c d"]},"minItems":1,"maxItems":3},
        "ok":{"type":"boolean"},"none":{"type":"null"},"mixed":{"enum":[1,"two",null,{"x":[3]},2.5]}},"required":["tags","ok","mixed"]})",
    // Formats and const.
    R"({"type":"object","properties":{"id":{"type":"string","format":"uuid"},"day":{"type":"string","format":"date"},
        "at":{"type":"string","format":"date-time"},"t":{"type":"string","format":"time"},"v":{"const":"v1"}},"required":["id","day","at","t","v"]})",
    // Number and integer bounds, exclusive ones, type arrays.
    R"({"type":"object","properties":{"p":{"type":"number","exclusiveMinimum":0.1,"maximum":2.5},"q":{"type":"integer","exclusiveMinimum":-7,"exclusiveMaximum":12},
        "r":{"type":["integer","null"],"minimum":1000,"maximum":1234},"s":{"type":"number","minimum":-0.333333,"maximum":-0.000001},
        "u":{"type":"number"},"w":{"type":"integer","maximum":-3}},"required":["p","q","r","s","u","w"]})",
    // anyOf, oneOf with disjoint alternatives, allOf of one.
    R"({"type":"object","properties":{"value":{"anyOf":[{"type":"string","maxLength":5},{"type":"integer","minimum":5,"maximum":9},{"type":"array","items":{"type":"boolean"},"maxItems":2}]},
        "kind":{"oneOf":[{"const":"cat"},{"type":"integer","minimum":0,"maximum":3}]},"all":{"allOf":[{"type":"string","pattern":"^x+$"}]}},"required":["value","kind","all"]})",
    // $ref to $defs, recursion (a tree), definitions.
    R"({"$defs":{"node":{"type":"object","properties":{"label":{"type":"string","maxLength":4},"children":{"type":"array","items":{"$ref":"#/$defs/node"},"maxItems":2}},"required":["label"]}},
        "type":"object","properties":{"root":{"$ref":"#/$defs/node"},"extra":{"$ref":"#/definitions/e"}},"required":["root"],
        "definitions":{"e":{"type":"string","enum":["p","q"]}}})",
    // Untyped values, objects without properties, an unanchored pattern.
    R"({"type":"object","properties":{"any":{},"obj":{"type":"object"},"free":{"type":"string","pattern":"b[0-9]?"},"arr":{"type":"array","maxItems":2}},"required":["any","obj","free"]})",
    // A top-level array and a top-level string.
    R"({"type":"array","items":{"type":"integer","minimum":-2,"maximum":2},"minItems":2,"maxItems":4})",
    R"({"type":"string","pattern":"^[A-Z][a-z]{1,3}( [A-Z][a-z]{1,3})?$"})",
};

TEST(JsonSchemaConstraint, RandomWalksValidateWithJsonschema) {
  std::vector<Case> cases;
  int n = 0;
  for (const char* s : kSchemas) {
    auto c = schema(s);
    ASSERT_TRUE(c) << s;
    std::mt19937 rng(11 + n);
    int found = 0;
    for (int i = 0; i < 60; ++i)
      if (auto t = random_text(*c, rng, 1500)) {
        cases.push_back({"schema " + std::to_string(n) + " walk " + std::to_string(i), "schema", ojson::parse(s), *t, true});
        ++found;
      }
    EXPECT_GT(found, 10) << s;
    ++n;
  }
  judge(cases, "schema");
}

TEST(JsonSchemaConstraint, HandMadeTextsAgreeWithJsonschema) {
  const std::string s0 = kSchemas[0], s3 = kSchemas[3], s5 = kSchemas[5];
  const std::vector<std::pair<std::string, std::string>> texts = {
      {s0, R"({"name":"Ann","age":30})"},
      {s0, R"({"name": "Ann", "age": 30, "email": "a.b@c-d.org"})"},
      {s0, R"({"age":30,"name":"Ann"})"},                   // not in schema order: refused
      {s0, R"({"name":"Ann","age":131})"},                  // above maximum
      {s0, R"({"name":"Ann","age":-1})"},
      {s0, R"({"name":"Ann","age":30,"other":1})"},         // not a listed property
      {s0, R"({"name":"Ann","age":30,"address":{"city":"Oslo","zip":"1234"}})"},
      {s0, R"({"name":"Ann","age":30,"address":{"city":"Oslo","zip":"12345"}})"},
      {s0, R"({"name":"Ann\"s","age":30})"},
      {s0, R"({"name":"aaaaaaaaaaaaa","age":3})"},           // 13 characters
      {s3, R"({"p":0.1,"q":0,"r":null,"s":-0.1,"u":1,"w":-3})"},  // p must be > 0.1
      {s3, R"({"p":0.100001,"q":-6,"r":1234,"s":-0.333333,"u":-0.5,"w":-4})"},
      {s3, R"({"p":2.5,"q":11,"r":1000,"s":-0.000001,"u":0,"w":-100})"},
      {s3, R"({"p":2.500001,"q":11,"r":1000,"s":-0.000001,"u":0,"w":-100})"},
      {s3, R"({"p":1,"q":12,"r":1000,"s":-0.1,"u":0,"w":-3})"},
      {s3, R"({"p":1,"q":-7,"r":1000,"s":-0.1,"u":0,"w":-3})"},
      {s3, R"({"p":1,"q":1,"r":999,"s":-0.1,"u":0,"w":-3})"},
      {s3, R"({"p":1,"q":1,"r":1000,"s":-0.3333331,"u":0,"w":-3})"},
      {s5, R"({"root":{"label":"a","children":[{"label":"b","children":[{"label":"c"}]}]},"extra":"q"})"},
      {s5, R"({"root":{"label":"a","children":[{"label":"b"},{"label":"c"},{"label":"d"}]}})"},
  };
  std::vector<Case> cases;
  int accepted = 0, refused = 0;
  for (const auto& [s, t] : texts) {
    auto c = schema(s);
    ASSERT_TRUE(c);
    const bool ok = run(*c, t) == 1;
    (ok ? accepted : refused)++;
    // What the automaton accepts must validate; what it refuses is checked by hand below (the
    // automaton writes one spelling of a value, so it may refuse valid texts).
    if (ok) cases.push_back({t, "schema", ojson::parse(s), t, true});
  }
  EXPECT_EQ(accepted, 7);
  EXPECT_EQ(refused, 13);
  EXPECT_EQ(run(*schema(s0), R"({"age":30,"name":"Ann"})"), -1);
  EXPECT_EQ(run(*schema(s3), R"({"p":0.1,)"), -1);
  judge(cases, "schema_hand");
}

TEST(JsonSchemaConstraint, UnsupportedKeywordsAreErrorsNamingThePath) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {R"({"type":"object","properties":{"a":{"type":"string","not":{"const":"x"}}}})", "'not' at '/properties/a/not'"},
      {R"({"type":"object","patternProperties":{"^x":{}}})", "'patternProperties' at '/patternProperties'"},
      {R"({"if":{"type":"string"},"then":{"minLength":1}})", "'if' at '/if'"},
      {R"({"type":"array","items":{"type":"integer"},"uniqueItems":true})", "'uniqueItems' at '/uniqueItems'"},
      {R"({"type":"number","multipleOf":3})", "'multipleOf' at '/multipleOf'"},
      {R"({"type":"object","additionalProperties":{"type":"string"}})", "'additionalProperties' at '/additionalProperties'"},
      {R"({"type":"string","format":"hostname"})", "format 'hostname'"},
      {R"({"$ref":"http://example.com/s.json"})", "'$ref' at '/$ref'"},
      {R"({"$ref":"#/$defs/missing"})", "points at nothing"},
      {R"({"type":"object","properties":{"a":{"type":"integer","minimum":5,"maximum":4}}})", "no integer meets the bounds"},
      {R"({"type":"object","required":["b"],"properties":{"a":{}}})", "'b' is not in properties"},
      {R"({"type":"strin"})", "unknown type 'strin'"},
      {R"({"type":"array","maxItems":100000})", "'maxItems'"},
      {R"({"type":"string","pattern":"(a)\\1"})", "backreference"},
      {R"({"type":"integer","exclusiveMinimum":true,"minimum":1})", "'exclusiveMinimum'"},
  };
  for (const auto& [s, want] : bad) {
    auto c = Constraint::json_schema(ojson::parse(s), "response_format.json_schema.schema");
    ASSERT_FALSE(c.is_ok()) << s;
    EXPECT_NE(c.status().message().find(want), std::string::npos) << s << "\n" << c.status().message();
    EXPECT_NE(c.status().message().find("response_format.json_schema.schema"), std::string::npos) << c.status().message();
  }
}

TEST(JsonSchemaConstraint, EndsExactlyWhenTheValueIsWhole) {
  auto c = schema(R"({"type":"object","properties":{"a":{"type":"integer","minimum":0,"maximum":99}},"required":["a"]})");
  ConstraintState s = c->start();
  for (unsigned char b : std::string("{\"a\": 4")) ASSERT_TRUE(s.feed(b));
  EXPECT_FALSE(s.complete());
  ConstraintState more = s;
  EXPECT_TRUE(more.feed('2'));
  EXPECT_FALSE(more.feed('3'));  // 423 > 99
  ASSERT_TRUE(s.feed('}'));
  EXPECT_TRUE(s.complete());
  EXPECT_TRUE(s.dead_end());
  // A recursive schema that needs an endless value is cut at the depth bound: no text completes.
  auto endless = schema(R"({"$defs":{"n":{"type":"object","properties":{"c":{"$ref":"#/$defs/n"}},"required":["c"]}},"$ref":"#/$defs/n"})");
  ConstraintState e = endless->start();
  std::string text;
  for (int i = 0; i < 200 && !e.dead_end(); ++i) {
    const std::string step = "{\"c\":";
    bool ok = true;
    for (unsigned char b : step) ok = ok && e.feed(b);
    if (!ok) break;
    text += step;
  }
  EXPECT_FALSE(e.complete());
  EXPECT_LT(text.size(), 200u * 5);
}

}  // namespace
}  // namespace strata::text
namespace strata::text {
namespace {
// A byte-level BPE vocabulary spells some characters across tokens (é as two one-byte tokens):
// the trie holds their raw bytes, so a constraint that needs such a character is never stuck.
TEST(TokenTrieConstraint, PartialUtf8TokensCarryTheirBytes) {
  auto tok = Tokenizer::load_dir(testing::test_data_dir() / ".." / ".." / "models" / "demo");
  ASSERT_TRUE(tok.is_ok());
  TokenTrie trie(**tok, (*tok)->vocab_size());
  auto c = regex("(caf\xc3\xa9|na\xc3\xafve|\xce\xb1\xce\xb2) [^\\n]{0,10}!");
  std::vector<uint8_t> a1, a2, a3;
  ConstraintState s0 = c->start();
  trie.allowed(s0, a1);
  for (size_t t1 = 0; t1 < a1.size(); ++t1) {
    if (!a1[t1]) continue;
    ConstraintState s1 = s0;
    for (unsigned char b : trie.text(static_cast<int32_t>(t1))) ASSERT_TRUE(s1.feed(b));
    trie.allowed(s1, a2);
    for (size_t t2 = 0; t2 < a2.size(); ++t2) {
      if (!a2[t2]) continue;
      ConstraintState s2 = s1;
      for (unsigned char b : trie.text(static_cast<int32_t>(t2))) ASSERT_TRUE(s2.feed(b));
      trie.allowed(s2, a3);
      int n = 0;
      for (auto x : a3) n += x;
      if (n == 0 && !s2.complete()) {
        std::string bytes;
        for (unsigned char b : trie.text(static_cast<int32_t>(t1)) + "|" + trie.text(static_cast<int32_t>(t2))) {
          char buf[8]; snprintf(buf, 8, "%02x ", b); bytes += buf;
        }
        ADD_FAILURE() << "stuck after " << bytes;
        return;
      }
    }
  }
}
}  // namespace
}  // namespace strata::text

#include "text/batch_request.h"

namespace strata::text {
namespace {

// The request fields that ask for structured output: read in the request's key order, one per
// request, malformed ones named.
TEST(StructuredRequest, FieldsAreReadAndCheckedWithTheirNames) {
  auto parse = [](const std::string& body) {
    return parse_request_line(R"({"custom_id": "c", "prompt": "x", )" + body + "}", 3);
  };
  const ParsedLine schema = parse(
      R"("response_format": {"type": "json_schema", "json_schema": {"name": "n", "strict": true, "schema": {"type": "object", "properties": {"z": {}, "a": {}}}}})");
  ASSERT_TRUE(schema.request) << schema.error.message;
  ASSERT_TRUE(schema.request->constraint);
  EXPECT_EQ(schema.request->constraint->kind, ConstraintSpec::Kind::kJsonSchema);
  EXPECT_LT(schema.request->constraint->source.find("\"z\""), schema.request->constraint->source.find("\"a\""))
      << "properties keep the request's order";
  const ParsedLine guided = parse(R"("guided_json": "{\"type\": \"integer\"}")");
  ASSERT_TRUE(guided.request) << guided.error.message;
  EXPECT_EQ(guided.request->constraint->field, "guided_json");
  const ParsedLine regex = parse(R"("guided_regex": "a+")");
  ASSERT_TRUE(regex.request);
  EXPECT_EQ(regex.request->constraint->kind, ConstraintSpec::Kind::kRegex);
  const ParsedLine choice = parse(R"("guided_choice": ["x", "y"])");
  ASSERT_TRUE(choice.request);
  EXPECT_EQ(choice.request->constraint->choices, (std::vector<std::string>{"x", "y"}));
  const ParsedLine ignored = parse_request_line(
      R"({"custom_id": "c", "prompt": "x", "response_format": {"type": 5}, "guided_grammar": "g"})", 3,
      {.ignore_unknown_fields = true});
  ASSERT_TRUE(ignored.request) << ignored.error.message;  // both left out, as if absent
  EXPECT_FALSE(ignored.request->constraint);
  const ParsedLine text = parse(R"("response_format": {"type": "text"})");
  ASSERT_TRUE(text.request);
  EXPECT_FALSE(text.request->constraint);

  const std::vector<std::pair<std::string, std::string>> bad = {
      {R"("guided_regex": "a", "guided_choice": ["a"])", "give only one of"},
      {R"("response_format": {"type": "json_object"}, "guided_json": {})", "give only one of"},
      {R"("guided_choice": [])", "'guided_choice' must be a non-empty array"},
      {R"("guided_choice": ["a", 1])", "'guided_choice' must hold non-empty strings"},
      {R"("guided_regex": 5)", "'guided_regex' must be a string"},
      {R"("guided_json": "{not json")", "'guided_json' must be a JSON Schema"},
      {R"("response_format": {"type": "json_schema", "json_schema": {"schema": {}}})", "'response_format.json_schema.name'"},
      {R"("response_format": {"type": "json_schema", "json_schema": {"name": "n"}})", "'response_format.json_schema.schema'"},
      {R"("response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {}, "extra": 1}})",
       "'response_format.json_schema.extra'"},
      {R"("response_format": {"type": "json_schema"})", "'response_format.json_schema' must be an object"},
  };
  for (const auto& [body, want] : bad) {
    const ParsedLine p = parse(body);
    ASSERT_FALSE(p.request) << body;
    EXPECT_NE(p.error.message.find(want), std::string::npos) << body << "\n" << p.error.message;
    EXPECT_NE(p.error.message.find("line 3"), std::string::npos) << p.error.message;
  }
}

}  // namespace
}  // namespace strata::text
