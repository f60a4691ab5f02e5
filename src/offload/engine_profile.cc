#include "offload/engine_profile.h"

#include <cstdio>

#include "cuda/cuda_backend.h"
#include "model/shapes.h"
#include "offload/engine.h"

namespace strata::offload {

namespace {

// A Llama-3 layout shrunk until kernel launches and small ops are all its layers cost.
Result<model::ModelConfig> tiny_llama(int64_t layers) {
  STRATA_ASSIGN_OR_RETURN(model::ModelConfig c, model::named_shape("llama-3-8b"));
  c.num_layers = layers;
  c.vocab_size = 512;
  c.hidden_size = 256;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 64;
  c.intermediate_size = 768;
  return c;
}

// Weights and hidden states on the GPU; the KV cache on the GPU, or on the CPU with attention
// there (the decode layer split around CPU attention).
planner::Policy policy_for(const EngineFixedOptions& o, bool split) {
  planner::Policy p;
  p.model = "tiny-llama";
  p.workload = {o.prompt_len, o.decode_steps + 1, 0};
  p.batch = {o.gpu_batch_size, o.num_gpu_batches};
  p.choices.attention = planner::Attention::kCpu;
  p.fractions[planner::kWg] = 1;
  p.fractions[split ? planner::kCc : planner::kCg] = 1;
  p.fractions[planner::kHg] = 1;
  return p;
}

double busy_s(const OffloadReport& r, const char* resource) {
  for (const auto& u : r.resources)
    if (u.name == resource) return u.busy_s;
  return 0;
}

// Busy seconds since the last reset_report(): the GPU's and the CPU attention workers'.
struct Busy {
  double gpu = 0, cpu_attention = 0;
};
Busy busy_of(const OffloadReport& r) { return {busy_s(r, "gpu"), busy_s(r, "cpu_attention")}; }

// One block: a prefill of every slot, then `steps` decode steps. Returns the busy seconds after
// each step.
Result<std::vector<Busy>> run_block(OffloadEngine& e, const EngineFixedOptions& o, int64_t steps) {
  const auto slots = static_cast<int32_t>(o.gpu_batch_size * o.num_gpu_batches);
  const auto prompt = static_cast<int32_t>(o.prompt_len);
  STRATA_RETURN_IF_ERROR(e.reset(slots, prompt + static_cast<int32_t>(steps)));
  std::vector<Busy> busy;
  compute::TokenBatch batch;
  std::vector<int32_t> rows;
  for (int32_t s = 0; s < slots; ++s) {
    std::vector<int32_t> ids;
    for (int32_t t = 0; t < prompt; ++t) ids.push_back(4 + (s * 7 + t) % 400);
    batch.add_sequence(s, 0, ids);
    rows.push_back(batch.size() - 1);
  }
  STRATA_RETURN_IF_ERROR(e.forward(batch, rows).status());
  busy.push_back(busy_of(e.report()));
  for (int32_t k = 0; k < steps; ++k) {
    batch = {};
    rows.clear();
    for (int32_t s = 0; s < slots; ++s) {
      const int32_t token = 5 + s;
      batch.add_sequence(s, prompt + k, {&token, 1});
      rows.push_back(batch.size() - 1);
    }
    STRATA_RETURN_IF_ERROR(e.forward(batch, rows).status());
    busy.push_back(busy_of(e.report()));
  }
  return busy;
}

struct StepBusy {
  double prefill_gpu = 0, decode_gpu = 0, decode_cpu_attention = 0;
};

// GPU busy seconds of one prefill step and of one decode step of an engine over `layers` layers,
// and the CPU attention workers' busy seconds of a decode step (none unless `split`). CPU
// attention over the tiny model's few KV bytes is all per-call cost: handing the call to the
// worker, waking the pool, splitting the heads.
// A first block warms the engine up (its plans, the backend's kernels and buffers). The report
// takes a step's last GPU spans in at the next step, so the prefill figure misses its tail and the
// decode figure counts from the end of the first decode step: both offsets are the same at every
// layer count, so the fit puts them in the per-step part, not in the per-layer slope.
Result<StepBusy> step_busy(compute::Backend& backend, ThreadPool& pool,
                                            const EngineFixedOptions& o, int64_t layers, bool split,
                                            Logger& log) {
  STRATA_ASSIGN_OR_RETURN(model::ModelConfig config, tiny_llama(layers));
  OffloadOptions opts;
  opts.policy = policy_for(o, split);
  opts.offload_dir = o.offload_dir;
  opts.synthetic_seed = 1;
  auto engine = OffloadEngine::create(config, nullptr, opts, backend, pool, log);
  const std::string what =
      std::string(split ? "KV on the CPU, attention on the CPU" : "everything on the GPU") + ", " +
      std::to_string(layers) + " layers";
  if (!engine.is_ok()) return engine.status().with_context("engine fixed costs (" + what + ")");
  STRATA_RETURN_IF_ERROR(
      run_block(**engine, o, 2).status().with_context("engine fixed costs (" + what + ")"));
  (*engine)->reset_report();
  auto busy = run_block(**engine, o, o.decode_steps + 1);
  if (!busy.is_ok()) return busy.status().with_context("engine fixed costs (" + what + ")");
  const std::vector<Busy>& b = *busy;
  const auto steps = static_cast<double>(o.decode_steps);
  return StepBusy{b[0].gpu, (b.back().gpu - b[1].gpu) / steps,
                  (b.back().cpu_attention - b[1].cpu_attention) / steps};
}

std::string describe(const char* field, const planner::FixedPlusRate& f,
                     const std::vector<planner::TimedCall>& s, int64_t batches,
                     const char* resource = "GPU") {
  char buf[200];
  std::snprintf(
      buf, sizeof buf,
      "%s %.2f (%s busy per step = %.1f us + %.2f us x layers x GPU batches, rms relative "
      "error %.1f%% over",
      field, 1e6 / f.rate, resource, f.fixed_s * 1e6, 1e6 / f.rate, 100 * f.rms_relative);
  std::string out = buf;
  for (size_t i = 0; i < s.size(); ++i) {
    std::snprintf(buf, sizeof buf, "%s %.0f layers %.1f us", i ? "," : "",
                  s[i].x / static_cast<double>(batches), s[i].seconds * 1e6);
    out += buf;
  }
  return out + ")";
}

}  // namespace

EngineFixedOptions engine_fixed_options(bool quick, const std::filesystem::path& offload_dir) {
  EngineFixedOptions o;
  o.offload_dir = offload_dir;
  if (!quick) {
    o.layer_counts = {2, 4, 8};
    o.decode_steps = 24;
  }
  return o;
}

Result<EngineFixedCosts> measure_engine_fixed_costs(
    compute::Backend& backend, ThreadPool& pool, const EngineFixedOptions& o, Logger& log,
    const std::function<void(const std::string& what, int done, int total)>& progress) {
  if (!cuda::is_cuda_backend(backend))
    return unsupported("engine fixed costs: the engine needs the CUDA backend");
  if (o.layer_counts.size() < 2 || o.decode_steps < 1 || o.prompt_len < 1 || o.gpu_batch_size < 1 ||
      o.num_gpu_batches < 1)
    return invalid_argument(
        "engine fixed costs: needs two layer counts, a prompt, a decode step and a batch");
  EngineFixedCosts c;
  const int total = static_cast<int>(2 * o.layer_counts.size());
  int done = 0;
  const std::string what = "engine fixed costs per layer";
  if (progress) progress(what, 0, total);
  for (bool split : {false, true}) {
    for (int64_t layers : o.layer_counts) {
      STRATA_ASSIGN_OR_RETURN(auto busy, step_busy(backend, pool, o, layers, split, log));
      const double x = static_cast<double>(layers * o.num_gpu_batches);
      if (!split)
        c.prefill_samples.push_back({x, busy.prefill_gpu});  // prefill attention is on the GPU either way
      (split ? c.decode_split_samples : c.decode_samples).push_back({x, busy.decode_gpu});
      if (split) c.cpu_attention_samples.push_back({x, busy.decode_cpu_attention});
      if (progress) progress(what, ++done, total);
    }
  }
  STRATA_ASSIGN_OR_RETURN(
      c.prefill, planner::fit_fixed_plus_rate(c.prefill_samples, "gpu.fixed.prefill_layer_us"));
  STRATA_ASSIGN_OR_RETURN(
      c.decode, planner::fit_fixed_plus_rate(c.decode_samples, "gpu.fixed.decode_layer_us"));
  STRATA_ASSIGN_OR_RETURN(
      c.decode_split,
      planner::fit_fixed_plus_rate(c.decode_split_samples, "gpu.fixed.decode_split_layer_us"));
  STRATA_ASSIGN_OR_RETURN(
      c.cpu_attention, planner::fit_fixed_plus_rate(c.cpu_attention_samples, "cpu attention per call"));
  c.cpu_attention_call_us = 1e6 / c.cpu_attention.rate;
  c.fixed.prefill_layer_us = 1e6 / c.prefill.rate;
  c.fixed.decode_layer_us = 1e6 / c.decode.rate;
  c.fixed.decode_split_layer_us = 1e6 / c.decode_split.rate;
  char head[240];
  std::snprintf(head, sizeof head,
                "engine fixed costs (the offloading engine over a synthetic Llama of hidden 256, "
                "%lld GPU batches of "
                "%lld sequences, %lld-token prompts, GPU busy time from its report): ",
                static_cast<long long>(o.num_gpu_batches), static_cast<long long>(o.gpu_batch_size),
                static_cast<long long>(o.prompt_len));
  c.text = head +
           describe("gpu.fixed.prefill_layer_us", c.prefill, c.prefill_samples, o.num_gpu_batches) +
           "; " +
           describe("gpu.fixed.decode_layer_us", c.decode, c.decode_samples, o.num_gpu_batches) +
           "; " +
           describe("gpu.fixed.decode_split_layer_us", c.decode_split, c.decode_split_samples,
                    o.num_gpu_batches) +
           "; " +
           describe("cpu attention per call in the engine, us", c.cpu_attention,
                    c.cpu_attention_samples, o.num_gpu_batches, "CPU attention");
  return c;
}

}  // namespace strata::offload
