// The batch job of `strata generate`, in process, on the llama_text fixture (a tiny Llama with a
// real tokenizer, tests/data/make_text_fixture.py): greedy text equals transformers' own, bad
// lines become error lines, stop strings, .zst in and out, resume after a torn line.
#include "runtime/batch_job.h"

#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "runtime/context.h"
#include "runtime/load_model.h"
#include "testing/test_data.h"
#include "text/json_automaton.h"
#include "text/line_io.h"
#include "text/tokenizer.h"

namespace strata::runtime {
namespace {

using nlohmann::json;

constexpr float kNearTie = 1e-3f;  // greedy choices closer than this may differ across machines

class BatchJobTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::filesystem::path(testing::test_data_dir() / "fixtures" / "llama_text");
    ContextOptions o;
    o.threads = 2;
    o.log_level = LogLevel::kWarn;
    ctx_ = make_context(o).value().release();
    model_ = load_model_dir(*ctx_, *dir_).value().release();
    tok_ = text::Tokenizer::load_dir(*dir_).value().release();
    std::ifstream in(*dir_ / "reference.json");
    ref_ = new json(json::parse(in));
  }
  static void TearDownTestSuite() {
    delete ref_;
    delete tok_;
    delete model_;
    delete ctx_;
    delete dir_;
  }

  BatchJobOptions options(const std::string& in, const std::string& out) {
    BatchJobOptions o;
    o.input = in;
    o.output = out;
    o.temperature = 0;
    o.max_tokens = 24;
    o.batch_size = 4;
    o.window = 8;
    o.model_name = "llama_text";
    o.progress.quiet = true;
    return o;
  }
  static void write_lines(const std::string& path, const std::vector<std::string>& lines) {
    auto w = text::RecordWriter::open(path);
    ASSERT_TRUE(w.is_ok());
    for (const auto& l : lines) ASSERT_TRUE((*w)->append(l).is_ok());
  }
  // Output records in the order written.
  static std::vector<json> read_records(const std::string& path) {
    std::vector<json> out;
    auto r = text::LineReader::open(path);
    EXPECT_TRUE(r.is_ok());
    std::string line;
    while (r.is_ok()) {
      auto more = (*r)->next(line);
      if (!more.is_ok() || !*more) break;
      out.push_back(json::parse(line));
    }
    return out;
  }
  // Output records by custom_id (null ids keyed "#line").
  static std::multimap<std::string, json> read_results(const std::string& path) {
    std::multimap<std::string, json> out;
    for (json& j : read_records(path)) {
      const std::string key = j["custom_id"].is_string() ? j["custom_id"].get<std::string>()
                                                         : "#" + std::to_string(j["error"]["line"].get<int>());
      out.emplace(key, std::move(j));
    }
    return out;
  }
  // Request i of mixed_length_requests answers this many tokens: 2..25 for i = 0..23, each once.
  static int answer_length(int i) { return 2 + (i * 7) % 24; }
  // n requests "c0", "c1", ... of answer_length(i) tokens each (ignore_eos).
  static std::vector<std::string> mixed_length_requests(int n) {
    std::vector<std::string> lines;
    for (int i = 0; i < n; ++i)
      lines.push_back(json({{"custom_id", "c" + std::to_string(i)}, {"prompt", "Once upon a time " + std::to_string(i)},
                            {"max_tokens", answer_length(i)}, {"ignore_eos", true}}).dump());
    return lines;
  }
  static std::string text_of(const json& result) {
    const auto& c = result["response"]["body"]["choices"][0];
    return c.contains("text") ? c["text"].get<std::string>() : c["message"]["content"].get<std::string>();
  }
  // One request line per reference case (the OpenAI Batch form), greedy.
  static std::vector<std::string> reference_requests() {
    std::vector<std::string> lines;
    for (size_t i = 0; i < (*ref_)["cases"].size(); ++i) {
      const auto& c = (*ref_)["cases"][i];
      json body = {{"max_tokens", c["max_tokens"]}, {"temperature", 0}};
      std::string url = "/v1/completions";
      if (c["kind"] == "chat") {
        body["messages"] = c["messages"];
        url = "/v1/chat/completions";
      } else {
        body["prompt"] = c["prompt"];
      }
      lines.push_back(json({{"custom_id", "r" + std::to_string(i)}, {"method", "POST"}, {"url", url}, {"body", body}}).dump());
    }
    return lines;
  }
  Result<BatchSummary> run(const BatchJobOptions& o) { return run_batch_job(*model_, *tok_, o, ctx_->logger); }

  static std::filesystem::path* dir_;
  static Context* ctx_;
  static compute::Transformer* model_;
  static text::Tokenizer* tok_;
  static json* ref_;
};
std::filesystem::path* BatchJobTest::dir_ = nullptr;
Context* BatchJobTest::ctx_ = nullptr;
compute::Transformer* BatchJobTest::model_ = nullptr;
text::Tokenizer* BatchJobTest::tok_ = nullptr;
json* BatchJobTest::ref_ = nullptr;

TEST_F(BatchJobTest, GreedyTextEqualsTransformers) {
  const auto tmp = testing::make_temp_dir("strata-batch");
  const std::string in = (tmp / "in.jsonl").string(), out = (tmp / "out.jsonl").string();
  auto lines = reference_requests();
  // The same first prompt as token ids, in the plain form.
  lines.push_back(json({{"custom_id", "ids"}, {"prompt", (*ref_)["cases"][0]["prompt_ids"]}, {"max_tokens", 24}}).dump());
  write_lines(in, lines);
  for (const bool continuous : {false, true}) {
    SCOPED_TRACE(continuous ? "continuous" : "fixed blocks");
    BatchJobOptions o = options(in, out);
    o.continuous = continuous;
    o.overwrite = true;
    auto sum = run(o);
    ASSERT_TRUE(sum.is_ok()) << sum.status().to_string();
    EXPECT_EQ(sum->ok, static_cast<int64_t>(lines.size()));
    EXPECT_EQ(sum->failed, 0);
    if (continuous) {
      EXPECT_GT(sum->refills, 0);  // 4 slots, windows of 8: the second 4 of a window take finished slots
    } else {
      EXPECT_GE(sum->blocks, 4);  // 14 requests in blocks of 4
      EXPECT_EQ(sum->refills, 0);
    }
    auto results = read_results(out);
    int compared = 0;
    for (size_t i = 0; i < (*ref_)["cases"].size(); ++i) {
      const auto& c = (*ref_)["cases"][i];
      const auto& r = results.find("r" + std::to_string(i))->second;
      SCOPED_TRACE("case " + std::to_string(i));
      const auto& body = r["response"]["body"];
      EXPECT_EQ(body["object"], c["kind"] == "chat" ? "chat.completion" : "text_completion");
      EXPECT_EQ(body["usage"]["prompt_tokens"], c["prompt_ids"].size());
      if (c["min_top2_margin"].get<float>() < kNearTie) continue;
      EXPECT_EQ(text_of(r), c["text"].get<std::string>());
      EXPECT_EQ(body["choices"][0]["finish_reason"], c["finish_reason"]);
      EXPECT_EQ(body["usage"]["completion_tokens"], c["generated"].size());
      ++compared;
    }
    EXPECT_GE(compared, 9);
    EXPECT_EQ(text_of(results.find("ids")->second), text_of(results.find("r0")->second));
  }
}

