// `strata bench --model-shape` and `strata generate --policy` as users run them, the real binary
// as a subprocess: without a GPU the benchmark stops with a message that says it needs one; a
// policy file that is not JSON, or does not fit the budgets, fails with the planner's message
// naming the file; `strata bench io` still runs as a subcommand.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cuda/device.h"
#include "testing/test_data.h"

namespace strata {
namespace {

namespace fs = std::filesystem;

struct Outcome {
  int code = -1;
  std::string output;  // stdout and stderr together
};

Outcome run_strata(const std::vector<std::string>& args) {
  std::string cmd = std::string("'") + STRATA_BINARY + "'";
  for (const auto& a : args) cmd += " '" + a + "'";
  cmd += " 2>&1";
  Outcome o;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return o;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) o.output.append(buf.data(), n);
  const int status = pclose(p);
  o.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return o;
}

bool have_gpu() { return !cuda::query_devices().devices.empty(); }

std::vector<std::string> bench_args(std::vector<std::string> more) {
  std::vector<std::string> a = {"bench", "--model-shape", "opt-125m", "--prompt-len",
                                "32",    "--gen-len",     "8"};
  a.insert(a.end(), more.begin(), more.end());
  return a;
}

TEST(BenchCli, WithoutAGpuTheBenchmarkSaysItNeedsOne) {
  if (have_gpu()) GTEST_SKIP() << "a CUDA device is present: the benchmark would run";
  const Outcome o = run_strata(bench_args({}));
  EXPECT_EQ(o.code, 2) << o.output;
  EXPECT_NE(o.output.find("needs a CUDA device"), std::string::npos) << o.output;

  // With a named profile the plan is printed first, then the same clean failure.
  const Outcome planned =
      run_strata(bench_args({"--hardware", "h100-test-host", "--gpu-mem", "4GiB"}));
  EXPECT_EQ(planned.code, 2) << planned.output;
  EXPECT_NE(planned.output.find("predicted"), std::string::npos) << planned.output;
  EXPECT_NE(planned.output.find("gpu 4.00 GiB"), std::string::npos) << planned.output;
  EXPECT_NE(planned.output.find("needs a CUDA device"), std::string::npos) << planned.output;
}

TEST(BenchCli, AMalformedPolicyFileIsNamed) {
  const fs::path dir = testing::make_temp_dir("strata-bench-cli");
  const std::string file = (dir / "broken-policy.json").string();
  std::ofstream(file) << "{\"gpu_batch_size\": 8,";
  const Outcome o = run_strata(bench_args({"--hardware", "h100-test-host", "--policy", file}));
  EXPECT_EQ(o.code, 2) << o.output;
  EXPECT_NE(o.output.find(file), std::string::npos) << o.output;
  EXPECT_NE(o.output.find("not valid JSON"), std::string::npos) << o.output;

  const std::string missing_field = (dir / "no-batch.json").string();
  std::ofstream(missing_field) << R"({"model": "opt-125m", "prompt_len": 32, "gen_len": 8})";
  const Outcome m =
      run_strata(bench_args({"--hardware", "h100-test-host", "--policy", missing_field}));
  EXPECT_NE(m.code, 0) << m.output;
  EXPECT_NE(m.output.find(missing_field), std::string::npos) << m.output;
}

TEST(BenchCli, APolicyThatDoesNotFitTheBudgetsFailsWithThePlannersMessage) {
  const fs::path dir = testing::make_temp_dir("strata-bench-cli");
  const std::string file = (dir / "policy.json").string();
  // A real policy from `strata plan` for the machine's default budgets...
  const Outcome plan = run_strata({"plan", "--model-shape", "opt-125m", "--prompt-len", "32",
                                   "--gen-len", "8", "--hardware", "h100-test-host", "-o", file});
  ASSERT_EQ(plan.code, 0) << plan.output;
  // ...evaluated against 16 MiB per tier, where opt-125m's ~250 MB of fp16 weights cannot go.
  const Outcome o =
      run_strata(bench_args({"--hardware", "h100-test-host", "--policy", file, "--gpu-mem", "16MiB",
                             "--cpu-mem", "16MiB", "--disk-mem", "16MiB"}));
  EXPECT_EQ(o.code, 1) << o.output;
  EXPECT_NE(o.output.find(file), std::string::npos) << o.output;
  EXPECT_NE(o.output.find("tier short by"), std::string::npos) << o.output;
  // Planning for the same budgets is infeasible too, and says which tier is short.
  const Outcome a = run_strata(bench_args({"--hardware", "h100-test-host", "--gpu-mem", "16MiB",
                                           "--cpu-mem", "16MiB", "--disk-mem", "16MiB"}));
  EXPECT_EQ(a.code, 1) << a.output;
  EXPECT_NE(a.output.find("short by"), std::string::npos) << a.output;
}

TEST(BenchCli, BadArgumentsAreNamed) {
  const Outcome none = run_strata({"bench"});
  EXPECT_EQ(none.code, 2) << none.output;
  EXPECT_NE(none.output.find("--model-shape"), std::string::npos) << none.output;
  const Outcome compress =
      run_strata(bench_args({"--hardware", "h100-test-host", "--compress", "fp8"}));
  EXPECT_EQ(compress.code, 2) << compress.output;
  EXPECT_NE(compress.output.find("--compress"), std::string::npos) << compress.output;
  const Outcome shape = run_strata({"bench", "--model-shape", "opt-7b", "--prompt-len", "8",
                                    "--gen-len", "8", "--hardware", "h100-test-host"});
  EXPECT_NE(shape.code, 0) << shape.output;
  EXPECT_NE(shape.output.find("opt-7b"), std::string::npos) << shape.output;
}

TEST(BenchCli, TheIoSubcommandStillRuns) {
  const fs::path dir = testing::make_temp_dir("strata-bench-io");
  const Outcome o = run_strata({"bench", "io", "--dir", dir.string(), "--size", "4MiB", "--depths",
                                "1", "--blocks", "1MiB", "--fallback-depths", "none", "--reps", "1",
                                "--max-seconds", "1"});
  EXPECT_EQ(o.code, 0) << o.output;
  EXPECT_NE(o.output.find("GB/s"), std::string::npos) << o.output;
  EXPECT_EQ(o.output.find("--model-shape"), std::string::npos) << "the model benchmark ran too:\n"
                                                               << o.output;
  const Outcome missing = run_strata({"bench", "io"});
  EXPECT_NE(missing.code, 0);
  EXPECT_NE(missing.output.find("--dir"), std::string::npos) << missing.output;
}

TEST(GenerateCli, APolicyIsIgnoredOnTheCpuWithAWarning) {
  const fs::path dir = testing::make_temp_dir("strata-generate-policy");
  const std::string in = (dir / "in.jsonl").string(), out = (dir / "out.jsonl").string();
  std::ofstream(in) << R"({"custom_id": "a", "prompt": "Once upon a time", "max_tokens": 4})"
                    << "\n";
  const Outcome o = run_strata({"generate", "--model",
                                (testing::test_data_dir() / "fixtures" / "llama_text").string(),
                                "--input", in, "--output", out, "--temperature", "0", "--threads",
                                "2", "--policy", (dir / "policy.json").string()});
  EXPECT_EQ(o.code, 0) << o.output;
  EXPECT_NE(o.output.find("ignored on the CPU"), std::string::npos) << o.output;
  std::ifstream result(out);
  std::string line;
  ASSERT_TRUE(std::getline(result, line));
  EXPECT_EQ(nlohmann::json::parse(line)["custom_id"], "a");
}

}  // namespace
}  // namespace strata
