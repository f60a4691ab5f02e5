// strata eval: perplexity of a model on a text file, with weights and/or KV cache through int4-g64
// (or as a policy file says), to measure what compression costs in quality. On the CPU every
// variant computes in F32, so the only difference between them is the compression.
#include <cstdio>
#include <fstream>
#include <sstream>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "common/json_read.h"
#include "model/model_dir.h"
#include "planner/policy.h"
#include "runtime/context.h"
#include "runtime/convert.h"
#include "runtime/eval.h"
#include "runtime/weight_store_source.h"
#include "storage/weight_store.h"
#include "text/tokenizer.h"

namespace strata::tools {

namespace {

struct EvalCliOptions {
  std::string model;
  std::string text;
  std::string policy;
  std::string compress_weights = "none";
  std::string compress_kv = "none";
  int context = 0;
  int batch = 8;
  int threads = 0;
  std::string device = "cpu";
  bool json = false;
};

Result<bool> parse_compression(const std::string& flag, const std::string& value) {
  if (value == "none") return false;
  if (value == "int4" || value == "int4-g64") return true;
  return invalid_argument(flag + " must be none or int4 (got '" + value + "')");
}

Status run(const EvalCliOptions& o) {
  STRATA_ASSIGN_OR_RETURN(bool int4_weights, parse_compression("--compress-weights", o.compress_weights));
  STRATA_ASSIGN_OR_RETURN(bool int4_kv, parse_compression("--compress-kv", o.compress_kv));
  if (!o.policy.empty()) {
    Result<nlohmann::json> parsed = read_json_file(o.policy, JsonLimits{.max_bytes = 16 << 20});
    if (!parsed.is_ok()) return parsed.status().with_context("--policy");
    const nlohmann::json& j = *parsed;
    STRATA_ASSIGN_OR_RETURN(planner::Policy p, planner::parse_policy(j, o.policy));
    int4_weights = p.choices.weights == planner::Compression::kInt4;
    int4_kv = p.choices.kv == planner::Compression::kInt4;
  }

  std::ifstream in(o.text, std::ios::binary);
  if (!in) return not_found(o.text + ": cannot read the text file");
  std::stringstream buf;
  buf << in.rdbuf();

  runtime::ContextOptions copts;
  copts.device = o.device;
  copts.threads = o.threads;
  copts.int4_kv = int4_kv;
  copts.cpu_bf16_matmul = false;  // quality, not speed: every variant computes in F32
  STRATA_ASSIGN_OR_RETURN(auto ctx, runtime::make_context(copts));
  STRATA_ASSIGN_OR_RETURN(auto tokenizer, text::Tokenizer::load_dir(o.model));
  const bool store = storage::is_weight_store(o.model);
  if (store && int4_weights)
    return invalid_argument(o.model + " is a weight store: its weights are as `strata convert` wrote them; "
                            "evaluate the Hugging Face directory with --compress-weights int4 instead");
  STRATA_ASSIGN_OR_RETURN(model::ModelFiles files, store ? runtime::open_weight_store_dir(o.model, ctx->logger)
                                                         : model::open_model_dir(o.model));
  if (int4_kv && files.config.head_dim % 64 != 0)
    return unsupported("int4 KV groups 64 values along head_dim, and this model's head_dim is " +
                       std::to_string(files.config.head_dim));
  std::unique_ptr<model::WeightSource> source = std::move(files.weights);
  if (int4_weights) source = runtime::make_int4_roundtrip_source(std::move(source));
  STRATA_ASSIGN_OR_RETURN(compute::ModelWeights weights,
                          compute::load_weights(files.config, *source, *ctx->backend));
  compute::Transformer model(files.config, *ctx->backend, std::move(weights));

  const std::vector<int32_t> tokens = tokenizer->encode(buf.str());
  runtime::EvalOptions eopts;
  eopts.context = o.context;
  eopts.max_batch = o.batch;
  const bool tty = isatty(fileno(stderr));
  STRATA_ASSIGN_OR_RETURN(
      runtime::EvalResult r,
      runtime::evaluate_perplexity(model, tokens, eopts, [&](int64_t done, int64_t total) {
        if (tty) std::fprintf(stderr, "\reval: %lld/%lld tokens", static_cast<long long>(done),
                              static_cast<long long>(total));
      }));
  if (tty) std::fprintf(stderr, "\n");
  const char* w = int4_weights ? "int4-g64" : "as stored";
  const char* kv = int4_kv ? "int4-g64" : "full precision";
  if (o.json) {
    nlohmann::json j = {{"model", o.model}, {"text", o.text}, {"weights", w}, {"kv_cache", kv},
                        {"tokens_scored", r.tokens_scored}, {"windows", r.windows},
                        {"mean_nll", r.mean_nll()}, {"perplexity", r.perplexity()},
                        {"seconds", r.seconds},
                        {"tokens_per_s", r.seconds > 0 ? r.tokens_scored / r.seconds : 0.0}};
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("weights %s, KV cache %s\n", w, kv);
    std::printf("%lld tokens scored in %d windows: mean NLL %.4f nats, perplexity %.3f\n",
                static_cast<long long>(r.tokens_scored), r.windows, r.mean_nll(), r.perplexity());
    std::printf("%.1f s, %.0f tokens/s\n", r.seconds, r.seconds > 0 ? r.tokens_scored / r.seconds : 0.0);
  }
  return Status::ok();
}

}  // namespace

void register_eval(CLI::App& app, int* exit_code) {
  static EvalCliOptions o;
  auto* cmd = app.add_subcommand("eval", "Perplexity of a model on a text file, optionally with int4 weights/KV");
  cmd->add_option("--model", o.model, "Hugging Face model directory (or a strata weight store)")->required();
  cmd->add_option("--text", o.text, "UTF-8 text file to score")->required();
  cmd->add_option("--policy", o.policy, "take the weight and KV compression from this policy file");
  cmd->add_option("--compress-weights", o.compress_weights, "none or int4")->capture_default_str();
  cmd->add_option("--compress-kv", o.compress_kv, "none or int4")->capture_default_str();
  cmd->add_option("--context", o.context, "tokens per window (0 = min(1024, model context))")
      ->capture_default_str();
  cmd->add_option("--batch", o.batch, "windows per forward")->capture_default_str();
  cmd->add_option("--threads", o.threads, "CPU threads (0 = all cores)")->capture_default_str();
  cmd->add_option("--device", o.device, "cpu or cuda")->capture_default_str();
  cmd->add_flag("--json", o.json, "print one JSON object");
  cmd->callback([exit_code] { *exit_code = report("eval", run(o)); });
}

}  // namespace strata::tools