// Continuous batching writes the shortest answer first (an eighth of the first slots go to the
// shortest), and every request gets exactly its max_tokens (ignore_eos) whatever slot it ran in.
TEST_F(BatchJobTest, ContinuousBatchingAnswersEveryRequestAndTheShortestFirst) {
  const auto tmp = testing::make_temp_dir("strata-batch");
  const std::string in = (tmp / "in.jsonl").string(), out = (tmp / "out.jsonl").string();
  write_lines(in, mixed_length_requests(24));
  BatchJobOptions o = options(in, out);
  o.batch_size = 8;
  o.window = 24;
  auto sum = run(o);
  ASSERT_TRUE(sum.is_ok()) << sum.status().to_string();
  EXPECT_EQ(sum->ok, 24);
  EXPECT_GT(sum->refills, 0);
  const std::vector<json> records = read_records(out);
  ASSERT_EQ(records.size(), 24u);
  std::set<std::string> ids;
  for (const auto& rec : records) {
    const int i = std::stoi(rec["custom_id"].get<std::string>().substr(1));
    ids.insert(rec["custom_id"].get<std::string>());
    EXPECT_EQ(rec["response"]["body"]["usage"]["completion_tokens"], answer_length(i)) << rec["custom_id"];
  }
  EXPECT_EQ(ids.size(), 24u);
  EXPECT_EQ(records.front()["response"]["body"]["usage"]["completion_tokens"], 2);  // c0, the shortest
}

// When the job looks at its first block (generate's recalibration), the continuous schedule runs
// that block alone with the middle answer lengths, so it pads little, then runs the rest
// continuously: the first results are the middle lengths, every answer has its length.
TEST_F(BatchJobTest, AFirstBlockForRecalibrationTakesTheMiddleAnswerLengths) {
  const auto tmp = testing::make_temp_dir("strata-batch");
  const std::string in = (tmp / "in.jsonl").string(), out = (tmp / "out.jsonl").string();
  write_lines(in, mixed_length_requests(24));  // answers of 2..25 tokens, each once
  BatchJobOptions o = options(in, out);
  o.batch_size = 8;
  o.window = 24;
  std::vector<int64_t> calls;
  o.after_block = [&](int64_t done) -> Result<ModelSwitch> {
    calls.push_back(done);
    return ModelSwitch{};
  };
  auto sum = run(o);
  ASSERT_TRUE(sum.is_ok()) << sum.status().to_string();
  EXPECT_EQ(sum->ok, 24);
  EXPECT_GT(sum->refills, 0);  // the 16 after the first block share 8 slots
  ASSERT_FALSE(calls.empty());
  EXPECT_EQ(calls.front(), 1);
  std::vector<int> lengths;
  for (const json& rec : read_records(out)) {
    const int i = std::stoi(rec["custom_id"].get<std::string>().substr(1));
    const int n = rec["response"]["body"]["usage"]["completion_tokens"].get<int>();
    EXPECT_EQ(n, answer_length(i)) << rec["custom_id"];
    lengths.push_back(n);
  }
  ASSERT_EQ(lengths.size(), 24u);
  // The first block: the 9th to 16th shortest answers, 10..17 tokens.
  std::vector<int> first(lengths.begin(), lengths.begin() + 8);
  std::sort(first.begin(), first.end());
  EXPECT_EQ(first, (std::vector<int>{10, 11, 12, 13, 14, 15, 16, 17}));
}

// A SequenceModel that counts what it is asked to run.
class CountingModel final : public compute::SequenceModel {
 public:
  explicit CountingModel(compute::Transformer& m) : inner_(m) {}
  const model::ModelConfig& config() const override { return inner_.config(); }
  compute::Backend& backend() override { return inner_.backend(); }
  Status reset(int32_t slots, int32_t max_len) override {
    if (slots > 0) {
      ++blocks;
      largest_block = std::max(largest_block, slots);
    }
    return inner_.reset(slots, max_len);
  }
  // Paged KV (as the offloading engine has it): pages of 8 positions in two groups over the rows
  // asked for, at most `group_seqs` sequences and 2 prompts a group in a step.
  Result<compute::PageLayout> reset_paged(int64_t rows, int32_t) override {
    ++paged_runs;
    const auto group = static_cast<int32_t>((rows + 15) / 16);
    const compute::PageLayout l{2 * group, 8, group, group_seqs, 2};
    STRATA_RETURN_IF_ERROR(inner_.reset(l.pages, l.page_len));
    return l;
  }
  Result<Tensor> forward(const compute::TokenBatch& batch, std::span<const int32_t> rows) override {
    if (!batch.seqs.empty() && batch.seqs[0].past_len > 0) {
      ++decode_steps;
      most_decoding = std::max(most_decoding, static_cast<int>(batch.seqs.size()));
    }
    return inner_.forward(batch, rows);
  }
  int blocks = 0;
  int32_t largest_block = 0;
  int paged_runs = 0, decode_steps = 0, most_decoding = 0;
  int32_t group_seqs = 6;

 private:
  compute::TransformerModel inner_;
};

