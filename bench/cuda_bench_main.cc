// strata_cuda_bench: the CUDA backend on full-size named shapes with synthetic weights made on the
// GPU. Measures the device's two ceilings (copy bandwidth, cuBLAS fp16 GEMM rate), then per shape
// the decode step at several batch sizes (bytes that must be read per step: weights + KV cache),
// the prefill of 16 x 512 tokens (FLOP rate against the GEMM ceiling), and optionally end-to-end
// greedy generation (batch 64, 512 in / 32 out). Prints JSON lines, then a Markdown table.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <map>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "common/thread_pool.h"
#include "common/units.h"
#include "compute/transformer.h"
#include "cuda/cuda_backend.h"
#include "cuda/device.h"
#include "cuda/device_weights.h"
#include "cuda/int4_weights.h"
#include "cuda/roofline.h"
#include "model/shapes.h"
#include "model/weight_names.h"
#include "runtime/generator.h"

namespace strata {
namespace {

struct Options {
  std::vector<std::string> shapes = {"llama-3-8b", "opt-6.7b"};
  std::vector<int> batches = {1, 16, 64, 256};
  int context = 512;
  int reps = 10;
  int prefill_batch = 16, prefill_len = 512;
  bool throughput = false;
  std::vector<int> int4_batches = {1, 16};
  bool no_fuse = false;
  bool no_chain = false;
  bool no_cluster_merge = false;
  bool linear_only = false;
  bool profile_step = false;
  int gen_batch = 64, gen_in = 512, gen_out = 32;
  std::string commit = "unknown";
  std::string dtype = "f16";
};

struct Timing {
  double min_ms = 0, median_ms = 0, max_ms = 0;
};

template <typename Fn>
Timing time_it(int warmup, int reps, Fn fn) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    fn();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return {ms.front(), ms[ms.size() / 2], ms.back()};
}

std::string fmt(double v, int prec = 2) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", prec, v);
  return buf;
}

struct Row {
  std::string what, model, detail, time, rate, vs_ceiling;
};

class Bench {
 public:
  explicit Bench(Options o) : o_(std::move(o)) {}

  int run() {
    auto q = cuda::query_devices();
    if (q.devices.empty()) {
      std::fprintf(stderr, "strata_cuda_bench: no CUDA device: %s\n", q.note.c_str());
      return 2;
    }
    device_ = q.devices[0].name;
    act_ = o_.dtype == "bf16" ? DType::kBF16 : DType::kF16;
    auto bw = cuda::measure_copy_bandwidth(0, uint64_t{2} << 30, 20);
    auto gemm = cuda::measure_gemm_rate(0, act_, 8192, 8192, 8192, 10);
    if (!bw.is_ok() || !gemm.is_ok()) {
      std::fprintf(stderr, "roofline failed: %s %s\n", bw.status().to_string().c_str(),
                   gemm.status().to_string().c_str());
      return 1;
    }
    copy_bw_ = *bw;
    gemm_rate_ = *gemm;
    emit("{\"bench\":\"copy_bandwidth\",\"bytes\":" + std::to_string(uint64_t{2} << 30) +
         ",\"gbps\":" + fmt(copy_bw_ / 1e9, 1) + "}");
    emit("{\"bench\":\"gemm_rate\",\"m\":8192,\"n\":8192,\"k\":8192,\"dtype\":\"" + o_.dtype +
         "\",\"tflops\":" + fmt(gemm_rate_ / 1e12, 1) + "}");
    rows_.push_back({"device copy (read+write)", "-", "2 GiB D2D", "-",
                     fmt(copy_bw_ / 1e9, 0) + " GB/s", "ceiling"});
    rows_.push_back({"cuBLAS GEMM " + o_.dtype, "-", "8192^3", "-",
                     fmt(gemm_rate_ / 1e12, 0) + " TFLOP/s", "ceiling"});
    for (const auto& shape : o_.shapes) {
      Status s = run_shape(shape);
      if (!s.is_ok()) {
        std::fprintf(stderr, "%s: %s\n", shape.c_str(), s.to_string().c_str());
        return 1;
      }
    }
    std::printf(
        "\ndevice: %s, commit %s, activations %s%s%s%s, %d timed repetitions after warm-up "
        "(median; min-max in the JSON lines)\n\n",
        device_.c_str(), o_.commit.c_str(), o_.dtype.c_str(), o_.no_fuse ? ", op fusion off" : "",
        o_.no_chain ? ", chained launches off" : "",
        o_.no_cluster_merge ? ", decode attention splits merged through global memory" : "",
        o_.reps);
    std::printf("| bench | model | case | median | rate | vs ceiling |\n|---|---|---|---|---|---|\n");
    for (const auto& r : rows_)
      std::printf("| %s | %s | %s | %s | %s | %s |\n", r.what.c_str(), r.model.c_str(),
                  r.detail.c_str(), r.time.c_str(), r.rate.c_str(), r.vs_ceiling.c_str());
    return 0;
  }

