// `strata plan` as users run it, the real binary as a subprocess: --policy evaluates a given
// policy (FlexGen's OPT-175B policy on its T4 machine) beside the planner's choice, in text and
// JSON; bad policy files are named with their field; --length-mix plans a job of mixed lengths;
// mixture-of-experts models are planned, and one whose layers differ is refused.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "testing/test_data.h"

namespace strata {
namespace {

struct Outcome {
  int code = -1;
  std::string out;  // stdout
  std::string all;  // stdout and stderr
};

Outcome run_strata(const std::vector<std::string>& args) {
  const std::string err = (testing::make_temp_dir("strata-plan-cli") / "stderr").string();
  std::string cmd = std::string("'") + STRATA_BINARY + "'";
  for (const auto& a : args) cmd += " '" + a + "'";
  cmd += " 2>'" + err + "'";
  Outcome o;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return o;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) o.out.append(buf.data(), n);
  const int status = pclose(p);
  o.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  std::ifstream e(err);
  o.all = o.out + std::string(std::istreambuf_iterator<char>(e), {});
  return o;
}

// FlexGen's OPT-175B policy for its T4 machine (its benchmark's --percent 0 50 0 0 0 100
// --gpu-batch-size 32 --num-gpu-batches 8 --cpu: weights half in DRAM and half on disk, the KV
// cache on disk with attention on the CPU, hidden states in DRAM), double-buffered weights.
const char* kFlexGen175b = R"({"model": "opt-175b", "prompt_len": 512, "gen_len": 32,
  "gpu_batch_size": 32, "num_gpu_batches": 8, "prefetch_slots": 2,
  "weights": {"gpu": 0, "cpu": 0.5, "disk": 0.5},
  "kv_cache": {"gpu": 0, "cpu": 0, "disk": 1, "attention": "cpu"},
  "activations": {"gpu": 0, "cpu": 1}})";

std::vector<std::string> t4_args(const std::string& policy, std::vector<std::string> more = {}) {
  std::vector<std::string> a = {"plan",     "--hardware", "t4-flexgen", "--gpu-mem", "16GiB", "--cpu-mem",
                                "200GiB",   "--disk-mem", "1500GiB",    "--policy",  policy};
  a.insert(a.end(), more.begin(), more.end());
  return a;
}

std::string write(const std::string& name, const std::string& text) {
  const std::string path = (testing::make_temp_dir("strata-plan-cli") / name).string();
  std::ofstream(path) << text;
  return path;
}

TEST(PlanCli, AGivenPolicyIsEvaluatedBesideThePlannersChoice) {
  const std::string file = write("flexgen-175b.json", kFlexGen175b);
  // The model and the lengths come from the policy file.
  const Outcome text = run_strata(t4_args(file));
  ASSERT_EQ(text.code, 0) << text.all;
  for (const char* want : {"flexgen-175b.json", "planner's choice", "opt-175b, 512 prompt + 32 generated",
                           "32 x 8 = 256", "predicted tokens/s", "decode step (s)", "memory disk", "disk_read"})
    EXPECT_NE(text.out.find(want), std::string::npos) << want << "\n" << text.out;

  const Outcome json = run_strata(t4_args(file, {"--json"}));
  ASSERT_EQ(json.code, 0) << json.all;
  const auto j = nlohmann::json::parse(json.out);
  const auto& given = j.at("given");
  const auto& planned = j.at("planned");
  EXPECT_EQ(given.at("gpu_batch_size"), 32);
  EXPECT_EQ(given.at("num_gpu_batches"), 8);
  EXPECT_EQ(given.at("kv_cache").at("disk"), 1.0);
  // The search is never worse than the policy it is shown beside, and both fit the budgets.
  const double given_tps = given.at("predicted").at("tokens_per_s");
  const double planned_tps = planned.at("predicted").at("tokens_per_s");
  EXPECT_GT(given_tps, 0);
  EXPECT_GE(planned_tps, given_tps);
  for (const auto* p : {&given, &planned}) {
    EXPECT_LE(p->at("predicted").at("bytes").at("gpu").get<uint64_t>(), 16ull << 30);
    EXPECT_LE(p->at("predicted").at("bytes").at("cpu").get<uint64_t>(), 200ull << 30);
  }
  // Both predictions carry the per-resource times the comparison is about.
  EXPECT_GT(given.at("predicted").at("decode").at("resources_s").at("disk_read").get<double>(), 0);

  // -o writes the planner's choice, and never over the given file.
  const std::string out = write("chosen.json", "");
  ASSERT_EQ(run_strata(t4_args(file, {"-o", out})).code, 0);
  std::ifstream in(out);
  const auto chosen = nlohmann::json::parse(in);
  EXPECT_EQ(chosen.at("predicted").at("tokens_per_s"), planned.at("predicted").at("tokens_per_s"));
  const Outcome same = run_strata(t4_args(file, {"-o", file}));
  EXPECT_NE(same.code, 0);
  EXPECT_NE(same.all.find("is the --policy file"), std::string::npos) << same.all;
}