// After the first block the job moves to another model with another block size (as `generate`
// does when it re-plans): the rest of the blocks run there, and every answer is the same.
TEST_F(BatchJobTest, AfterABlockTheRestCanRunOnAnotherModel) {
  const auto tmp = testing::make_temp_dir("strata-batch");
  const std::string in = (tmp / "in.jsonl").string(), out = (tmp / "out.jsonl").string(),
                    plain = (tmp / "plain.jsonl").string();
  const auto lines = reference_requests();
  write_lines(in, lines);
  ASSERT_TRUE(run(options(in, plain)).is_ok());

  CountingModel first(*model_), second(*model_);
  std::vector<int64_t> calls;
  BatchJobOptions o = options(in, out);
  o.after_block = [&](int64_t done) -> Result<ModelSwitch> {
    calls.push_back(done);
    if (done == 1) return ModelSwitch{&second, 3};
    return ModelSwitch{};
  };
  auto sum = run_batch_job(first, *tok_, o, ctx_->logger);
  ASSERT_TRUE(sum.is_ok()) << sum.status().to_string();
  EXPECT_EQ(sum->ok, static_cast<int64_t>(lines.size()));
  EXPECT_EQ(first.blocks, 1);
  EXPECT_EQ(first.largest_block, 4);
  EXPECT_EQ(second.largest_block, 3);
  EXPECT_EQ(second.blocks, sum->blocks - 1);
  ASSERT_EQ(calls.size(), static_cast<size_t>(sum->blocks));
  for (size_t i = 0; i < calls.size(); ++i) EXPECT_EQ(calls[i], static_cast<int64_t>(i) + 1);
  auto a = read_results(plain), b = read_results(out);
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [id, r] : a) EXPECT_EQ(text_of(b.find(id)->second), text_of(r)) << id;

  // A failing switch stops the job with its error; what was written stays for --resume.
  const std::string failed = (tmp / "failed.jsonl").string();
  BatchJobOptions f = options(in, failed);
  f.after_block = [](int64_t) -> Result<ModelSwitch> { return out_of_memory("the re-planned engine does not fit"); };
  auto stopped = run(f);
  ASSERT_FALSE(stopped.is_ok());
  EXPECT_NE(stopped.status().message().find("does not fit"), std::string::npos);
  EXPECT_EQ(read_results(failed).size(), 4u);
}

// With a look inside the first run (generate's recalibration on the continuous schedule), no
// block runs alone: the look comes once, before the first finished sequence's slot goes to a
// waiting request. When it asks for another model, that run takes no more requests, and the ones
// not started run on the model after_block(1) returns; every answer is the one-model answer.
TEST_F(BatchJobTest, ALookInsideTheFirstRunCanMoveTheRestToAnotherModel) {
  const auto tmp = testing::make_temp_dir("strata-batch");
  const std::string in = (tmp / "in.jsonl").string();
  write_lines(in, mixed_length_requests(24));  // answers of 2..25 tokens, each once
  std::map<std::string, std::string> texts[2];
  for (const bool move : {false, true}) {
    const std::string out = (tmp / (move ? "moved.jsonl" : "stayed.jsonl")).string();
    CountingModel first(*model_), second(*model_);
    std::vector<std::string> calls;
    BatchJobOptions o = options(in, out);
    o.batch_size = 8;
    o.window = 24;
    int64_t written_at_look = -1;
    o.look_in_first_run = [&]() -> Result<bool> {
      calls.push_back("look");
      written_at_look = static_cast<int64_t>(read_results(out).size());
      return move;
    };
    o.after_block = [&](int64_t done) -> Result<ModelSwitch> {
      calls.push_back("after " + std::to_string(done));
      if (move && done == 1) return ModelSwitch{&second, 3};
      return ModelSwitch{};
    };
    auto sum = run_batch_job(first, *tok_, o, ctx_->logger);
    ASSERT_TRUE(sum.is_ok()) << sum.status().to_string();
    EXPECT_EQ(sum->ok, 24);
    ASSERT_FALSE(calls.empty());
    EXPECT_EQ(calls.front(), "look");
    EXPECT_EQ(calls.at(1), "after 1");
    EXPECT_GE(written_at_look, 1);  // a slot was free: its answer was written
    EXPECT_LT(written_at_look, 8);
    EXPECT_EQ(first.blocks, 1);
    EXPECT_EQ(first.largest_block, 8);
    if (move) {
      EXPECT_EQ(calls.size(), 3u);
      EXPECT_EQ(second.blocks, 1);
      EXPECT_EQ(second.largest_block, 3);
    } else {
      EXPECT_EQ(calls.size(), 2u);
      EXPECT_EQ(second.blocks, 0);
      EXPECT_GT(sum->refills, 0);  // the requests after the first 8 took finished ones' slots
    }
    const auto results = read_results(out);
    ASSERT_EQ(results.size(), 24u);
    for (const auto& [id, r] : results) {
      const int i = std::stoi(id.substr(1));
      EXPECT_EQ(r["response"]["body"]["usage"]["completion_tokens"], answer_length(i)) << id;
      texts[move][id] = text_of(r);
    }
  }
  EXPECT_EQ(texts[0], texts[1]);
}

// A continuous run over one KV of max_sequence_len per slot (the offloading engine's) pages it:
// each request takes the pages of its own length, more run at once than the batch size, and
// every answer is the one of a slot per request. The look inside the first run comes after its
// first decode step; when it moves the rest to another model, no request is lost or run twice.
TEST_F(BatchJobTest, APagedRunAnswersAsSlotsDoAndLooksAfterItsFirstDecodeStep) {
  const auto tmp = testing::make_temp_dir("strata-batch");
  const std::string in = (tmp / "in.jsonl").string(), plain = (tmp / "plain.jsonl").string();
  write_lines(in, mixed_length_requests(24));
  BatchJobOptions base = options(in, plain);
  base.window = 24;
  ASSERT_TRUE(run(base).is_ok());
  const auto want = read_results(plain);
  ASSERT_EQ(want.size(), 24u);
  for (const bool move : {false, true}) {
    const std::string out = (tmp / (move ? "moved.jsonl" : "paged.jsonl")).string();
    CountingModel first(*model_), second(*model_);
    BatchJobOptions o = options(in, out);
    o.window = 24;
    o.max_sequence_len = 48;  // 4 slots of 48 positions: 24 pages of 8
    std::vector<std::string> calls;
    int decode_steps_at_look = -1;
    o.look_in_first_run = [&]() -> Result<bool> {
      calls.push_back("look");
      decode_steps_at_look = first.decode_steps;
      return move;
    };
    o.after_block = [&](int64_t done) -> Result<ModelSwitch> {
      calls.push_back("after " + std::to_string(done));
      if (move && done == 1) return ModelSwitch{&second, 4};
      return ModelSwitch{};
    };
    auto sum = run_batch_job(first, *tok_, o, ctx_->logger);
    ASSERT_TRUE(sum.is_ok()) << sum.status().to_string();
    EXPECT_EQ(sum->ok, 24);
    EXPECT_EQ(first.paged_runs, 1);
    EXPECT_GE(decode_steps_at_look, 1);
    ASSERT_GE(calls.size(), 2u);
    EXPECT_EQ(calls[0], "look");
    EXPECT_EQ(calls[1], "after 1");
    if (move) {
      EXPECT_EQ(second.paged_runs, 1);
    } else {
      EXPECT_GT(first.most_decoding, 4) << "pages of the requests' own lengths hold more than 4";
    }
    const auto got = read_results(out);
    ASSERT_EQ(got.size(), 24u);
    for (const auto& [id, r] : got) {
      EXPECT_EQ(got.count(id), 1u) << id;
      ASSERT_EQ(want.count(id), 1u) << id;
      EXPECT_EQ(text_of(r), text_of(want.find(id)->second)) << id;
    }
  }
}