 private:
  void emit(const std::string& json_body) {
    // Every line names the device and commit.
    std::string line = json_body;
    line.insert(line.size() - 1, ",\"device\":\"" + device_ + "\",\"commit\":\"" + o_.commit + "\"");
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
  }

  std::string timing_json(const Timing& t) {
    return "\"reps\":" + std::to_string(o_.reps) + ",\"min_ms\":" + fmt(t.min_ms, 3) +
           ",\"median_ms\":" + fmt(t.median_ms, 3) + ",\"max_ms\":" + fmt(t.max_ms, 3);
  }

  Status run_shape(const std::string& shape) {
    STRATA_ASSIGN_OR_RETURN(model::ModelConfig config, model::named_shape(shape));
    cuda::CudaBackendOptions bo;
    bo.activation_dtype = act_;
    bo.fuse_ops = !o_.no_fuse;
    STRATA_ASSIGN_OR_RETURN(auto backend, cuda::make_cuda_backend(bo));
    STRATA_RETURN_IF_ERROR(run_dense(shape, config, *backend));
    if (!o_.int4_batches.empty()) STRATA_RETURN_IF_ERROR(run_int4(shape, config, *backend));
    return Status::ok();
  }

  // Decode bytes: every weight but the embedding tables (of which a step reads only the rows of
  // its tokens); a tied head reads the token table in full.
  static uint64_t decode_weight_bytes(const model::ModelConfig& config,
                                      const compute::ModelWeights& weights) {
    uint64_t bytes = 0;
    for (const auto& spec : model::model_weights(config)) {
      if (spec.name == "embed.positions") continue;
      if (spec.name == "embed.tokens" && !config.tie_word_embeddings) continue;
      bytes += weights.get(spec.name).bytes();
    }
    if (config.tie_word_embeddings && weights.get("lm_head.weight").raw() !=
                                          weights.get("embed.tokens").raw())
      bytes += weights.get("lm_head.weight").bytes() - weights.get("embed.tokens").bytes();
    return bytes;
  }

  // The same decode steps with every linear weight (the head included) in int4-g64, quantised
  // on the GPU; the speed-up is against the fp16 step of the same batch.
  Status run_int4(const std::string& shape, const model::ModelConfig& config,
                  compute::Backend& backend) {
    STRATA_ASSIGN_OR_RETURN(compute::ModelWeights weights,
                            cuda::make_device_synthetic_weights(config, backend, 1));
    STRATA_RETURN_IF_ERROR(cuda::quantise_model_weights_int4(config, backend, weights));
    const uint64_t weight_bytes = decode_weight_bytes(config, weights);
    STRATA_RETURN_IF_ERROR(time_linears(shape, config, weights, backend, true));
    if (o_.linear_only) return Status::ok();
    compute::Transformer model(config, backend, std::move(weights));
    const uint64_t kv_per_token = 2ull * config.num_layers * config.kv_dim() * dtype_size(act_);
    for (int b : o_.int4_batches)
      STRATA_RETURN_IF_ERROR(decode(shape, model, backend, b, weight_bytes, kv_per_token, true));
    return Status::ok();
  }

