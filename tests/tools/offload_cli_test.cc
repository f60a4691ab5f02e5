// `strata bench --model-shape` and `strata generate --policy` as users run them, the real binary
// as a subprocess: without a GPU the benchmark stops with a message that says it needs one; a
// policy file that is not JSON, or does not fit the budgets, fails with the planner's message
// naming the file; `strata bench io` still runs as a subcommand.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <map>
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


// The texts of `out` (a results file) by custom_id.
std::map<std::string, std::string> texts(const std::string& out) {
  std::map<std::string, std::string> m;
  std::ifstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    m[j["custom_id"]] = j["response"]["body"]["choices"][0]["text"];
  }
  return m;
}

TEST(GenerateCli, OnTheGpuTheOffloadingEngineWritesTheCpusGreedyText) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const fs::path dir = testing::make_temp_dir("strata-generate-offload");
  const std::string model = (testing::test_data_dir() / ".." / ".." / "models" / "demo").string();
  const std::string in = (dir / "in.jsonl").string();
  {
    std::ofstream f(in);
    for (const char* p : {"In the beginning", "And the LORD said unto Moses,", "The meaning of life is",
                          "A wise man", "Blessed are"})
      f << nlohmann::json{{"custom_id", p}, {"prompt", p}, {"max_tokens", 24}, {"temperature", 0}}.dump()
        << "\n";
  }
  // Every weight and the whole KV cache in DRAM, attention on the CPU, two GPU batches of two.
  const std::string policy = (dir / "policy.json").string();
  std::ofstream(policy) << R"({"model": "demo", "prompt_len": 16, "gen_len": 24,
    "gpu_batch_size": 2, "num_gpu_batches": 2,
    "weights": {"gpu": 0, "cpu": 1, "disk": 0, "compression": "none"},
    "kv_cache": {"gpu": 0, "cpu": 1, "disk": 0, "compression": "none", "attention": "cpu"},
    "activations": {"gpu": 1, "cpu": 0}})";
  auto run = [&](const std::string& name, std::vector<std::string> extra) {
    const std::string out = (dir / (name + ".jsonl")).string();
    std::vector<std::string> args = {"generate", "--model", model, "--input", in, "--output", out};
    args.insert(args.end(), extra.begin(), extra.end());
    const Outcome o = run_strata(args);
    EXPECT_EQ(o.code, 0) << name << ": " << o.output;
    return texts(out);
  };
  const auto cpu = run("cpu", {"--device", "cpu"});
  const auto planned = run("planned", {"--device", "cuda"});
  const auto offloaded = run("offloaded", {"--device", "cuda", "--policy", policy});
  ASSERT_EQ(cpu.size(), 5u);
  EXPECT_EQ(planned, cpu);
  EXPECT_EQ(offloaded, cpu);
}

}  // namespace
}  // namespace strata
