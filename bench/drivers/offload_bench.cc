#include "bench/drivers/offload_bench.h"

#include <cstdio>
#include <nlohmann/json.hpp>

#include "common/units.h"

namespace strata::bench {

using nlohmann::json;

namespace {

// Token ids below this are the special tokens of the OPT and Llama vocabularies (pad, bos, eos,
// unk); benchmark prompts avoid them.
constexpr int32_t kFirstPlainToken = 4;

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

double predicted_prefill_tokens_per_s(const OffloadBenchResult& r) {
  return r.predicted.prefill_s > 0
             ? static_cast<double>(r.sequences * r.workload.prompt_len) / r.predicted.prefill_s
             : 0;
}

double predicted_decode_tokens_per_s(const OffloadBenchResult& r) {
  return r.predicted.decode_step_s > 0
             ? static_cast<double>(r.sequences) / r.predicted.decode_step_s
             : 0;
}

// A JSON number, or null where there is no prediction to divide by.
json ratio_json(double measured, double predicted) {
  return predicted > 0 ? json(measured / predicted) : json(nullptr);
}

}  // namespace

double OffloadBenchResult::tokens_per_s() const {
  const double t = prefill_s + decode_s;
  return t > 0 ? static_cast<double>(generated_tokens) / t : 0;
}

double OffloadBenchResult::prefill_tokens_per_s() const {
  return prefill_s > 0 ? static_cast<double>(prompt_tokens) / prefill_s : 0;
}

double OffloadBenchResult::decode_tokens_per_s() const {
  const int64_t decoded = generated_tokens - sequences;
  return decode_s > 0 && decoded > 0 ? static_cast<double>(decoded) / decode_s : 0;
}

double OffloadBenchResult::decode_step_s() const {
  return decode_steps > 0 ? decode_s / decode_steps : 0;
}

std::vector<runtime::GenerationRequest> bench_requests(int64_t count, const planner::Workload& workload,
                                              int32_t vocab, uint64_t seed) {
  STRATA_CHECK(vocab > kFirstPlainToken,
               "a benchmark vocabulary needs more than the special tokens");
  uint64_t state = seed;
  std::vector<runtime::GenerationRequest> out(static_cast<size_t>(count));
  const uint64_t span = static_cast<uint64_t>(vocab - kFirstPlainToken);
  for (auto& r : out) {
    r.prompt.resize(static_cast<size_t>(workload.prompt_len));
    for (int32_t& t : r.prompt)
      t = kFirstPlainToken + static_cast<int32_t>(splitmix64(state) % span);
    r.max_new_tokens = static_cast<int32_t>(workload.gen_len);
    r.ignore_eos = true;
    r.sampling.temperature = 0;  // greedy
  }
  return out;
}

Result<OffloadBenchResult> run_offload_bench(const model::ModelConfig& config,
                                             const planner::Policy& policy,
                                             const OffloadBenchOptions& options, runtime::Context& ctx) {
  const planner::Workload& w = options.workload;
  if (w.prompt_len < 1 || w.gen_len < 1)
    return invalid_argument("the benchmark needs --prompt-len and --gen-len of at least 1");
  if (w.prompt_len + w.gen_len > config.max_position_embeddings)
    return invalid_argument(options.model + ": --prompt-len " + std::to_string(w.prompt_len) +
                            " + --gen-len " + std::to_string(w.gen_len) +
                            " exceeds the model's context of " +
                            std::to_string(config.max_position_embeddings) + " tokens");
  if (w.prompt_len + w.gen_len > policy.workload.prompt_len + policy.workload.gen_len)
    return invalid_argument(
        "the policy is for " + std::to_string(policy.workload.prompt_len) + " + " +
        std::to_string(policy.workload.gen_len) +
        " tokens per sequence, fewer than the benchmark's; plan it for this workload");
  offload::OffloadOptions eo;
  eo.policy = policy;
  eo.offload_dir = options.offload_dir;
  eo.synthetic_seed = options.seed;
  eo.trace = !options.trace.empty();
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<offload::OffloadEngine> engine,
                          offload::OffloadEngine::create(config, nullptr, eo, *ctx.backend, ctx.pool, ctx.logger));

  const int64_t block = policy.batch.block();
  runtime::Generator generator(*engine);
  if (options.warmup) {
    ctx.logger.info("bench: warm-up block of " + std::to_string(block) + " sequences");
    const auto warm = bench_requests(block, w, config.vocab_size, options.seed ^ 0x5EEDull);
    auto done = generator.generate(warm);
    if (!done.is_ok()) return done.status().with_context("the warm-up block");
    engine->reset_report();
  }
  ctx.logger.info("bench: measured block of " + std::to_string(block) + " sequences");
  const auto requests = bench_requests(block, w, config.vocab_size, options.seed);
  runtime::GenerationStats stats;
  auto done = generator.generate(requests, &stats);
  if (!done.is_ok()) return done.status().with_context("the measured block");
  const offload::OffloadReport rep = engine->report();
  if (!options.trace.empty()) STRATA_RETURN_IF_ERROR(engine->write_trace(options.trace));