TEST_F(BatchJobTest, BadLinesBecomeErrorLinesAndTheJobGoesOn) {
  const auto tmp = testing::make_temp_dir("strata-batch");
  const std::string in = (tmp / "in.jsonl").string(), out = (tmp / "out.jsonl").string();
  const std::string long_prompt(3000, 'x');
  write_lines(in, {
      R"({"custom_id": "ok1", "prompt": "Once upon a time", "max_tokens": 4})",
      R"({"custom_id": "json", "prompt": "unterminated)",
      R"([1, 2, 3])",
      R"({"custom_id": "type", "prompt": "hi", "max_tokens": "ten"})",
      R"({"custom_id": "url", "method": "POST", "url": "/v1/embeddings", "body": {"input": "x"}})",
      R"({"custom_id": "empty", "prompt": ""})",
      json({{"custom_id", "long"}, {"prompt", long_prompt}}).dump(),
      R"({"custom_id": "ok1", "prompt": "again"})",
      R"({"custom_id": "both", "prompt": "a", "messages": []})",
      R"({"custom_id": "vocab", "prompt": [1, 99999]})",
      R"({"custom_id": "role", "messages": [{"role": "user"}, {"content": "no role"}]})",
      R"({"prompt": "no id"})",
      R"({"custom_id": "ok2", "method": "POST", "url": "/v1/chat/completions", "body": {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}})",
  });
  auto sum = run(options(in, out));
  ASSERT_TRUE(sum.is_ok()) << sum.status().to_string();
  EXPECT_EQ(sum->ok, 2);
  EXPECT_EQ(sum->failed, 11);
  auto results = read_results(out);
  EXPECT_EQ(results.size(), 13u);
  auto code_of = [&](const std::string& key) {
    auto range = results.equal_range(key);
    for (auto it = range.first; it != range.second; ++it)
      if (!it->second["error"].is_null()) return it->second["error"]["code"].get<std::string>();
    return std::string("none");
  };
  EXPECT_EQ(code_of("ok1"), "duplicate_custom_id");
  EXPECT_EQ(results.count("ok1"), 2u);  // the result and the duplicate's error
  EXPECT_EQ(code_of("json"), "none");   // no custom_id could be read from invalid JSON...
  EXPECT_EQ(code_of("#2"), "invalid_json");  // ...so its error is keyed by its line
  EXPECT_EQ(code_of("#3"), "invalid_json");
  EXPECT_EQ(code_of("type"), "invalid_request");
  EXPECT_EQ(code_of("url"), "invalid_url");
  EXPECT_EQ(code_of("empty"), "invalid_prompt");
  EXPECT_EQ(code_of("long"), "context_length_exceeded");
  EXPECT_EQ(code_of("both"), "invalid_prompt");
  EXPECT_EQ(code_of("vocab"), "invalid_prompt");
  EXPECT_EQ(code_of("role"), "invalid_request");
  EXPECT_EQ(code_of("#12"), "invalid_request");
  EXPECT_EQ(code_of("ok2"), "none");
  const auto& err = results.find("type")->second["error"];
  EXPECT_NE(err["message"].get<std::string>().find("line 4"), std::string::npos) << err;
  EXPECT_NE(err["message"].get<std::string>().find("max_tokens"), std::string::npos) << err;
  EXPECT_TRUE(results.find("ok2")->second["response"]["body"]["choices"][0]["message"]["content"].is_string());
  // The summary: each code's count and its first error's message, as written in the output.
  EXPECT_EQ(sum->errors.at("invalid_json"), 2);
  EXPECT_EQ(sum->first_errors.at("invalid_json"), results.find("#2")->second["error"]["message"].get<std::string>());
  EXPECT_EQ(sum->first_errors.at("invalid_request"), err["message"].get<std::string>());
  const std::string text = sum->to_text();
  EXPECT_NE(text.find("invalid_json"), std::string::npos) << text;
  EXPECT_NE(text.find("first: " + err["message"].get<std::string>().substr(0, 40)), std::string::npos) << text;
}

TEST_F(BatchJobTest, StopStringsEndAndAreStripped) {
  // Case 0 of the reference makes 24 tokens of text; stop at a substring in its middle.
  const auto& c = (*ref_)["cases"][0];
  const std::string full = c["text"].get<std::string>();
  ASSERT_GT(full.size(), 12u);
  size_t at = 6;  // two ASCII letters or digits, so the stop string is whole characters
  while (at + 2 <= full.size() && !(std::isalnum(static_cast<unsigned char>(full[at])) &&
                                     std::isalnum(static_cast<unsigned char>(full[at + 1]))))
    ++at;
  ASSERT_LE(at + 2, full.size());
  const std::string stop = full.substr(at, 2);
  const size_t cut = full.find(stop);
  const auto tmp = testing::make_temp_dir("strata-batch");
  const std::string in = (tmp / "in.jsonl").string(), out = (tmp / "out.jsonl").string();
  write_lines(in, {json({{"custom_id", "body"}, {"prompt", c["prompt"]}, {"stop", json::array({"\x01never", stop})}}).dump(),
                   json({{"custom_id", "default"}, {"prompt", c["prompt"]}}).dump(),
                   json({{"custom_id", "none"}, {"prompt", c["prompt"]}, {"stop", json::array()}}).dump()});
  auto o = options(in, out);
  o.stop = {stop};  // the job default; "none" overrides it with no stop strings
  auto sum = run(o);
  ASSERT_TRUE(sum.is_ok()) << sum.status().to_string();
  auto results = read_results(out);
  for (const char* id : {"body", "default"}) {
    const auto& r = results.find(id)->second;
    EXPECT_EQ(text_of(r), full.substr(0, cut)) << id;
    EXPECT_EQ(r["response"]["body"]["choices"][0]["finish_reason"], "stop") << id;
    EXPECT_LT(r["response"]["body"]["usage"]["completion_tokens"].get<int>(), 24) << id;
  }
  EXPECT_EQ(text_of(results.find("none")->second), full);
}