  // linear() at batch 1 on its own, one projection of every layer in turn (so that no weight is
  // still in L2 from the call before): the weight bytes it streams per second (the decode step's
  // ceiling, without the small ops around it).
  Status time_linears(const std::string& shape, const model::ModelConfig& config,
                      const compute::ModelWeights& weights, compute::Backend& backend, bool int4) {
    const char* names[] = {"q.weight", "down.weight", "fc2.weight", "gate.weight", "fc1.weight"};
    for (const char* suffix : names) {
      std::vector<const Tensor*> layers;
      for (int l = 0; l < config.num_layers; ++l)
        if (const Tensor* lw = weights.find(model::layer_weight_name(l, suffix))) layers.push_back(lw);
      if (layers.empty()) continue;
      const Tensor* w = layers[0];
      const int64_t n = w->dim(0), k = int4 ? cuda::int4_weight_cols(*w) : w->dim(1);
      STRATA_ASSIGN_OR_RETURN(Tensor x, backend.allocate(act_, {1, k}));
      STRATA_ASSIGN_OR_RETURN(Tensor y, backend.allocate(act_, {1, n}));
      const int reps = 200;
      Timing t = time_it(1, 5, [&] {
        for (int r = 0; r < reps; ++r) backend.linear(x, *layers[r % layers.size()], nullptr, y);
        cuda::synchronize(backend);
      });
      const double us = t.median_ms * 1e3 / reps;
      const double gbps = double(w->bytes()) / (us * 1e-6) / 1e9;
      emit("{\"bench\":\"linear\",\"model\":\"" + shape + "\",\"weight\":\"" + suffix +
           "\",\"int4\":" + (int4 ? "true" : "false") + ",\"n\":" + std::to_string(n) +
           ",\"k\":" + std::to_string(k) + ",\"us\":" + fmt(us, 2) + ",\"gbps\":" +
           fmt(gbps, 1) + "}");
      rows_.push_back({std::string("linear, batch 1") + (int4 ? ", int4-g64" : ""), shape,
                       std::string(suffix) + " " + std::to_string(n) + "x" + std::to_string(k),
                       fmt(us, 1) + " us", fmt(gbps, 0) + " GB/s",
                       fmt(100 * gbps * 1e9 / copy_bw_, 1) + "% of copy BW"});
    }
    return Status::ok();
  }

  Status run_dense(const std::string& shape, const model::ModelConfig& config,
                   compute::Backend& backend_ref) {
    compute::Backend* backend = &backend_ref;
    STRATA_ASSIGN_OR_RETURN(compute::ModelWeights weights,
                            cuda::make_device_synthetic_weights(config, *backend, 1));
    const uint64_t weight_bytes = decode_weight_bytes(config, weights);
    if (!o_.int4_batches.empty())
      STRATA_RETURN_IF_ERROR(time_linears(shape, config, weights, *backend, false));
    if (o_.linear_only) return Status::ok();
    compute::Transformer model(config, *backend, std::move(weights));
    const uint64_t kv_per_token = 2ull * config.num_layers * config.kv_dim() * dtype_size(act_);

    for (int b : o_.batches) STRATA_RETURN_IF_ERROR(decode(shape, model, *backend, b, weight_bytes, kv_per_token));
    STRATA_RETURN_IF_ERROR(prefill(shape, model, config));
    if (o_.throughput) STRATA_RETURN_IF_ERROR(generate(shape, model));
    return Status::ok();
  }

