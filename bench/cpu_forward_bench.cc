// Micro-benchmarks of the CPU reference engine on named shapes with synthetic weights:
// one linear layer, a prefill and a decode step. `make bench` runs them.
#include <benchmark/benchmark.h>

#include "runtime/context.h"
#include "runtime/load_model.h"

namespace strata {
namespace {

runtime::Context& context() {
  static auto ctx = std::move(runtime::make_context({}).value());
  return *ctx;
}

compute::Transformer& opt125m(DType dtype) {
  static auto f32 = std::move(runtime::load_synthetic_model(context(), "opt-125m", 1, DType::kF32).value());
  static auto bf16 = std::move(runtime::load_synthetic_model(context(), "opt-125m", 1, DType::kBF16).value());
  return dtype == DType::kF32 ? *f32 : *bf16;
}

void BM_Linear(benchmark::State& state) {
  const int64_t T = state.range(0), K = 1024, N = 1024;
  const DType wt = state.range(1) ? DType::kBF16 : DType::kF32;
  auto& be = *context().backend;
  Tensor host_w = Tensor::host(DType::kF32, {N, K});
  for (int64_t i = 0; i < N * K; ++i) host_w.data<float>()[i] = static_cast<float>((i * 7919) % 101) / 101.0f - 0.5f;
  Tensor w_in = wt == DType::kF32 ? host_w : Tensor::host(wt, {N, K});
  if (wt != DType::kF32) convert_from_f32(wt, host_w.data<float>(), w_in.raw(), N * K);
  Tensor w = be.upload(w_in, compute::WeightKind::kLinear).value();
  Tensor x = be.allocate(DType::kF32, {T, K}).value(), y = be.allocate(DType::kF32, {T, N}).value();
  for (auto _ : state) be.linear(x, w, nullptr, y);
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * T * K * N, benchmark::Counter::kIsIterationInvariantRate,
                                                 benchmark::Counter::kIs1000);
}
BENCHMARK(BM_Linear)->ArgsProduct({{1, 16, 64, 512}, {0, 1}})->ArgNames({"T", "bf16"})->UseRealTime();

void BM_DecodeStep(benchmark::State& state) {
  auto& model = opt125m(state.range(1) ? DType::kBF16 : DType::kF32);
  const int32_t batch = static_cast<int32_t>(state.range(0)), ctx_len = 128;
  auto cache = model.make_kv_cache(batch, ctx_len + 1).value();
  compute::TokenBatch prefill;
  std::vector<int32_t> prompt(ctx_len, 5);
  for (int32_t s = 0; s < batch; ++s) prefill.add_sequence(s, 0, prompt);
  int32_t row = 0;
  (void)model.forward(prefill, cache, {&row, 1});
  compute::TokenBatch step;
  int32_t tok = 7;
  std::vector<int32_t> rows;
  for (int32_t s = 0; s < batch; ++s) {
    step.add_sequence(s, ctx_len, {&tok, 1});
    rows.push_back(s);
  }
  for (auto _ : state) benchmark::DoNotOptimize(model.forward(step, cache, rows));
  state.counters["tokens/s"] = benchmark::Counter(batch, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_DecodeStep)->ArgsProduct({{1, 16}, {0, 1}})->ArgNames({"batch", "bf16"})->UseRealTime()
    ->Unit(benchmark::kMillisecond);

void BM_Prefill(benchmark::State& state) {
  auto& model = opt125m(DType::kF32);
  const int32_t batch = 4, len = static_cast<int32_t>(state.range(0));
  auto cache = model.make_kv_cache(batch, len).value();
  compute::TokenBatch prefill;
  std::vector<int32_t> prompt(len, 9);
  for (int32_t s = 0; s < batch; ++s) prefill.add_sequence(s, 0, prompt);
  int32_t row = prefill.size() - 1;
  for (auto _ : state) benchmark::DoNotOptimize(model.forward(prefill, cache, {&row, 1}));
  state.counters["tokens/s"] = benchmark::Counter(batch * len, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_Prefill)->Arg(128)->ArgName("len")->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace strata