// The line numbers of an output's records, in the order written ("batch_req_<line>").
std::vector<int64_t> record_lines(const std::string& path) {
  std::vector<int64_t> lines;
  auto r = text::LineReader::open(path);
  EXPECT_TRUE(r.is_ok());
  std::string line;
  while (r.is_ok() && *(*r)->next(line)) lines.push_back(std::stoll(json::parse(line)["id"].get<std::string>().substr(10)));
  return lines;
}

TEST_F(BatchJobTest, OrderedWritesInTheInputsOrderAlsoAcrossAResume) {
  const auto tmp = testing::make_temp_dir("strata-batch");
  const std::string in = (tmp / "in.jsonl").string();
  auto lines = reference_requests();
  lines.insert(lines.begin() + 3, "not json");  // an error line among the results
  write_lines(in, lines);
  std::vector<int64_t> want(lines.size());
  for (size_t i = 0; i < want.size(); ++i) want[i] = static_cast<int64_t>(i) + 1;

  const std::string plain = (tmp / "plain.jsonl").string();
  ASSERT_TRUE(run(options(in, plain)).is_ok());
  auto unordered = record_lines(plain);
  ASSERT_EQ(unordered.size(), want.size());
  EXPECT_NE(unordered, want) << "blocks of similar prompt lengths finish out of order";

  const std::string out = (tmp / "ordered.jsonl").string();
  auto o = options(in, out);
  o.ordered = true;
  ASSERT_TRUE(run(o).is_ok());
  EXPECT_EQ(record_lines(out), want);

  // Interrupted after five records, then resumed with --ordered: still in order, each once.
  std::vector<std::string> records;
  ASSERT_TRUE(text::repair_records(out, [&](std::string_view r) { records.emplace_back(r); }).is_ok());
  std::filesystem::remove(out);
  write_lines(out, std::vector<std::string>(records.begin(), records.begin() + 5));
  o.resume = true;
  auto sum = run(o);
  ASSERT_TRUE(sum.is_ok()) << sum.status().to_string();
  EXPECT_EQ(sum->skipped, 5);
  EXPECT_EQ(record_lines(out), want);
}

TEST_F(BatchJobTest, NChoicesAreSampledWithTheirOwnSeedsAndAnsweredInOneRecord) {
  const auto tmp = testing::make_temp_dir("strata-batch");
  const std::string in = (tmp / "in.jsonl").string(), out = (tmp / "out.jsonl").string();
  auto line = [](const std::string& id, json extra) {
    json body = {{"prompt", "In the beginning"}, {"max_tokens", 8}, {"ignore_eos", true}, {"seed", 7}};
    body.update(extra);
    return json({{"custom_id", id}, {"url", "/v1/completions"}, {"body", body}}).dump();
  };
  write_lines(in, {line("three", {{"n", 3}, {"temperature", 1}, {"best_of", 3}}),
                   line("one", {{"temperature", 1}}),
                   line("greedy", {{"n", 2}, {"temperature", 0}}),
                   line("zero", {{"n", 0}}),
                   line("best_of", {{"n", 2}, {"best_of", 3}})});
  auto o = options(in, out);
  o.batch_size = 2;  // the choices of one request run in different blocks
  auto sum = run(o);
  ASSERT_TRUE(sum.is_ok()) << sum.status().to_string();
  EXPECT_EQ(sum->ok, 3);
  EXPECT_EQ(sum->failed, 2);
  const auto results = read_results(out);
  ASSERT_EQ(results.size(), 5u);  // one record a request, however many choices

  const json& three = results.find("three")->second["response"]["body"];
  ASSERT_EQ(three["choices"].size(), 3u);
  std::set<std::string> texts;
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(three["choices"][i]["index"], i);
    EXPECT_EQ(three["choices"][i]["finish_reason"], "length");
    texts.insert(three["choices"][i]["text"].get<std::string>());
  }
  EXPECT_EQ(texts.size(), 3u) << "each choice samples with its own seed";
  // The first choice samples with the request's seed: the n = 1 request's text.
  const json& one = results.find("one")->second["response"]["body"];
  EXPECT_EQ(three["choices"][0]["text"], one["choices"][0]["text"]);
  // Usage: the prompt once, every choice's tokens.
  EXPECT_EQ(three["usage"]["prompt_tokens"], one["usage"]["prompt_tokens"]);
  EXPECT_EQ(three["usage"]["completion_tokens"], 24);
  EXPECT_EQ(three["usage"]["total_tokens"], one["usage"]["prompt_tokens"].get<int>() + 24);

  const json& greedy = results.find("greedy")->second["response"]["body"];
  ASSERT_EQ(greedy["choices"].size(), 2u);
  EXPECT_EQ(greedy["choices"][0]["text"], greedy["choices"][1]["text"]);

  const json& zero = results.find("zero")->second["error"];
  EXPECT_NE(zero["message"].get<std::string>().find("'n'"), std::string::npos) << zero.dump();
  const json& best_of = results.find("best_of")->second["error"];
  EXPECT_NE(best_of["message"].get<std::string>().find("best_of"), std::string::npos) << best_of.dump();

  // Stopped after the first block (two of the six sequences) and resumed: every request answered
  // once, with the same choices.
  const std::string cut = (tmp / "cut.jsonl").string();
  auto first = options(in, cut);
  first.batch_size = 2;
  first.after_block = [](int64_t) -> Result<ModelSwitch> { return cancelled("stopped after a block"); };
  EXPECT_FALSE(run(first).is_ok());
  EXPECT_LT(read_results(cut).size(), 5u);
  auto again = options(in, cut);
  again.batch_size = 2;
  again.resume = true;
  ASSERT_TRUE(run(again).is_ok());
  const auto resumed = read_results(cut);
  ASSERT_EQ(resumed.size(), 5u);
  for (const char* id : {"three", "one", "greedy"})
    EXPECT_EQ(resumed.find(id)->second["response"]["body"]["choices"], results.find(id)->second["response"]["body"]["choices"])
        << id;
}