  Status decode(const std::string& shape, compute::Transformer& model, compute::Backend& backend,
                int batch, uint64_t weight_bytes, uint64_t kv_per_token, bool int4 = false) {
    const std::string bench = int4 ? "decode_int4" : "decode";
    const std::string what = int4 ? "decode step, int4-g64 weights" : "decode step";
    auto cache = model.make_kv_cache(batch, o_.context + 1);
    if (!cache.is_ok()) {
      emit("{\"bench\":\"" + bench + "\",\"model\":\"" + shape + "\",\"batch\":" + std::to_string(batch) +
           ",\"context\":" + std::to_string(o_.context) + ",\"error\":\"does not fit\"}");
      rows_.push_back({what, shape, "batch " + std::to_string(batch) + ", ctx " +
                       std::to_string(o_.context), "-", "KV cache does not fit", "-"});
      return Status::ok();
    }
    uint64_t seed = 1000;
    for (auto& layer : cache->layers) {  // earlier tokens' keys and values: random, not zeros
      STRATA_RETURN_IF_ERROR(cuda::fill_uniform(backend, layer.k, seed++, 0.0f, 1.0f));
      STRATA_RETURN_IF_ERROR(cuda::fill_uniform(backend, layer.v, seed++, 0.0f, 1.0f));
    }
    compute::TokenBatch step;
    std::vector<int32_t> rows;
    for (int32_t s = 0; s < batch; ++s) {
      const int32_t tok = (s * 7919 + 11) % static_cast<int32_t>(model.config().vocab_size);
      step.add_sequence(s, o_.context, {&tok, 1});
      rows.push_back(s);
    }
    Status err;
    Timing t = time_it(2, o_.reps, [&] {
      auto r = model.forward(step, *cache, rows);
      if (!r.is_ok()) err = r.status();
    });
    STRATA_RETURN_IF_ERROR(err);
    // The same step issued behind a 50 ms hold of the stream: the host has enqueued all of it by
    // the time the GPU starts, so what is left beyond the hold is the step's GPU time alone.
    constexpr double kHoldMs = 50.0;
    Timing held = time_it(1, std::max(3, o_.reps / 2), [&] {
      if (Status h = cuda::hold_stream(backend, kHoldMs * 1e3); !h.is_ok()) err = h;
      auto r = model.forward(step, *cache, rows);
      if (!r.is_ok()) err = r.status();
    });
    STRATA_RETURN_IF_ERROR(err);
    const double gpu_ms = held.median_ms - kHoldMs;
    if (o_.profile_step) {  // one more step, inside the profiler's capture
      cuda::profiler_capture(backend, true);
      auto r = model.forward(step, *cache, rows);
      cuda::profiler_capture(backend, false);
      if (!r.is_ok()) return r.status();
    }
    const uint64_t bytes = weight_bytes + uint64_t(batch) * o_.context * kv_per_token;
    const double gbps = bytes / (t.median_ms * 1e-3) / 1e9;
    const double pct = 100.0 * bytes / (t.median_ms * 1e-3) / copy_bw_;
    std::string speedup, speedup_json;
    const std::string key = shape + "/" + std::to_string(batch);
    if (!int4) {
      dense_ms_[key] = t.median_ms;
    } else if (dense_ms_.count(key)) {
      const double x = dense_ms_[key] / t.median_ms;
      speedup = ", " + fmt(x, 2) + "x fp16";
      speedup_json = ",\"speedup_vs_fp16\":" + fmt(x, 2);
    }
    emit("{\"bench\":\"" + bench + "\",\"model\":\"" + shape + "\",\"batch\":" + std::to_string(batch) +
         ",\"context\":" + std::to_string(o_.context) + "," + timing_json(t) +
         ",\"bytes\":" + std::to_string(bytes) + ",\"gbps\":" + fmt(gbps, 1) +
         ",\"pct_copy_bw\":" + fmt(pct, 1) +
         ",\"gpu_only_ms\":" + fmt(gpu_ms, 3) +
         ",\"tokens_per_s\":" + fmt(batch / (t.median_ms * 1e-3), 1) + speedup_json + "}");
    rows_.push_back({what, shape,
                     "batch " + std::to_string(batch) + ", ctx " + std::to_string(o_.context) +
                         ", reads " + format_bytes(bytes),
                     fmt(t.median_ms) + " ms (GPU alone " + fmt(gpu_ms) + ")", fmt(gbps, 0) + " GB/s, " +
                         fmt(batch / (t.median_ms * 1e-3), 0) + " tok/s",
                     fmt(pct, 1) + "% of copy BW" + speedup});
    return Status::ok();
  }

