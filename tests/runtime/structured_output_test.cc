// Structured output end to end on the demo model (models/demo): a batch job of a few hundred
// requests constrained by JSON Schemas (nested objects, arrays, enums, patterns, formats, anyOf,
// $ref, integer and number bounds), regexes and choices, mixed with free requests, sampled at
// temperature 1 with several seeds. Every answer that ends by itself is judged by independent
// validators (Python's jsonschema and re, tests/text/structured_check.py); answers cut by
// max_tokens say "length".
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "runtime/batch_job.h"
#include "runtime/context.h"
#include "runtime/load_model.h"
#include "testing/test_data.h"
#include "text/line_io.h"
#include "text/tokenizer.h"

namespace strata::runtime {
namespace {

using nlohmann::ordered_json;

const char* const kSchemas[] = {
    R"({"type":"object","properties":{"name":{"type":"string","maxLength":16},"age":{"type":"integer","minimum":0,"maximum":120},
        "city":{"type":"string","maxLength":10}},"required":["name","age"],"additionalProperties":false})",
    R"({"type":"object","properties":{"book":{"type":"string","enum":["Genesis","Exodus","Psalms","John"]},"chapter":{"type":"integer","minimum":1,"maximum":150},
        "verse":{"type":"integer","exclusiveMinimum":0,"exclusiveMaximum":177},"words":{"type":"array","items":{"type":"string","maxLength":8},"minItems":1,"maxItems":3}},
        "required":["book","chapter","verse","words"]})",
    R"({"type":"object","properties":{"person":{"type":"object","properties":{"first":{"type":"string","maxLength":8},"last":{"type":"string","maxLength":8},
        "tags":{"type":"array","items":{"enum":["a","b",1,null,true]},"maxItems":4}},"required":["first"]},"ok":{"type":"boolean"},"nothing":{"type":"null"}},
        "required":["person","ok"]})",
    R"({"type":"object","properties":{"id":{"type":"string","format":"uuid"},"day":{"type":"string","format":"date"},"when":{"type":"string","format":"date-time"},
        "mail":{"type":"string","format":"email"}},"required":["id","day","when","mail"]})",
    R"({"type":"object","properties":{"code":{"type":"string","pattern":"^[A-Z]{2}-[0-9]{3,4}$"},"score":{"type":"number","minimum":-1.5,"maximum":2.25},
        "ratio":{"type":"number","exclusiveMinimum":0,"exclusiveMaximum":1},"big":{"type":"integer","minimum":1000000}},"required":["code","score","ratio","big"]})",
    R"({"type":"object","properties":{"answer":{"anyOf":[{"type":"integer","minimum":-3,"maximum":3},{"type":"string","maxLength":6},{"type":"null"}]},
        "kind":{"oneOf":[{"const":"fruit"},{"const":"stone"}]},"maybe":{"type":["string","null"],"maxLength":5}},"required":["answer","kind","maybe"]})",
    R"({"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer","minimum":0,"maximum":9},"kids":{"type":"array","items":{"$ref":"#/$defs/node"},"maxItems":2}},
        "required":["v"]}},"type":"object","properties":{"tree":{"$ref":"#/$defs/node"}},"required":["tree"]})",
    R"({"type":"array","items":{"type":"object","properties":{"k":{"type":"string","enum":["x","y"]},"n":{"type":"number","minimum":0,"maximum":10}},"required":["k","n"]},
        "minItems":1,"maxItems":3})",
    R"({"type":"object","properties":{"title":{"type":"string","minLength":3,"maxLength":12},"year":{"type":"integer","minimum":1900,"maximum":2030},
        "extra":{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"string","pattern":"^(yes|no)$"}},"additionalProperties":false}},"required":["title","year"]})",
    R"({"type":"object","properties":{"note":{"type":"string","pattern":"^[a-z ]{1,20}$"},"level":{"type":"integer","maximum":-10,"minimum":-99}},"required":["note","level"]})",
};

const char* const kRegexes[] = {"[A-Z][a-z]{2,8}( [A-Z][a-z]{2,8})?", "\\d{3}-\\d{4}", "(yes|no|maybe), because [a-z ]{1,20}\\.",
                                "[0-9a-f]{8}", "(caf\xc3\xa9|na\xc3\xafve|\xce\xb1\xce\xb2) [^\\n]{0,10}!"};