TEST_F(BatchJobTest, EchoStartsTheTextWithThePrompt) {
  const auto tmp = testing::make_temp_dir("strata-batch");
  const std::string in = (tmp / "in.jsonl").string(), out = (tmp / "out.jsonl").string();
  const std::string prompt = "In the beginning";
  const std::vector<int32_t> ids = tok_->encode(prompt, /*add_special_tokens=*/true);
  auto line = [](const std::string& id, const std::string& url, json body) {
    body["max_tokens"] = 6;
    return json({{"custom_id", id}, {"url", url}, {"body", body}}).dump();
  };
  const json msgs = json::array({{{"role", "user"}, {"content", "hi"}}});
  write_lines(in, {line("plain", "/v1/completions", {{"prompt", prompt}}),
                   line("echo", "/v1/completions", {{"prompt", prompt}, {"echo", true}}),
                   line("ids", "/v1/completions", {{"prompt", ids}, {"echo", true}}),
                   line("chat", "/v1/chat/completions", {{"messages", msgs}, {"echo", true}}),
                   line("chat_false", "/v1/chat/completions", {{"messages", msgs}, {"echo", false}}),
                   line("logprobs", "/v1/completions", {{"prompt", prompt}, {"echo", true}, {"logprobs", 1}})});
  ASSERT_TRUE(run(options(in, out)).is_ok());
  const auto r = read_results(out);
  const std::string plain = text_of(r.find("plain")->second);
  EXPECT_EQ(text_of(r.find("echo")->second), prompt + plain);
  // Token ids come back decoded (special tokens left out, as vLLM decodes them).
  EXPECT_EQ(text_of(r.find("ids")->second), tok_->decode(ids, true) + plain);
  EXPECT_EQ(r.find("echo")->second["response"]["body"]["usage"], r.find("plain")->second["response"]["body"]["usage"]);
  EXPECT_TRUE(r.find("chat_false")->second["error"].is_null());
  for (const char* id : {"chat", "logprobs"}) {
    const json& e = r.find(id)->second["error"];
    EXPECT_EQ(e["code"], "unsupported") << id;
    EXPECT_NE(e["message"].get<std::string>().find("'echo'"), std::string::npos) << e.dump();
  }
}

TEST_F(BatchJobTest, JsonModeAnswersParseAsObjectsOrStopAtTheLengthLimit) {
  const auto tmp = testing::make_temp_dir("strata-batch");
  const std::string in = (tmp / "in.jsonl").string(), out = (tmp / "out.jsonl").string();
  std::vector<std::string> lines;
  const json msgs = json::array({{{"role", "user"}, {"content", "Describe a book as JSON."}}});
  for (int i = 0; i < 40; ++i) {
    json body = {{"response_format", {{"type", "json_object"}}}, {"max_tokens", 96}, {"temperature", 0.7 + 0.02 * i},
                 {"seed", i}};
    if (i % 2) body["messages"] = msgs;
    else body["prompt"] = "Data:";
    lines.push_back(json({{"custom_id", "j" + std::to_string(i)}, {"url", i % 2 ? "/v1/chat/completions" : "/v1/completions"},
                          {"body", body}})
                        .dump());
  }
  lines.push_back(json({{"custom_id", "schema"}, {"prompt", "x"},
                        {"response_format", {{"type", "json_schema"}, {"json_schema", {{"name", "n"}, {"schema", {{"not", json::object()}}}}}}}})
                      .dump());
  write_lines(in, lines);
  ASSERT_TRUE(run(options(in, out)).is_ok());
  const auto results = read_results(out);
  ASSERT_EQ(results.size(), 41u);
  int whole = 0, cut = 0;
  for (const auto& [id, r] : results) {
    if (id == "schema") {
      EXPECT_EQ(r["error"]["code"], "unsupported") << r.dump();
      EXPECT_NE(r["error"]["message"].get<std::string>().find("'not' at '/not'"), std::string::npos) << r.dump();
      continue;
    }
    const std::string text = text_of(r);
    const std::string finish = r["response"]["body"]["choices"][0]["finish_reason"];
    if (finish == "stop") {
      ASSERT_TRUE(json::accept(text)) << id << ": " << json(text).dump(-1, ' ', true, json::error_handler_t::replace);  // nlohmann's parser, not ours
      EXPECT_TRUE(json::parse(text).is_object()) << text;
      ++whole;
    } else {
      EXPECT_EQ(finish, "length") << id;
      text::JsonAutomaton a;  // cut short: still the beginning of an object
      for (unsigned char c : text) ASSERT_TRUE(a.feed(c)) << id << ": " << text;
      ++cut;
    }
  }
  EXPECT_GT(whole, 0);
  EXPECT_EQ(whole + cut, 40);
}