  Status prefill(const std::string& shape, compute::Transformer& model,
                 const model::ModelConfig& c) {
    const int b = o_.prefill_batch, len = o_.prefill_len;
    STRATA_ASSIGN_OR_RETURN(compute::KvCache cache, model.make_kv_cache(b, len));
    compute::TokenBatch batch;
    std::vector<int32_t> rows, prompt(len);
    for (int32_t s = 0; s < b; ++s) {
      for (int i = 0; i < len; ++i)
        prompt[i] = static_cast<int32_t>((s * 131 + i * 7919 + 3) % c.vocab_size);
      batch.add_sequence(s, 0, prompt);
      rows.push_back(batch.size() - 1);
    }
    Status err;
    Timing t = time_it(2, std::max(3, o_.reps / 2), [&] {
      auto r = model.forward(batch, cache, rows);
      if (!r.is_ok()) err = r.status();
    });
    STRATA_RETURN_IF_ERROR(err);
    // FLOPs: every layer's linear weights over all tokens, the head over the logit rows, and
    // causal attention (q·k and p·v over s(s+1)/2 pairs per head).
    double linear = 0;
    for (const auto& spec : model::model_weights(c))
      if (spec.shape.size() == 2 && spec.name.rfind("layers.", 0) == 0)
        linear += double(spec.shape[0]) * spec.shape[1];
    const double tokens = double(b) * len;
    const double flops = 2 * linear * tokens + 2.0 * b * c.vocab_size * c.embed_dim() +
                         4.0 * b * (double(len) * (len + 1) / 2) * c.head_dim * c.num_heads * c.num_layers;
    const double rate = flops / (t.median_ms * 1e-3);
    emit("{\"bench\":\"prefill\",\"model\":\"" + shape + "\",\"batch\":" + std::to_string(b) +
         ",\"len\":" + std::to_string(len) + "," + timing_json(t) + ",\"tflops\":" +
         fmt(rate / 1e12, 1) + ",\"pct_gemm_rate\":" + fmt(100 * rate / gemm_rate_, 1) +
         ",\"tokens_per_s\":" + fmt(tokens / (t.median_ms * 1e-3), 0) + "}");
    rows_.push_back({"prefill", shape, std::to_string(b) + " x " + std::to_string(len),
                     fmt(t.median_ms) + " ms",
                     fmt(rate / 1e12, 0) + " TFLOP/s, " + fmt(tokens / (t.median_ms * 1e-3), 0) + " tok/s",
                     fmt(100 * rate / gemm_rate_, 1) + "% of GEMM rate"});
    return Status::ok();
  }

  // Greedy generation two ways: the engine loop (forward + argmax of each logits row on the
  // host) and runtime::Generator (which also computes every token's logprob on the CPU).
  Status generate(const std::string& shape, compute::Transformer& model) {
    const int n = o_.gen_batch, in = o_.gen_in, out = o_.gen_out;
    const int32_t vocab = static_cast<int32_t>(model.config().vocab_size);
    std::vector<std::vector<int32_t>> prompts(n, std::vector<int32_t>(in));
    for (int s = 0; s < n; ++s)
      for (int i = 0; i < in; ++i) prompts[s][i] = (s * 977 + i * 7919 + 5) % vocab;
    ThreadPool pool(0);
    Status err;
    auto engine = [&] {
      auto cache = model.make_kv_cache(n, in + out);
      if (!cache.is_ok()) return err = cache.status(), void();
      compute::TokenBatch batch;
      std::vector<int32_t> rows, next(n);
      for (int s = 0; s < n; ++s) {
        batch.add_sequence(s, 0, prompts[s]);
        rows.push_back(batch.size() - 1);
      }
      for (int step = 0; step < out; ++step) {
        auto logits = model.forward(batch, *cache, rows);
        if (!logits.is_ok()) return err = logits.status(), void();
        const float* l = logits->data<float>();
        pool.parallel_for(n, [&](int64_t b0, int64_t b1) {
          for (int64_t r = b0; r < b1; ++r)
            next[r] = static_cast<int32_t>(std::max_element(l + r * vocab, l + (r + 1) * vocab) - (l + r * vocab));
        });
        batch = {};
        rows.clear();
        for (int s = 0; s < n; ++s) {
          batch.add_sequence(s, in + step, {&next[s], 1});
          rows.push_back(s);
        }
      }
    };
    Timing t = time_it(1, 3, engine);
    STRATA_RETURN_IF_ERROR(err);
    const double tps = double(n) * out / (t.median_ms * 1e-3);
    emit("{\"bench\":\"generate\",\"loop\":\"engine\",\"model\":\"" + shape + "\",\"batch\":" +
         std::to_string(n) + ",\"in\":" + std::to_string(in) + ",\"out\":" + std::to_string(out) +
         ",\"reps\":3,\"min_ms\":" + fmt(t.min_ms, 1) + ",\"median_ms\":" + fmt(t.median_ms, 1) +
         ",\"max_ms\":" + fmt(t.max_ms, 1) + ",\"tokens_per_s\":" + fmt(tps, 1) + "}");
    rows_.push_back({"generate (engine loop, host argmax)", shape,
                     std::to_string(n) + " x " + std::to_string(in) + " in / " + std::to_string(out) + " out",
                     fmt(t.median_ms, 0) + " ms", fmt(tps, 0) + " tok/s", "-"});

    runtime::Generator gen(model);
    std::vector<runtime::GenerationRequest> reqs(n);
    for (int s = 0; s < n; ++s) {
      reqs[s].prompt = prompts[s];
      reqs[s].max_new_tokens = out;
      reqs[s].ignore_eos = true;
    }
    Timing g = time_it(1, 3, [&] {
      auto r = gen.generate(reqs);
      if (!r.is_ok()) err = r.status();
    });
    STRATA_RETURN_IF_ERROR(err);
    const double gtps = double(n) * out / (g.median_ms * 1e-3);
    emit("{\"bench\":\"generate\",\"loop\":\"generator\",\"model\":\"" + shape + "\",\"batch\":" +
         std::to_string(n) + ",\"in\":" + std::to_string(in) + ",\"out\":" + std::to_string(out) +
         ",\"reps\":3,\"min_ms\":" + fmt(g.min_ms, 1) + ",\"median_ms\":" + fmt(g.median_ms, 1) +
         ",\"max_ms\":" + fmt(g.max_ms, 1) + ",\"tokens_per_s\":" + fmt(gtps, 1) + "}");
    rows_.push_back({"generate (runtime::Generator, GPU logit statistics)", shape,
                     std::to_string(n) + " x " + std::to_string(in) + " in / " + std::to_string(out) + " out",
                     fmt(g.median_ms, 0) + " ms", fmt(gtps, 0) + " tok/s", "-"});
    return Status::ok();
  }