  OffloadBenchResult r;
  r.report = rep;
  r.model = options.model;
  r.device = ctx.backend->name();
  r.workload = w;
  r.batch = policy.batch;
  r.sequences = block;
  r.prompt_tokens = stats.prompt_tokens;
  r.generated_tokens = stats.generated_tokens;
  r.decode_steps = stats.decode_steps;
  r.prefill_s = stats.prefill_s;
  r.decode_s = stats.decode_s;
  const double engine_s =
      rep.prefill_s + rep.decode_s > 0 ? rep.prefill_s + rep.decode_s : r.prefill_s + r.decode_s;
  for (const offload::ResourceUse& u : rep.resources)
    r.resources.push_back({u.name, u.busy_s, engine_s > 0 ? u.busy_s / engine_s : 0, u.bytes});
  r.peak_gpu_bytes = rep.peak_gpu_bytes;
  r.pinned_bytes = rep.pinned_bytes;
  r.peak_rss_bytes = rep.peak_rss_bytes;
  r.disk_bytes = rep.disk_bytes;
  r.predicted = policy.predicted;
  return r;
}

std::string format_offload_bench(const OffloadBenchResult& r) {
  std::string out;
  char line[256];
  auto add = [&](const char* fmt, auto... args) {
    std::snprintf(line, sizeof line, fmt, args...);
    out += line;
  };
  add("model        %s on %s\n", r.model.c_str(), r.device.c_str());
  add("workload     %lld prompt + %lld generated tokens; block %lld x %lld = %lld sequences\n",
      static_cast<long long>(r.workload.prompt_len), static_cast<long long>(r.workload.gen_len),
      static_cast<long long>(r.batch.gpu_batch_size),
      static_cast<long long>(r.batch.num_gpu_batches), static_cast<long long>(r.sequences));
  add("measured     %lld prompt tokens, %lld generated, prefill %.3f s, %d decode steps in %.3f "
      "s\n\n",
      static_cast<long long>(r.prompt_tokens), static_cast<long long>(r.generated_tokens),
      r.prefill_s, r.decode_steps, r.decode_s);
  add("%-20s %14s %14s %10s\n", "", "measured", "predicted", "ratio");
  auto row = [&](const char* name, double m, double p) {
    if (p > 0)
      add("%-20s %14.4f %14.4f %10.3f\n", name, m, p, m / p);
    else
      add("%-20s %14.4f %14s %10s\n", name, m, "-", "-");
  };
  row("throughput tok/s", r.tokens_per_s(), r.predicted.tokens_per_s);
  row("prefill s", r.prefill_s, r.predicted.prefill_s);
  row("decode step s", r.decode_step_s(), r.predicted.decode_step_s);
  row("prefill tok/s", r.prefill_tokens_per_s(), predicted_prefill_tokens_per_s(r));
  row("decode tok/s", r.decode_tokens_per_s(), predicted_decode_tokens_per_s(r));
  add("%-20s %14s %14s\n", "bottleneck", "",
      r.predicted.bottleneck.empty() ? "-" : r.predicted.bottleneck.c_str());
  add("\n%-14s %10s %7s %12s\n", "resource", "busy s", "busy", "bytes");
  for (const auto& u : r.resources)
    add("%-14s %10.3f %6.1f%% %12s\n", u.name.c_str(), u.busy_s, 100 * u.busy_fraction,
        format_bytes(u.bytes).c_str());
  add("\nmemory       gpu peak %s, pinned %s, resident peak %s, disk %s\n",
      format_bytes(r.peak_gpu_bytes).c_str(), format_bytes(r.pinned_bytes).c_str(),
      format_bytes(r.peak_rss_bytes).c_str(), format_bytes(r.disk_bytes).c_str());
  return out;
}

json offload_bench_json(const OffloadBenchResult& r) {
  json resources = json::array();
  for (const auto& u : r.resources)
    resources.push_back({{"name", u.name},
                         {"busy_s", u.busy_s},
                         {"busy_fraction", u.busy_fraction},
                         {"bytes", u.bytes}});
  return {
      {"model", r.model},
      {"device", r.device},
      {"prompt_len", r.workload.prompt_len},
      {"gen_len", r.workload.gen_len},
      {"gpu_batch_size", r.batch.gpu_batch_size},
      {"num_gpu_batches", r.batch.num_gpu_batches},
      {"sequences", r.sequences},
      {"prompt_tokens", r.prompt_tokens},
      {"generated_tokens", r.generated_tokens},
      {"decode_steps", r.decode_steps},
      {"measured",
       {{"tokens_per_s", r.tokens_per_s()},
        {"prefill_s", r.prefill_s},
        {"decode_s", r.decode_s},
        {"decode_step_s", r.decode_step_s()},
        {"prefill_tokens_per_s", r.prefill_tokens_per_s()},
        {"decode_tokens_per_s", r.decode_tokens_per_s()}}},
      {"predicted",
       {{"tokens_per_s", r.predicted.tokens_per_s},
        {"prefill_s", r.predicted.prefill_s},
        {"decode_step_s", r.predicted.decode_step_s},
        {"prefill_tokens_per_s", predicted_prefill_tokens_per_s(r)},
        {"decode_tokens_per_s", predicted_decode_tokens_per_s(r)},
        {"bottleneck", r.predicted.bottleneck}}},
      {"measured_over_predicted",
       {{"tokens_per_s", ratio_json(r.tokens_per_s(), r.predicted.tokens_per_s)},
        {"prefill_s", ratio_json(r.prefill_s, r.predicted.prefill_s)},
        {"decode_step_s", ratio_json(r.decode_step_s(), r.predicted.decode_step_s)}}},
      {"resources", resources},
      {"memory_bytes",
       {{"gpu_peak", r.peak_gpu_bytes},
        {"pinned", r.pinned_bytes},
        {"rss_peak", r.peak_rss_bytes},
        {"disk", r.disk_bytes}}},
  };
}

}  // namespace strata::bench