TEST_F(BatchJobTest, StopTokenIdsMinTokensAndIncludeStopStrAsVllm) {
  const auto& c = (*ref_)["cases"][0];
  ASSERT_GE(c["min_top2_margin"].get<float>(), kNearTie);
  const std::vector<int32_t> gen = c["generated"].get<std::vector<int32_t>>();
  const std::string full = c["text"];
  ASSERT_GE(gen.size(), 12u);
  // A token first generated at position k, as a stop token.
  size_t k = 4;
  while (k < gen.size() && std::find(gen.begin(), gen.begin() + k, gen[k]) != gen.begin() + k) ++k;
  ASSERT_LT(k, gen.size());
  // A stop string: two ASCII characters early in the text.
  size_t at = 2;
  while (at + 2 <= full.size() && !(std::isalnum(static_cast<unsigned char>(full[at])) &&
                                     std::isalnum(static_cast<unsigned char>(full[at + 1]))))
    ++at;
  ASSERT_LE(at + 2, full.size());
  const std::string stop = full.substr(at, 2);
  const size_t cut = full.find(stop);
  const auto tmp = testing::make_temp_dir("strata-batch");
  const std::string in = (tmp / "in.jsonl").string(), out = (tmp / "out.jsonl").string();
  const json prompt = c["prompt"];
  write_lines(in, {json({{"custom_id", "ids"}, {"prompt", prompt}, {"stop_token_ids", {gen[k]}}}).dump(),
                   json({{"custom_id", "min"}, {"prompt", prompt}, {"stop_token_ids", {gen[k]}},
                         {"min_tokens", k + 6}, {"logprobs", 0}}).dump(),
                   json({{"custom_id", "incl"}, {"prompt", prompt}, {"stop", stop}, {"include_stop_str_in_output", true}}).dump(),
                   json({{"custom_id", "late"}, {"prompt", prompt}, {"stop", stop}, {"min_tokens", 20}}).dump(),
                   json({{"custom_id", "bad_min"}, {"prompt", prompt}, {"max_tokens", 4}, {"min_tokens", 5}}).dump(),
                   json({{"custom_id", "bad_id"}, {"prompt", prompt}, {"stop_token_ids", {1 << 30}}}).dump()});
  ASSERT_TRUE(run(options(in, out)).is_ok());
  auto results = read_results(out);
  auto choice = [&](const char* id) { return results.find(id)->second["response"]["body"]["choices"][0]; };
  auto usage = [&](const char* id) { return results.find(id)->second["response"]["body"]["usage"]; };
  // The stop token ends the answer as an EOS would: counted, not in the text.
  EXPECT_EQ(choice("ids")["finish_reason"], "stop");
  EXPECT_EQ(usage("ids")["completion_tokens"], k + 1);
  EXPECT_LT(choice("ids")["text"].get<std::string>().size(), full.size());
  EXPECT_EQ(full.rfind(choice("ids")["text"].get<std::string>(), 0), 0u) << "a prefix of the full text";
  // With min_tokens past k the stop token cannot be chosen at k: greedy takes the next best, and
  // nothing ends the answer before min_tokens tokens.
  EXPECT_GE(usage("min")["completion_tokens"].get<int>(), static_cast<int>(k) + 6);
  const json lp = choice("min")["logprobs"];
  ASSERT_GT(lp["tokens"].size(), k);
  EXPECT_NE(lp["tokens"][k], tok_->decode(std::vector<int32_t>{gen[k]}, false));
  for (size_t i = 0; i < k; ++i) EXPECT_EQ(lp["tokens"][i], tok_->decode(std::vector<int32_t>{gen[i]}, false)) << i;
  // include_stop_str_in_output keeps the stop string; min_tokens lets an early one pass.
  EXPECT_EQ(choice("incl")["text"], full.substr(0, cut + stop.size()));
  EXPECT_GT(choice("late")["text"].get<std::string>().size(), cut);
  EXPECT_GE(usage("late")["completion_tokens"].get<int>(), 20);
  // Values that cannot be honoured are error lines naming the field.
  EXPECT_NE(results.find("bad_min")->second["error"]["message"].get<std::string>().find("min_tokens"), std::string::npos);
  EXPECT_NE(results.find("bad_id")->second["error"]["message"].get<std::string>().find("stop_token_ids"), std::string::npos);
}

TEST_F(BatchJobTest, LogitBiasAndPenaltiesReachTheChoice) {
  const auto& c = (*ref_)["cases"][0];
  const std::vector<int32_t> gen = c["generated"].get<std::vector<int32_t>>();
  const int32_t forced = gen[0] == 40 ? 41 : 40;
  const auto tmp = testing::make_temp_dir("strata-batch");
  const std::string in = (tmp / "in.jsonl").string(), out = (tmp / "out.jsonl").string();
  write_lines(in, {json({{"custom_id", "bias"}, {"prompt", c["prompt"]}, {"max_tokens", 6}, {"logprobs", 0},
                         {"logit_bias", {{std::to_string(forced), 100}}}}).dump(),
                   json({{"custom_id", "away"}, {"prompt", c["prompt"]}, {"max_tokens", 1}, {"logprobs", 0},
                         {"logit_bias", {{std::to_string(gen[0]), -100}}}}).dump(),
                   json({{"custom_id", "bad"}, {"prompt", c["prompt"]}, {"presence_penalty", 3}}).dump()});
  ASSERT_TRUE(run(options(in, out)).is_ok());
  auto results = read_results(out);
  const json bias = results.find("bias")->second["response"]["body"]["choices"][0]["logprobs"];
  ASSERT_EQ(bias["tokens"].size(), 6u);
  for (const auto& t : bias["tokens"]) EXPECT_EQ(t, tok_->decode(std::vector<int32_t>{forced}, false));
  const json away = results.find("away")->second["response"]["body"]["choices"][0]["logprobs"];
  ASSERT_EQ(away["tokens"].size(), 1u);
  // Another token than the greedy one: the model's logprob of it is not the greedy token's.
  EXPECT_GT(std::abs(away["token_logprobs"][0].get<double>() - c["logprobs"][0].get<double>()), 1e-3);
  EXPECT_NE(results.find("bad")->second["error"]["message"].get<std::string>().find("presence_penalty"), std::string::npos);
}

TEST_F(BatchJobTest, ZstdInAndOutMatchPlain) {
  const auto tmp = testing::make_temp_dir("strata-batch");
  const auto lines = reference_requests();
  write_lines((tmp / "in.jsonl").string(), lines);
  write_lines((tmp / "in.jsonl.zst").string(), lines);
  ASSERT_TRUE(run(options((tmp / "in.jsonl").string(), (tmp / "out.jsonl").string())).is_ok());
  ASSERT_TRUE(run(options((tmp / "in.jsonl.zst").string(), (tmp / "out.jsonl.zst").string())).is_ok());
  auto plain = read_results((tmp / "out.jsonl").string());
  auto zst = read_results((tmp / "out.jsonl.zst").string());
  ASSERT_EQ(plain.size(), lines.size());
  ASSERT_EQ(zst.size(), lines.size());
  for (const auto& [id, r] : plain) EXPECT_EQ(text_of(zst.find(id)->second), text_of(r)) << id;
}

TEST_F(BatchJobTest, ResumeSkipsAnsweredAndRepairsATornLine) {
  for (const char* ext : {".jsonl", ".jsonl.zst"}) {
    SCOPED_TRACE(ext);
    const auto tmp = testing::make_temp_dir("strata-batch");
    const std::string in = (tmp / "in.jsonl").string(), full = (tmp / ("full" + std::string(ext))).string(),
                      out = (tmp / ("out" + std::string(ext))).string();
    auto lines = reference_requests();
    lines.push_back("not json");
    write_lines(in, lines);
    ASSERT_TRUE(run(options(in, full)).is_ok());
    // An interrupted job: the first five records, then half of the sixth.
    std::vector<std::string> records;
    ASSERT_TRUE(text::repair_records(full, [&](std::string_view r) { records.emplace_back(r); }).is_ok());
    ASSERT_EQ(records.size(), lines.size());
    write_lines(out, std::vector<std::string>(records.begin(), records.begin() + 5));
    {
      std::ofstream torn(out, std::ios::app | std::ios::binary);
      torn << records[5].substr(0, records[5].size() / 2);
    }
    auto o = options(in, out);
    EXPECT_FALSE(run(o).is_ok());  // exists: needs --resume or --overwrite
    o.resume = true;
    auto sum = run(o);
    ASSERT_TRUE(sum.is_ok()) << sum.status().to_string();
    EXPECT_EQ(sum->skipped, 5);
    EXPECT_EQ(sum->ok + sum->failed, static_cast<int64_t>(lines.size()) - 5);
    auto a = read_results(full), b = read_results(out);
    ASSERT_EQ(b.size(), lines.size());
    for (const auto& [id, r] : a) {
      EXPECT_EQ(b.count(id), 1u) << id;
      if (r["error"].is_null()) {
        EXPECT_EQ(text_of(b.find(id)->second), text_of(r)) << id;
      }
    }
    // Resuming a finished job does nothing.
    auto again = run(o);
    ASSERT_TRUE(again.is_ok());
    EXPECT_EQ(again->requests, 0);
    EXPECT_EQ(read_results(out).size(), lines.size());
  }
}