TEST(StructuredOutput, EveryConstrainedAnswerValidatesOnTheDemoModel) {
  if (std::system("python3 -c 'import jsonschema' >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "python3 with jsonschema is missing (apt-get install python3-jsonschema)";
  const auto dir = testing::test_data_dir() / ".." / ".." / "models" / "demo";
  ContextOptions co;
  co.threads = 2;
  co.log_level = LogLevel::kWarn;
  auto ctx = make_context(co);
  ASSERT_TRUE(ctx.is_ok());
  auto model = load_model_dir(**ctx, dir);
  ASSERT_TRUE(model.is_ok()) << model.status().to_string();
  auto tok = text::Tokenizer::load_dir(dir);
  ASSERT_TRUE(tok.is_ok());

  const auto tmp = testing::make_temp_dir("strata-structured");
  const std::string in = (tmp / "in.jsonl").string(), out = (tmp / "out.jsonl").string();
  std::map<std::string, ordered_json> cases;  // custom_id -> {"kind", "constraint"}
  std::vector<std::string> lines;
  const char* const prompts[] = {"Data:", "And God said", "Answer in JSON.", "Fortune:"};
  auto add = [&](const std::string& id, ordered_json body, const std::string& kind, const ordered_json& constraint) {
    body["prompt"] = prompts[lines.size() % 4];
    body["temperature"] = 1.0;
    body["seed"] = static_cast<int>(lines.size()) * 7919 + 1;
    body["max_tokens"] = 160;
    lines.push_back(ordered_json({{"custom_id", id}, {"url", "/v1/completions"}, {"body", body}}).dump());
    if (!kind.empty()) cases[id] = {{"kind", kind}, {"constraint", constraint}};
  };
  int n = 0;
  for (int seed = 0; seed < 24; ++seed) {
    for (size_t s = 0; s < std::size(kSchemas); ++s) {
      const ordered_json schema = ordered_json::parse(kSchemas[s]);
      ordered_json body;
      if ((seed + s) % 2 == 0) body["response_format"] = {{"type", "json_schema"}, {"json_schema", {{"name", "s" + std::to_string(s)}, {"schema", schema}, {"strict", true}}}};
      else body["guided_json"] = schema;
      add("schema" + std::to_string(s) + "-" + std::to_string(seed), body, "schema", schema);
      ++n;
    }
    if (seed < 8)
      for (size_t r = 0; r < std::size(kRegexes); ++r) add("regex" + std::to_string(r) + "-" + std::to_string(seed), {{"guided_regex", kRegexes[r]}}, "regex", kRegexes[r]);
    if (seed < 8) {
      const ordered_json choices = {"positive", "negative", "neutral", "pos"};
      add("choice-" + std::to_string(seed), {{"guided_choice", choices}}, "choice", choices);
      add("object-" + std::to_string(seed), {{"response_format", {{"type", "json_object"}}}}, "json_object", nullptr);
      add("free-" + std::to_string(seed), ordered_json::object(), "", nullptr);
    }
  }
  ASSERT_GE(n, 200);
  {
    auto w = text::RecordWriter::open(in);
    ASSERT_TRUE(w.is_ok());
    for (const auto& l : lines) ASSERT_TRUE((*w)->append(l).is_ok());
  }
  BatchJobOptions o;
  o.input = in;
  o.output = out;
  o.batch_size = 32;
  o.window = 64;
  o.model_name = "demo";
  o.progress.quiet = true;
  auto sum = run_batch_job(**model, **tok, o, (*ctx)->logger);
  ASSERT_TRUE(sum.is_ok()) << sum.status().to_string();

  // Judge every answer that ended by itself; count those cut at max_tokens.
  std::ifstream f(out);
  std::string line;
  const std::string judged = (tmp / "judge.jsonl").string();
  std::ofstream j(judged);
  int stopped = 0, cut = 0, free = 0;
  while (std::getline(f, line)) {
    const auto r = ordered_json::parse(line);
    const std::string id = r["custom_id"];
    ASSERT_TRUE(r["error"].is_null()) << line;
    const auto& choice = r["response"]["body"]["choices"][0];
    auto it = cases.find(id);
    if (it == cases.end()) {
      ++free;
      continue;
    }
    if (choice["finish_reason"] == "length") {
      ++cut;
      continue;
    }
    ASSERT_EQ(choice["finish_reason"], "stop") << line;
    ++stopped;
    j << ordered_json({{"id", id}, {"kind", it->second["kind"]}, {"constraint", it->second["constraint"]}, {"text", choice["text"]}}).dump()
      << "\n";
  }
  j.close();
  EXPECT_EQ(free, 8);
  EXPECT_EQ(stopped + cut + free, static_cast<int>(lines.size()));
  EXPECT_GE(stopped, 200) << "answers cut at max_tokens: " << cut;
  const auto script = testing::test_data_dir() / ".." / "text" / "structured_check.py";
  const std::string report_path = (tmp / "judge.out").string();
  const int rc = std::system(("python3 " + script.string() + " " + judged + " > " + report_path + " 2>&1").c_str());
  std::ifstream rep(report_path);
  const std::string report((std::istreambuf_iterator<char>(rep)), std::istreambuf_iterator<char>());
  EXPECT_EQ(WEXITSTATUS(rc), 0) << report;
  std::printf("structured output: %d answers validated, %d cut at max_tokens, %d free; %s", stopped, cut, free, report.c_str());
}

}  // namespace
}  // namespace strata::runtime