  Options o_;
  std::string device_;
  DType act_ = DType::kF16;
  double copy_bw_ = 0, gemm_rate_ = 0;
  std::vector<Row> rows_;
  std::map<std::string, double> dense_ms_;  // fp16 decode step by "shape/batch"
};

}  // namespace
}  // namespace strata

int main(int argc, char** argv) {
  strata::Options o;
  CLI::App app{"strata_cuda_bench: the CUDA backend on named shapes with synthetic weights"};
  app.add_option("--shapes", o.shapes, "named shapes")->delimiter(',')->capture_default_str();
  app.add_option("--batches", o.batches, "decode batch sizes")->delimiter(',')->capture_default_str();
  app.add_option("--context", o.context, "decode context length")->capture_default_str();
  app.add_option("--reps", o.reps, "timed repetitions")->capture_default_str();
  app.add_flag("--throughput", o.throughput, "also time greedy generation, batch 64, 512 in / 32 out");
  app.add_option("--int4-batches", o.int4_batches,
                 "decode batch sizes to time again with int4-g64 weights (empty: none)")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--commit", o.commit, "commit to record")->capture_default_str();
  app.add_option("--dtype", o.dtype, "activations: f16 or bf16")
      ->check(CLI::IsMember({"f16", "bf16"}))
      ->capture_default_str();
  app.add_flag("--linear-only", o.linear_only,
               "time only the batch-1 linear micro-bench (fp16 and, unless --int4-batches is empty, int4)");
  app.add_flag("--no-fuse", o.no_fuse, "launch every op on its own (A/B timing of the op fusions)");
  app.add_flag(
      "--no-chain", o.no_chain,
      "launch every kernel only once the one before has finished (A/B timing of chained launches)");
  app.add_flag("--no-cluster-merge", o.no_cluster_merge,
               "decode attention: merge a row's context splits through global memory instead of a "
               "thread-block cluster (A/B timing)");
  app.add_flag("--profile-step", o.profile_step,
               "run one more decode step of each case inside a profiler's capture (ncu --profile-from-start off)");
  CLI11_PARSE(app, argc, argv);
  strata::cuda::set_chained_launches(!o.no_chain);
  strata::cuda::set_attention_cluster_merge(!o.no_cluster_merge);
  return strata::Bench(o).run();
}