TEST_F(BatchJobTest, LogprobsOfGreedyTokensMatchTransformers) {
  const auto& c = (*ref_)["cases"][11];  // a chat case with well separated choices
  ASSERT_EQ(c["kind"], "chat");
  ASSERT_GE(c["min_top2_margin"].get<float>(), kNearTie);
  const auto tmp = testing::make_temp_dir("strata-batch");
  const std::string in = (tmp / "in.jsonl").string(), out = (tmp / "out.jsonl").string();
  write_lines(in, {json({{"custom_id", "chat"}, {"messages", c["messages"]}, {"logprobs", true}, {"top_logprobs", 3}}).dump(),
                   json({{"custom_id", "cmpl"}, {"prompt", (*ref_)["cases"][0]["prompt"]}, {"logprobs", 2}}).dump()});
  ASSERT_TRUE(run(options(in, out)).is_ok());
  auto results = read_results(out);
  const auto& lp = results.find("chat")->second["response"]["body"]["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(lp.size(), c["logprobs"].size());
  for (size_t i = 0; i < lp.size(); ++i) {
    EXPECT_NEAR(lp[i]["logprob"].get<double>(), c["logprobs"][i].get<double>(), 1e-3) << i;
    ASSERT_EQ(lp[i]["top_logprobs"].size(), 3u);
    EXPECT_EQ(lp[i]["top_logprobs"][0]["token"], lp[i]["token"]);  // greedy: the best is the chosen one
  }
  const auto& cl = results.find("cmpl")->second["response"]["body"]["choices"][0]["logprobs"];
  EXPECT_EQ(cl["tokens"].size(), 24u);
  // Greedy: the chosen token's logprob is the best of the alternatives (two tokens may share a
  // text, so the legacy {text: logprob} map can hold fewer than two entries).
  double best = -1e30;
  for (const auto& [text, v] : cl["top_logprobs"][0].items()) best = std::max(best, v.get<double>());
  EXPECT_NEAR(best, cl["token_logprobs"][0].get<double>(), 1e-6);
}

TEST_F(BatchJobTest, LogprobsCoverTheReturnedTextInOpenAIsForm) {
  const auto tmp = testing::make_temp_dir("strata-batch");
  const json prompt = (*ref_)["cases"][0]["prompt"];
  const std::string in = (tmp / "in.jsonl").string(), out = (tmp / "out.jsonl").string();
  // Unstopped first: every generated token with its offset in the text.
  write_lines(in, {json({{"custom_id", "full"}, {"prompt", prompt}, {"logprobs", 5}}).dump()});
  ASSERT_TRUE(run(options(in, out)).is_ok());
  const json full = read_results(out).begin()->second["response"]["body"]["choices"][0];
  const std::string text = full["text"];
  const json& offsets = full["logprobs"]["text_offset"];
  ASSERT_EQ(full["logprobs"]["tokens"].size(), 24u);
  // A stop string from the middle of that text: the answer is cut before it, and so are the tokens
  // that carried it.
  const size_t cut = text.find(' ', text.size() / 2);
  ASSERT_NE(cut, std::string::npos) << text;
  const std::string stop = text.substr(cut, 3);
  size_t want = 0;
  for (const auto& o : offsets) want += o.get<size_t>() < text.find(stop) ? 1 : 0;
  ASSERT_GT(want, 0u);
  ASSERT_LT(want, 24u);
  const std::string in2 = (tmp / "in2.jsonl").string(), out2 = (tmp / "out2.jsonl").string();
  write_lines(in2, {json({{"custom_id", "stopped"}, {"prompt", prompt}, {"stop", stop}, {"logprobs", 0}}).dump()});
  ASSERT_TRUE(run(options(in2, out2)).is_ok());
  const json stopped = read_results(out2).find("stopped")->second["response"]["body"]["choices"][0];
  EXPECT_EQ(stopped["text"], text.substr(0, text.find(stop)));
  const json& lp = stopped["logprobs"];
  ASSERT_EQ(lp["tokens"].size(), want);
  ASSERT_EQ(lp["text_offset"].size(), want);
  // logprobs 0: each position's top_logprobs is the sampled token alone (OpenAI: up to logprobs + 1).
  ASSERT_EQ(lp["top_logprobs"].size(), want);
  for (size_t i = 0; i < want; ++i) {
    EXPECT_EQ(lp["text_offset"][i], offsets[i]) << i;
    EXPECT_EQ(lp["tokens"][i], full["logprobs"]["tokens"][i]) << i;
    ASSERT_EQ(lp["top_logprobs"][i].size(), 1u) << i;
    EXPECT_EQ(lp["top_logprobs"][i].begin().key(), lp["tokens"][i].get<std::string>()) << i;
    EXPECT_EQ(lp["top_logprobs"][i].begin().value(), lp["token_logprobs"][i]) << i;
  }
  // The alternatives as written: best first, not in alphabetical order.
  auto reader = text::LineReader::open(out);
  ASSERT_TRUE(reader.is_ok());
  std::string line;
  ASSERT_TRUE(*(*reader)->next(line));
  const auto raw = nlohmann::ordered_json::parse(line);
  size_t with_several = 0;
  for (const auto& top : raw["response"]["body"]["choices"][0]["logprobs"]["top_logprobs"]) {
    double previous = 1;
    for (const auto& [token, v] : top.items()) {
      EXPECT_LE(v.get<double>(), previous) << token;
      previous = v.get<double>();
    }
    with_several += top.size() > 1 ? 1 : 0;
  }
  EXPECT_GT(with_several, 0u);
  EXPECT_EQ(raw.begin().key(), "id");  // OpenAI's order of a batch output line
}

}  // namespace
}  // namespace strata::runtime
