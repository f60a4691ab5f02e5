// `strata generate` as users run it: the real binary as a subprocess on the llama_text fixture.
// Killed with SIGKILL at several points and resumed, a job answers every request exactly once,
// with the same text as an uninterrupted run; fatal problems exit non-zero before any work.
#include <chrono>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testing/test_data.h"
#include "text/line_io.h"

namespace strata {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

const fs::path kModel = testing::test_data_dir() / "fixtures" / "llama_text";

pid_t spawn(const std::vector<std::string>& args, const std::string& log) {
  const pid_t pid = fork();
  if (pid == 0) {
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(STRATA_BINARY));
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    FILE* f = std::freopen(log.c_str(), "a", stderr);
    (void)f;
    execv(STRATA_BINARY, argv.data());
    _exit(127);
  }
  return pid;
}

int wait_exit(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int run(const std::vector<std::string>& args, const std::string& log) { return wait_exit(spawn(args, log)); }

// Complete records in `path` (a torn tail is not counted), read without modifying the file.
std::vector<json> records(const std::string& path) {
  std::vector<json> out;
  auto r = text::LineReader::open(path);
  if (!r.is_ok()) return out;
  std::string line;
  for (;;) {
    auto more = (*r)->next(line);
    if (!more.is_ok() || !*more) break;
    auto j = json::parse(line, nullptr, false);
    if (!j.is_discarded()) out.push_back(j);
  }
  return out;
}

std::string file_text(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::vector<std::string> job_args(const std::string& in, const std::string& out) {
  return {"generate", "--model", kModel.string(), "--input", in, "--output", out, "--max-tokens", "16",
          "--temperature", "0", "--batch-size", "2", "--window", "4", "--threads", "2", "--quiet"};
}

std::string write_input(const fs::path& dir, int n) {
  const std::string in = (dir / "in.jsonl").string();
  std::ofstream f(in);
  const char* words[] = {"Once upon a time", "The quick brown fox", "Le café est", "Prices rose",
                         "A little robot", "東京は日本の", "Data labelling", "In 1969, humans"};
  for (int i = 0; i < n; ++i) {
    if (i % 3 == 0) {
      f << json({{"custom_id", "q" + std::to_string(i)}, {"prompt", words[i % 8]}}).dump() << "\n";
    } else {
      f << json({{"custom_id", "q" + std::to_string(i)}, {"method", "POST"}, {"url", "/v1/chat/completions"},
                 {"body", {{"messages", {{{"role", "user"}, {"content", words[i % 8]}}}}, {"max_tokens", 8 + i % 9}}}})
               .dump()
        << "\n";
    }
  }
  f << "{broken\n";
  return in;
}

TEST(GenerateCli, KilledAndResumedAnswersEveryRequestExactlyOnce) {
  const auto dir = testing::make_temp_dir("strata-cli");
  const int n = 48;
  const std::string in = write_input(dir, n), log = (dir / "log.txt").string();
  for (const char* ext : {".jsonl", ".jsonl.zst"}) {
    SCOPED_TRACE(ext);
    const std::string ref = (dir / ("ref" + std::string(ext))).string();
    const std::string out = (dir / ("out" + std::string(ext))).string();
    ASSERT_EQ(run(job_args(in, ref), log), 0) << file_text(log);
    std::map<std::string, std::string> expected;  // id -> the whole record minus timing fields
    auto key = [](const json& r) { return r["id"].get<std::string>(); };
    auto strip = [](json r) {
      if (r["response"].is_object()) r["response"]["body"].erase("created");
      return r.dump();
    };
    for (const auto& r : records(ref)) expected[key(r)] = strip(r);
    ASSERT_EQ(expected.size(), static_cast<size_t>(n + 1));

    // Kill at several points: before any output, then after more and more records.
    int kills = 0;
    for (size_t target : {size_t{0}, size_t{5}, size_t{17}, size_t{31}}) {
      auto args = job_args(in, out);
      if (fs::exists(out)) args.push_back("--resume");
      const pid_t pid = spawn(args, log);
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
      while (records(out).size() < target && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      if (target == 0) std::this_thread::sleep_for(std::chrono::milliseconds(30));
      kill(pid, SIGKILL);
      const int code = wait_exit(pid);
      kills += code == 128 + SIGKILL;
    }
    EXPECT_GE(kills, 2) << "the job finished before most kills; make it longer";
    ASSERT_EQ(run([&] { auto a = job_args(in, out); a.push_back("--resume"); return a; }(), log), 0) << file_text(log);

    std::map<std::string, int> seen;
    std::set<std::string> custom_ids;
    for (const auto& r : records(out)) {
      ++seen[key(r)];
      if (r["custom_id"].is_string()) custom_ids.insert(r["custom_id"].get<std::string>());
      EXPECT_EQ(strip(r), expected[key(r)]) << "a resumed result differs from the uninterrupted run";
    }
    EXPECT_EQ(seen.size(), expected.size());
    for (const auto& [id, count] : seen) EXPECT_EQ(count, 1) << id << " answered " << count << " times";
    EXPECT_EQ(custom_ids.size(), static_cast<size_t>(n));
  }
}

// The JSON summary says when the first result was written (after the start, within the run) and
// the peak of each memory tier it measured: the resident set on the CPU, no GPU, pinned or disk
// figure without the offloading engine.
TEST(GenerateCli, SummaryGivesTheFirstResultTimeAndThePeakPerTier) {
  const auto dir = testing::make_temp_dir("strata-cli");
  const std::string in = write_input(dir, 6), log = (dir / "log.txt").string();
  const std::string out = (dir / "out.jsonl").string(), summary = (dir / "summary.json").string();
  auto args = job_args(in, out);
  args.insert(args.end(), {"--json-summary", summary});
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(run(args, log), 0) << file_text(log);
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const json j = json::parse(file_text(summary));
  ASSERT_TRUE(j["first_result_s"].is_number()) << j.dump();
  EXPECT_GT(j["first_result_s"].get<double>(), 0.0);
  EXPECT_LE(j["first_result_s"].get<double>(), elapsed);
  EXPECT_GT(j["peak_memory_bytes"]["cpu"].get<int64_t>(), 0);
  for (const char* tier : {"gpu", "pinned", "disk"}) EXPECT_TRUE(j["peak_memory_bytes"][tier].is_null()) << tier;

  // A resumed run with nothing left to do writes no result: no first-result time.
  args.push_back("--resume");
  ASSERT_EQ(run(args, log), 0) << file_text(log);
  EXPECT_TRUE(json::parse(file_text(summary))["first_result_s"].is_null());
}

TEST(GenerateCli, FatalProblemsExitBeforeWork) {
  const auto dir = testing::make_temp_dir("strata-cli");
  const std::string in = write_input(dir, 2), log = (dir / "log.txt").string();
  const std::string out = (dir / "out.jsonl").string();
  auto expect_fail = [&](std::vector<std::string> args, const std::string& message) {
    std::ofstream(log, std::ios::trunc).close();
    EXPECT_NE(run(args, log), 0);
    EXPECT_NE(file_text(log).find(message), std::string::npos) << file_text(log);
    EXPECT_FALSE(fs::exists(out)) << "no output may be created by a failed start";
  };
  auto args = job_args(in, out);
  args[2] = (dir / "no-such-model").string();
  expect_fail(args, "no-such-model");
  expect_fail(job_args((dir / "missing.jsonl").string(), out), "missing.jsonl");
  expect_fail(job_args(in, (dir / "no-dir" / "out.jsonl").string()), "no-dir");
  // An existing output is neither overwritten nor appended to without --resume / --overwrite.
  std::ofstream(out) << "{}\n";
  std::ofstream(log, std::ios::trunc).close();
  EXPECT_NE(run(job_args(in, out), log), 0);
  EXPECT_NE(file_text(log).find("--resume"), std::string::npos) << file_text(log);
  EXPECT_EQ(file_text(out), "{}\n");
}

TEST(GenerateCli, TokenizeCountsPrompts) {
  const auto dir = testing::make_temp_dir("strata-cli");
  const std::string in = write_input(dir, 3), log = (dir / "log.txt").string(), out = (dir / "tok.txt").string();
  const pid_t pid = fork();
  if (pid == 0) {
    FILE* f = std::freopen(out.c_str(), "w", stdout);
    (void)f;
    execl(STRATA_BINARY, STRATA_BINARY, "tokenize", "--model", kModel.c_str(), "--input", in.c_str(), "--counts",
          static_cast<char*>(nullptr));
    _exit(127);
  }
  EXPECT_EQ(wait_exit(pid), 0);
  const std::string text = file_text(out);
  // q0 is "Once upon a time": 9 tokens with BOS (tests/data/fixtures/llama_text/reference.json).
  EXPECT_NE(text.find("q0\t9\n"), std::string::npos) << text;
  EXPECT_NE(text.find("q1\t"), std::string::npos) << text;
  EXPECT_NE(text.find("line 4: error"), std::string::npos) << text;
}

}  // namespace
}  // namespace strata
