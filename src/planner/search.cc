#include "planner/search.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include "common/units.h"
#include "planner/lp.h"

namespace strata::planner {

namespace {

const std::vector<int64_t> kGpuBatchSizes = {1,  2,  4,   8,   16,  24,  32,  48, 64,
                                             96, 128, 192, 256, 384, 512, 768, 1024};
const std::vector<int64_t> kNumGpuBatches = {1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64};

std::string choice_text(const BatchShape& b, const Choices& c) {
  return std::to_string(b.gpu_batch_size) + "x" + std::to_string(b.num_gpu_batches) + " weights " +
         std::string(compression_name(c.weights)) + ", kv " + std::string(compression_name(c.kv)) +
         ", attention " + std::string(attention_name(c.attention));
}

// Clamps the LP's fractions into [0, 1] and makes each group add up to exactly 1.
Fractions tidy_fractions(const std::vector<double>& x) {
  Fractions f{};
  for (int i = 0; i < kNumFracs; ++i) f[i] = std::clamp(x[i], 0.0, 1.0);
  auto norm = [&](int first, int count) {
    double s = 0;
    for (int i = 0; i < count; ++i) s += f[first + i];
    for (int i = 0; i < count; ++i) f[first + i] = s > 0 ? f[first + i] / s : (i == 0 ? 1 : 0);
  };
  norm(kWg, 3);
  norm(kCg, 3);
  norm(kHg, 2);
  return f;
}

struct Candidate {
  Fractions target{};
  Placement placement;
  MemoryPlan memory;
  Prediction prediction;
};

double score(const Prediction& p) { return p.job_s > 0 ? p.job_s : 1.0 / p.tokens_per_s; }

}  // namespace

Budgets default_budgets(const HardwareProfile& hw) {
  Budgets b;
  b.gpu = hw.gpu.memory_bytes > kGiB ? hw.gpu.memory_bytes - kGiB : 0;
  const uint64_t reserve = std::max<uint64_t>(4 * kGiB, hw.cpu.dram_bytes / 10);
  b.cpu = hw.cpu.dram_bytes > reserve ? hw.cpu.dram_bytes - reserve : 0;
  b.disk = hw.disk.capacity_bytes / 100 * 95;
  return b;
}

Result<Fractions> solve_placement_lp(const ModelSpec& spec, const Workload& w,
                                     const HardwareProfile& hw, const Budgets& budgets,
                                     const BatchShape& batch, const Choices& choices,
                                     const std::array<double, kNumTiers>& cut,
                                     const PlacementLimits& limits) {
  const JobModel job = build_job_model(spec, w, hw, batch, choices);
  const auto mem = memory_affine(spec, w, batch, choices);

  // A tie-break one millionth of the objective's size: among equally fast placements prefer the
  // faster tiers (less traffic, more slack), so the answer is unique.
  Fractions slow{};
  slow[kWc] = slow[kCc] = slow[kHc] = 1;
  double scale = 0;
  for (size_t p = 0; p < job.parts.size(); ++p) {
    const CostModel& cm = job.parts[p];
    const double L = static_cast<double>(cm.layers), steps = static_cast<double>(cm.decode_steps);
    for (const auto& b : cm.prefill.bounds) scale = std::max(scale, job.blocks[p] * L * b.seconds.eval(slow));
    for (const auto& b : cm.decode.bounds)
      scale = std::max(scale, job.blocks[p] * L * steps * b.seconds.eval(slow) / 4);
  }
  const double eps = 1e-6 * std::max(scale, 1e-9);

  LinearProgram lp;
  static const char* kNames[kNumFracs] = {"wg", "wc", "wd", "cg", "cc", "cd", "hg", "hc"};
  static const double kTier[kNumFracs] = {0, 1, 2, 0, 1, 2, 0, 1};
  double upper[kNumFracs] = {1, 1, 1, 1, 1, 1, 1, 1};
  if (!limits.kv_on_disk) upper[kCd] = 0;
  if (!limits.compressed_kv_on_gpu && choices.kv == Compression::kInt4) upper[kCg] = 0;
  if (!limits.compressed_kv_gpu_attention && choices.kv == Compression::kInt4 &&
      choices.attention == Attention::kGpu)
    upper[kCc] = upper[kCd] = 0;
  if (!limits.activations_on_cpu) upper[kHc] = 0;
  for (int i = 0; i < kNumFracs; ++i) lp.add_variable(kNames[i], 0, upper[i], eps * kTier[i]);
  lp.add_row({{kWg, 1}, {kWc, 1}, {kWd, 1}}, 1, 1, "weights");
  lp.add_row({{kCg, 1}, {kCc, 1}, {kCd, 1}}, 1, 1, "kv");
  lp.add_row({{kHg, 1}, {kHc, 1}}, 1, 1, "activations");
  auto add_bounds = [&](const PhaseModel& phase, int t) {
    for (const auto& b : phase.bounds) {
      std::vector<std::pair<int, double>> terms = {{t, 1}};
      for (int i = 0; i < kNumFracs; ++i)
        if (b.seconds.coef[i] != 0) terms.emplace_back(i, -b.seconds.coef[i]);
      lp.add_row(std::move(terms), b.seconds.constant, kLpInfinity, b.name);
    }
  };
  // Per part, a prefill and a decode layer time, weighted by the part's blocks and steps (and its
  // share of the refills' steps).
  double all_blocks = 0;
  for (double b : job.blocks) all_blocks += b;
  for (size_t p = 0; p < job.parts.size(); ++p) {
    const CostModel& cm = job.parts[p];
    const double L = static_cast<double>(cm.layers);
    const double steps = static_cast<double>(cm.decode_steps) + job.refills / std::max(all_blocks, 1e-12);
    std::string tag;
    if (job.parts.size() > 1) tag = std::string("_").append(std::to_string(p));
    const int tp = lp.add_variable("T_prefill" + tag, 0, kLpInfinity, job.blocks[p] * L);
    const int tg = lp.add_variable("T_decode" + tag, 0, kLpInfinity, job.blocks[p] * L * steps);
    add_bounds(cm.prefill, tp);
    if (cm.decode_steps > 0) add_bounds(cm.decode, tg);
  }
  for (int t = 0; t < kNumTiers; ++t) {
    // Rows in units of the budget keep the coefficients near 1 for the simplex.
    const double budget = static_cast<double>(budgets.of(static_cast<Tier>(t))) - cut[t];
    const double unit = std::max(std::abs(budget), static_cast<double>(kGiB));
    std::vector<std::pair<int, double>> terms;
    for (int i = 0; i < kNumFracs; ++i)
      if (mem[t].coef[i] != 0) terms.emplace_back(i, mem[t].coef[i] / unit);
    lp.add_row(std::move(terms), -kLpInfinity, (budget - mem[t].constant) / unit,
               std::string(tier_name(static_cast<Tier>(t))) + "_memory");
  }
  STRATA_ASSIGN_OR_RETURN(LpSolution sol, lp.solve("placement LP for " + choice_text(batch, choices)));
  return tidy_fractions(sol.x);
}

namespace {

enum class Outcome { kFits, kInfeasible, kRoundingFailed };

// The rounding step's coarsest unit: the largest tensor or KV unit, whichever is bigger.
double granularity(const ModelSpec& spec, const Workload& w, const BatchShape& b, const Choices& c) {
  uint64_t g = spec.kv_bytes(b.gpu_batch_size * (w.prompt_len + w.gen_len), c.kv);
  for (const auto& t : spec.layer_tensors) g = std::max(g, t.bytes(c.weights));
  for (const auto& t : spec.other_tensors) g = std::max(g, t.bytes(c.weights));
  return static_cast<double>(g);
}

// LP, rounding and exact check for one candidate.
Outcome solve_candidate(const ModelSpec& spec, const Workload& w, const HardwareProfile& hw,
                        const Budgets& budgets, const BatchShape& batch, const Choices& choices,
                        const PlacementLimits& limits, int64_t* lps, Candidate* out) {
  std::array<double, kNumTiers> cut{};
  const double unit = granularity(spec, w, batch, choices);
  for (int attempt = 0; attempt < 6; ++attempt) {
    ++*lps;
    auto f = solve_placement_lp(spec, w, hw, budgets, batch, choices, cut, limits);
    if (!f.is_ok()) return attempt == 0 ? Outcome::kInfeasible : Outcome::kRoundingFailed;
    Candidate c;
    c.target = *f;
    c.placement = realise(spec, w, batch, choices, c.target);
    c.memory = plan_memory(spec, c.placement);
    bool fits = true;
    for (int t = 0; t < kNumTiers; ++t) {
      const uint64_t used = c.memory.total(static_cast<Tier>(t));
      const uint64_t budget = budgets.of(static_cast<Tier>(t));
      if (used > budget) {
        fits = false;
        // Rounding overshot this tier: ask the LP for that much less, plus a growing share of the
        // rounding unit (whole tensors move only when the fractions move far enough).
        cut[t] += static_cast<double>(used - budget) + unit * 0.25 * static_cast<double>(1 << attempt);
      }
    }
    if (!fits) continue;
    c.prediction = predict(build_job_model(spec, w, hw, batch, choices), c.placement.realised, w);
    c.prediction.bytes = c.memory.totals();
    *out = std::move(c);
    return Outcome::kFits;
  }
  return Outcome::kRoundingFailed;
}

// Why nothing fits: the tier that is short and by how much, for the smallest block.
Status explain_infeasible(const ModelSpec& spec, const Workload& w, const Budgets& budgets,
                          const SearchOptions& options) {
  Choices c;
  c.weights = options.weight_compression.back();
  c.kv = options.kv_compression.back();
  c.attention = Attention::kCpu;
  c.prefetch_slots = kMinPrefetchSlots;
  const BatchShape one{1, 1};
  const auto mem = memory_affine(spec, w, one, c);
  Fractions off{};  // everything off the GPU, on the CPU
  off[kWc] = off[kCc] = off[kHc] = 1;
  const double gpu_min = mem[0].eval(off);
  const std::string where = "for " + spec.name + " with a " + std::to_string(w.prompt_len) + "+" +
                            std::to_string(w.gen_len) + "-token sequence";
  if (gpu_min > static_cast<double>(budgets.gpu)) {
    return Status(StatusCode::kInfeasible,
                  "gpu tier short by " + format_bytes(static_cast<uint64_t>(gpu_min) - budgets.gpu) +
                      ": " + where + ", one sequence with every weight streamed needs " +
                      format_bytes(static_cast<uint64_t>(gpu_min)) +
                      " of GPU memory (two prefetch slots for the largest layer, working buffers) "
                      "but the GPU budget is " + format_bytes(budgets.gpu) +
                      "; raise --gpu-mem, shorten the prompt, or allow int4 weights");
  }
  // Storage: weights and one sequence's KV beyond the GPU's spare room, on DRAM + disk.
  Fractions disk{};
  disk[kWd] = disk[kCd] = disk[kHc] = 1;
  const double need = mem[1].eval(disk) + mem[2].eval(disk);
  const double gpu_room = static_cast<double>(budgets.gpu) - gpu_min;
  const double have = static_cast<double>(budgets.cpu) + static_cast<double>(budgets.disk) + gpu_room;
  if (need > have) {
    return Status(StatusCode::kInfeasible,
                  "disk tier short by " + format_bytes(static_cast<uint64_t>(need - have)) + ": " +
                      where + ", the weights (" + format_bytes(spec.total_weight_bytes(c.weights)) +
                      ") and one sequence's KV cache need " + format_bytes(static_cast<uint64_t>(need)) +
                      " of DRAM and disk but the budgets give " +
                      format_bytes(static_cast<uint64_t>(have)) +
                      " (DRAM " + format_bytes(budgets.cpu) + ", disk " + format_bytes(budgets.disk) +
                      "); raise --disk-mem or --cpu-mem, or allow int4 weights");
  }
  const double cpu_min = mem[1].eval(disk);
  if (cpu_min > static_cast<double>(budgets.cpu)) {
    return Status(StatusCode::kInfeasible,
                  "cpu tier short by " + format_bytes(static_cast<uint64_t>(cpu_min) - budgets.cpu) +
                      ": " + where + ", pinned staging for disk reads needs " +
                      format_bytes(static_cast<uint64_t>(cpu_min)) + " of DRAM but the budget is " +
                      format_bytes(budgets.cpu) + "; raise --cpu-mem");
  }
  return Status(StatusCode::kInfeasible,
                "no placement fits the budgets (gpu " + format_bytes(budgets.gpu) + ", cpu " +
                    format_bytes(budgets.cpu) + ", disk " + format_bytes(budgets.disk) + ") " + where +
                    " once rounded to whole tensors; raise the tightest budget a little");
}

}  // namespace

Result<PlanResult> plan_policy(const ModelSpec& spec, const Workload& w, const HardwareProfile& hw,
                               const Budgets& budgets, const SearchOptions& options) {
  STRATA_RETURN_IF_ERROR(check_workload(w));
  if (options.weight_compression.empty() || options.kv_compression.empty() || options.attention.empty())
    return invalid_argument("the search needs at least one compression and attention choice");
  const auto& gbs_list = options.gpu_batch_sizes.empty() ? kGpuBatchSizes : options.gpu_batch_sizes;
  const auto& nb_list = options.num_gpu_batches.empty() ? kNumGpuBatches : options.num_gpu_batches;

  // Every feasible candidate's policy by score; the best is the plan, the next its runners-up.
  struct Ranked {
    double score;
    Policy policy;
    Candidate candidate;
  };
  std::vector<Ranked> ranked;
  int64_t lps = 0, feasible = 0;
  for (Compression cw : options.weight_compression) {
    for (Compression ckv : options.kv_compression) {
      if (ckv == Compression::kInt4 && !spec.kv_compressible()) continue;
      for (Attention att : options.attention) {
        const Choices base{cw, ckv, att};
        for (int64_t gbs : gbs_list) {
          bool any = false;
          for (int64_t nb : nb_list) {
            const BatchShape batch{gbs, nb};
            if (w.requests > 0 && batch.block() > w.requests && batch.block() > 1) break;
            // Three weight slots when they fit, else two (same predicted time, less GPU memory).
            Candidate c;
            Choices choices = base;
            Outcome o = solve_candidate(spec, w, hw, budgets, batch, choices, options.limits, &lps, &c);
            if (o != Outcome::kFits) {
              choices.prefetch_slots = kMinPrefetchSlots;
              o = solve_candidate(spec, w, hw, budgets, batch, choices, options.limits, &lps, &c);
            }
            if (o == Outcome::kInfeasible) break;  // a bigger block needs more memory still
            any = true;
            if (o != Outcome::kFits) continue;
            ++feasible;
            Policy p;
            p.model = spec.name;
            p.workload = w;
            p.batch = batch;
            p.choices = choices;
            p.fractions = c.target;
            p.hardware = hw.name;
            p.budgets = budgets;
            p.predicted = c.prediction;
            ranked.push_back({score(c.prediction), std::move(p), std::move(c)});
          }
          if (!any) break;  // a bigger GPU batch needs more memory still
        }
      }
    }
  }
  if (ranked.empty()) return explain_infeasible(spec, w, budgets, options);
  // The best: the first found unless a later one is faster by more than rounding; then the rest
  // by score (ties in the search's order).
  size_t best = 0;
  for (size_t i = 1; i < ranked.size(); ++i)
    if (ranked[i].score < ranked[best].score * (1 - 1e-9)) best = i;
  std::swap(ranked[0], ranked[best]);
  std::stable_sort(ranked.begin() + 1, ranked.end(),
                   [](const Ranked& a, const Ranked& b) { return a.score < b.score; });

  PlanResult r;
  r.policy = ranked[0].policy;
  r.placement = std::move(ranked[0].candidate.placement);
  r.memory = std::move(ranked[0].candidate.memory);
  r.lps_solved = lps;
  r.candidates_feasible = feasible;
  // Runners-up that would run exactly as one before them (the same batch, compression and
  // realised placement, where the attention choice has no KV off the GPU to act on) are left out.
  auto same_run = [&](const Ranked& a, const Ranked& b) {
    const Policy &x = a.policy, &y = b.policy;
    const Fractions &fx = a.candidate.placement.realised, &fy = b.candidate.placement.realised;
    const bool attention_matters = fx[kCg] < 1 || fy[kCg] < 1;
    return x.batch.gpu_batch_size == y.batch.gpu_batch_size && x.batch.num_gpu_batches == y.batch.num_gpu_batches &&
           x.choices.weights == y.choices.weights && x.choices.kv == y.choices.kv &&
           (!attention_matters || x.choices.attention == y.choices.attention) && fx == fy;
  };
  for (size_t i = 1; i < ranked.size() && static_cast<int>(r.runners_up.size()) < options.runners_up; ++i) {
    bool repeat = false;
    for (size_t k = 0; k < i && !repeat; ++k) repeat = same_run(ranked[i], ranked[k]);
    if (!repeat) r.runners_up.push_back(ranked[i].policy);
  }
  return r;
}

Result<PlanResult> evaluate_policy(const ModelSpec& spec, const Policy& policy,
                                   const HardwareProfile& hw, const Budgets& budgets) {
  if (policy.choices.kv == Compression::kInt4 && !spec.kv_compressible())
    return invalid_argument("int4 KV needs head_dim to be a multiple of 64; " + spec.name +
                            " has head_dim " + std::to_string(spec.head_dim));
  PlanResult r;
  r.policy = policy;
  r.placement = realise(spec, policy);
  r.memory = plan_memory(spec, r.placement);
  STRATA_RETURN_IF_ERROR(check_memory(r.memory, budgets));
  STRATA_RETURN_IF_ERROR(check_workload(policy.workload));
  const JobModel job = build_job_model(spec, policy.workload, hw, policy.batch, policy.choices);
  r.policy.predicted = predict(job, r.placement.realised, policy.workload);
  r.policy.predicted.bytes = r.memory.totals();
  r.policy.hardware = hw.name;
  r.policy.budgets = budgets;
  return r;
}

}  // namespace strata::planner
