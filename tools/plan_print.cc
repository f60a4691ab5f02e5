#include "plan_print.h"

#include <string>

#include "common/units.h"
#include "planner/cost_model.h"

namespace strata::tools {

namespace {

std::string pct(double f) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%.1f%%", 100 * f);
  return buf;
}

std::string placement(const planner::Fractions& f, int first, int count) {
  std::string s;
  for (int i = 0; i < count; ++i) s += (i ? " / " : "") + pct(f[first + i]);
  return s;
}

std::string number(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

}  // namespace

void print_comparison(const planner::PlanResult& given, const std::string& given_label,
                      const planner::PlanResult& planned, const planner::HardwareProfile& hw, std::FILE* out) {
  using namespace planner;
  const Policy& a = given.policy;
  const Policy& b = planned.policy;
  std::fprintf(out, "model        %s, %lld prompt + %lld generated tokens", a.model.c_str(),
               static_cast<long long>(a.workload.prompt_len), static_cast<long long>(a.workload.gen_len));
  if (!a.workload.mix.empty()) std::fprintf(out, " at most (%zu lengths)", a.workload.mix.size());
  std::fprintf(out, "\nhardware     %s\nbudgets      gpu %s, cpu %s, disk %s\n\n", hw.name.c_str(),
               format_bytes(a.budgets.gpu).c_str(), format_bytes(a.budgets.cpu).c_str(),
               format_bytes(a.budgets.disk).c_str());
  auto row = [&](const char* name, const std::string& x, const std::string& y) {
    std::fprintf(out, "  %-24s %-28s %-28s\n", name, x.c_str(), y.c_str());
  };
  auto batch = [](const Policy& p) {
    return std::to_string(p.batch.gpu_batch_size) + " x " + std::to_string(p.batch.num_gpu_batches) + " = " +
           std::to_string(p.batch.block());
  };
  auto choices = [](const Policy& p) {
    return std::string(compression_name(p.choices.weights)) + ", kv " + std::string(compression_name(p.choices.kv)) +
           ", attn " + std::string(attention_name(p.choices.attention));
  };
  const Prediction& qa = a.predicted;
  const Prediction& qb = b.predicted;
  row("", given_label, "planner's choice");
  row("batch", batch(a), batch(b));
  row("weights gpu/cpu/disk", placement(given.placement.realised, kWg, 3), placement(planned.placement.realised, kWg, 3));
  row("kv gpu/cpu/disk", placement(given.placement.realised, kCg, 3), placement(planned.placement.realised, kCg, 3));
  row("activations gpu/cpu", placement(given.placement.realised, kHg, 2), placement(planned.placement.realised, kHg, 2));
  row("compression, attention", choices(a), choices(b));
  row("predicted tokens/s", number("%.4g", qa.tokens_per_s), number("%.4g", qb.tokens_per_s));
  row("prefill (s)", number("%.4g", qa.prefill_s), number("%.4g", qb.prefill_s));
  row("decode step (s)", number("%.4g", qa.decode_step_s), number("%.4g", qb.decode_step_s));
  if (qa.job_s > 0) row("job (s)", number("%.4g", qa.job_s), number("%.4g", qb.job_s));
  row("bottleneck", qa.bottleneck, qb.bottleneck);
  for (int t = 0; t < kNumTiers; ++t)
    row(("memory " + std::string(tier_name(static_cast<Tier>(t)))).c_str(), format_bytes(qa.bytes[t]),
        format_bytes(qb.bytes[t]));
  std::fprintf(out, "\nseconds per layer that each resource is busy, prefill | decode\n");
  for (size_t i = 0; i < qa.prefill.resources.size(); ++i)
    row(qa.prefill.resources[i].first.c_str(),
        number("%.6g", qa.prefill.resources[i].second) + " | " + number("%.6g", qa.decode.resources[i].second),
        number("%.6g", qb.prefill.resources[i].second) + " | " + number("%.6g", qb.decode.resources[i].second));
  row("layer time", number("%.6g", qa.prefill.layer_s) + " | " + number("%.6g", qa.decode.layer_s),
      number("%.6g", qb.prefill.layer_s) + " | " + number("%.6g", qb.decode.layer_s));
}

void print_plan(const planner::PlanResult& r, const planner::HardwareProfile& hw, double search_s,
                bool buffers, std::FILE* out) {
  using namespace planner;
  const Policy& p = r.policy;
  const Prediction& q = p.predicted;
  std::fprintf(out, "model        %s, %lld prompt + %lld generated tokens", p.model.c_str(),
               static_cast<long long>(p.workload.prompt_len),
               static_cast<long long>(p.workload.gen_len));
  if (p.workload.requests > 0)
    std::fprintf(out, ", %lld requests", static_cast<long long>(p.workload.requests));
  std::fprintf(out, "\nhardware     %s\n", hw.name.c_str());
  std::fprintf(out, "budgets      gpu %s, cpu %s, disk %s\n", format_bytes(p.budgets.gpu).c_str(),
               format_bytes(p.budgets.cpu).c_str(), format_bytes(p.budgets.disk).c_str());
  std::fprintf(
      out, "batch        %lld sequences per GPU batch x %lld GPU batches = %lld per block\n",
      static_cast<long long>(p.batch.gpu_batch_size),
      static_cast<long long>(p.batch.num_gpu_batches), static_cast<long long>(p.batch.block()));
  if (const int64_t paged = planner::paged_batch_size(p.workload, p.batch.gpu_batch_size);
      paged > p.batch.gpu_batch_size)
    std::fprintf(out, "             paged KV: about %lld sequences per GPU batch at this mix's lengths\n",
                 static_cast<long long>(paged));
  std::fprintf(out, "weights      gpu %s  cpu %s  disk %s  compression %s\n",
               pct(r.placement.realised[kWg]).c_str(), pct(r.placement.realised[kWc]).c_str(),
               pct(r.placement.realised[kWd]).c_str(),
               std::string(compression_name(p.choices.weights)).c_str());
  // With every unit's KV on the GPU, the attention choice (over off-GPU KV) has nothing to do.
  const bool all_on_gpu = r.placement.realised[kCc] + r.placement.realised[kCd] == 0;
  const std::string attention = all_on_gpu ? "attention on the gpu (all the KV is there)"
                                           : "attention on the " + std::string(attention_name(p.choices.attention));
  std::fprintf(out, "kv cache     gpu %s  cpu %s  disk %s  compression %s, %s\n",
               pct(r.placement.realised[kCg]).c_str(), pct(r.placement.realised[kCc]).c_str(),
               pct(r.placement.realised[kCd]).c_str(),
               std::string(compression_name(p.choices.kv)).c_str(), attention.c_str());
  std::fprintf(out, "activations  gpu %s  cpu %s\n", pct(r.placement.realised[kHg]).c_str(),
               pct(r.placement.realised[kHc]).c_str());
  std::fprintf(out, "predicted    %.3f tokens/s; prefill %.2f s, decode step %.3f s, block %.1f s",
               q.tokens_per_s, q.prefill_s, q.decode_step_s, q.block_s);
  if (q.job_s > 0) std::fprintf(out, ", job %.1f s (%.2f h)", q.job_s, q.job_s / 3600);
  std::fprintf(out, "\nbottleneck   %s\n", q.bottleneck.c_str());
  std::fprintf(out, "memory       gpu %s  cpu %s  disk %s\n", format_bytes(q.bytes[0]).c_str(),
               format_bytes(q.bytes[1]).c_str(), format_bytes(q.bytes[2]).c_str());
  std::fprintf(
      out,
      "\nwhy: seconds per layer that each resource is busy (layer time = the largest bound)\n");
  std::fprintf(out, "  %-13s %12s %12s\n", "resource", "prefill", "decode");
  for (size_t i = 0; i < q.prefill.resources.size(); ++i)
    std::fprintf(out, "  %-13s %12.6f %12.6f\n", q.prefill.resources[i].first.c_str(),
                 q.prefill.resources[i].second, q.decode.resources[i].second);
  std::fprintf(out, "  %-13s %12s %12s\n", "bound", "", "");
  for (size_t i = 0; i < q.prefill.bounds.size(); ++i)
    std::fprintf(out, "  %-13s %12.6f %12.6f\n", q.prefill.bounds[i].first.c_str(),
                 q.prefill.bounds[i].second, q.decode.bounds[i].second);
  std::fprintf(out, "  %-13s %12.6f %12.6f\n", "layer time", q.prefill.layer_s, q.decode.layer_s);
  std::fprintf(out, "  %-13s %12s %12s\n", "bottleneck", q.prefill.bottleneck.c_str(),
               q.decode.bottleneck.c_str());
  if (buffers) {
    std::fprintf(out, "\nbuffers the runtime allocates:\n");
    for (const auto& b : r.memory.buffers)
      std::fprintf(out, "  %-4s %-26s %3lld x %12s  %s\n", std::string(tier_name(b.tier)).c_str(),
                   b.name.c_str(), static_cast<long long>(b.count),
                   format_bytes(b.bytes_each).c_str(), b.what.c_str());
  }
  if (search_s >= 0)
    std::fprintf(out, "\nsearched %lld LPs, %lld placements fit, in %.2f s\n",
                 static_cast<long long>(r.lps_solved),
                 static_cast<long long>(r.candidates_feasible), search_s);
}

void print_runners_up(const std::vector<planner::Policy>& policies, std::FILE* out) {
  std::fprintf(out, "\nrunners-up (rank, batch, weights/kv/attention, weights gpu/cpu/disk, kv gpu/cpu/disk, "
                    "predicted):\n");
  int rank = 2;
  for (const planner::Policy& p : policies) {
    const auto& f = p.fractions;
    std::fprintf(out, "  %2d  %4lld x %-3lld  %s/%s/%s  w %.2f/%.2f/%.2f  kv %.2f/%.2f/%.2f  %.2f token/s (%s)\n",
                 rank++, static_cast<long long>(p.batch.gpu_batch_size),
                 static_cast<long long>(p.batch.num_gpu_batches),
                 std::string(planner::compression_name(p.choices.weights)).c_str(),
                 std::string(planner::compression_name(p.choices.kv)).c_str(),
                 std::string(planner::attention_name(p.choices.attention)).c_str(), f[planner::kWg],
                 f[planner::kWc], f[planner::kWd], f[planner::kCg], f[planner::kCc], f[planner::kCd],
                 p.predicted.tokens_per_s, p.predicted.bottleneck.c_str());
  }
}

}  // namespace strata::tools