TEST(PlanCli, BadPolicyFilesAreNamedWithTheirField) {
  const std::string missing = (testing::make_temp_dir("strata-plan-cli") / "nowhere.json").string();
  Outcome o = run_strata(t4_args(missing));
  EXPECT_EQ(o.code, 2) << o.all;
  EXPECT_NE(o.all.find(missing + ": cannot open"), std::string::npos) << o.all;

  const std::string broken = write("broken.json", "{\"gpu_batch_size\": 8,");
  o = run_strata(t4_args(broken));
  EXPECT_NE(o.code, 0);
  EXPECT_NE(o.all.find(broken + ": not valid JSON"), std::string::npos) << o.all;

  std::string text = kFlexGen175b;
  text.replace(text.find("\"gpu\": 0, \"cpu\": 0.5"), 8, "\"gpu\": 1.5");
  const std::string field = write("field.json", text);
  o = run_strata(t4_args(field));
  EXPECT_NE(o.code, 0);
  EXPECT_NE(o.all.find(field + ": weights.gpu: must be a number in [0, 1]"), std::string::npos) << o.all;

  // All of OPT-175B's weights on a 16 GiB GPU: the file and the short tier are named.
  const std::string big = write("too-big.json", R"({"model": "opt-175b", "prompt_len": 512, "gen_len": 32,
      "gpu_batch_size": 1, "num_gpu_batches": 1, "weights": {"gpu": 1}, "kv_cache": {"gpu": 1},
      "activations": {"gpu": 1}})");
  o = run_strata(t4_args(big));
  EXPECT_NE(o.code, 0);
  EXPECT_NE(o.all.find("too-big.json"), std::string::npos) << o.all;
  EXPECT_NE(o.all.find("gpu tier short by"), std::string::npos) << o.all;
}

TEST(PlanCli, AJobOfMixedLengthsIsPlannedForItsMix) {
  const Outcome o = run_strata({"plan", "--model-shape", "opt-1.3b", "--hardware", "l4", "--length-mix",
                                "128:32:300,512:32:100", "--json", "-o", "-"});
  ASSERT_EQ(o.code, 0) << o.all;
  const auto j = nlohmann::json::parse(o.out);
  EXPECT_EQ(j.at("prompt_len"), 512);  // memory for the longest
  EXPECT_EQ(j.at("requests"), 400);
  ASSERT_EQ(j.at("mix").size(), 2u);
  EXPECT_EQ(j.at("mix")[0].at("count"), 300);
  EXPECT_GT(j.at("predicted").at("job_s").get<double>(), 0);
  EXPECT_EQ(j.value("continuous", false), true);  // generate's default schedule
  const Outcome fixed = run_strata({"plan", "--model-shape", "opt-1.3b", "--hardware", "l4", "--length-mix",
                                    "128:32:300,512:32:100", "--schedule", "fixed", "--json", "-o", "-"});
  ASSERT_EQ(fixed.code, 0) << fixed.all;
  EXPECT_FALSE(nlohmann::json::parse(fixed.out).value("continuous", false));
  // Short answers beside a few long ones: the summary says how many sequences pages hold.
  const Outcome paged = run_strata({"plan", "--model-shape", "opt-1.3b", "--hardware", "l4", "--gpu-mem", "4GiB",
                                    "--cpu-mem", "16GiB", "--length-mix", "64:16:900,64:900:10", "-o", "-"});
  ASSERT_EQ(paged.code, 0) << paged.all;
  EXPECT_NE(paged.out.find("paged KV: about"), std::string::npos) << paged.out;

  const Outcome bad = run_strata({"plan", "--model-shape", "opt-1.3b", "--hardware", "l4", "--length-mix", "128-32"});
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.all.find("--length-mix: '128-32'"), std::string::npos) << bad.all;
  const Outcome none = run_strata({"plan", "--model-shape", "opt-1.3b", "--hardware", "l4"});
  EXPECT_NE(none.code, 0);
  EXPECT_NE(none.all.find("--prompt-len"), std::string::npos) << none.all;
}

// Mixtral does not fit a 24 GiB GPU: the plan streams its experts from DRAM. A Qwen3-MoE whose
// first layer is dense is refused, naming the field and the way to run it.
TEST(PlanCli, MixtureOfExpertsModelsArePlannedAndLayersThatDifferAreRefused) {
  const Outcome o = run_strata({"plan", "--model-shape", "mixtral-8x7b", "--hardware", "rtx-4090", "--gpu-mem",
                                "24GiB", "--cpu-mem", "100GiB", "--prompt-len", "512", "--gen-len", "256", "--json",
                                "-o", "-"});
  ASSERT_EQ(o.code, 0) << o.all;
  const auto j = nlohmann::json::parse(o.out);
  EXPECT_EQ(j.at("model"), "mixtral-8x7b");
  EXPECT_GT(j.at("weights").at("cpu").get<double>(), 0.5);
  EXPECT_GT(j.at("predicted").at("tokens_per_s").get<double>(), 0);

  const std::filesystem::path dir = testing::make_temp_dir("strata-plan-cli") / "qwen3-moe-dense-first";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "config.json") << R"({"model_type": "qwen3_moe", "vocab_size": 151936, "hidden_size": 2048,
      "intermediate_size": 6144, "moe_intermediate_size": 768, "num_hidden_layers": 48,
      "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128, "max_position_embeddings": 40960,
      "num_experts": 128, "num_experts_per_tok": 8, "mlp_only_layers": [0]})";
  const Outcome refused = run_strata({"plan", "--model", dir.string(), "--hardware", "rtx-4090", "--prompt-len",
                                      "512", "--gen-len", "256", "-o", "-"});
  EXPECT_NE(refused.code, 0);
  for (const char* want : {"qwen3-moe-dense-first", "mlp_only_layers [0]", "--policy none"})
    EXPECT_NE(refused.all.find(want), std::string::npos) << want << "\n" << refused.all;
}

}  // namespace
}  // namespace strata
