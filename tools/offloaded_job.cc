#include "offloaded_job.h"

#include <chrono>
#include <cmath>
#include <cstdio>

#include "plan_print.h"
#include "planner/recalibrate.h"
#include "run_calibration.h"

namespace strata::tools {

namespace {

// A re-planned policy replaces the running one only when it is predicted this much faster.
constexpr double kMinGain = 0.05;

std::string describe_policy(const planner::Policy& p) {
  char buf[200];
  std::snprintf(buf, sizeof buf, "%lld x %lld, weights %s, kv %s, attention on the %s, predicted %.1f token/s",
                static_cast<long long>(p.batch.gpu_batch_size), static_cast<long long>(p.batch.num_gpu_batches),
                std::string(planner::compression_name(p.choices.weights)).c_str(),
                std::string(planner::compression_name(p.choices.kv)).c_str(),
                std::string(planner::attention_name(p.choices.attention)).c_str(), p.predicted.tokens_per_s);
  return buf;
}

}  // namespace

OffloadedJob::OffloadedJob(runtime::Context& ctx, model::ModelFiles& files, const planner::ModelSpec& spec,
                           const planner::PlanResult& plan, OffloadedJobOptions options)
    : ctx_(ctx), files_(files), spec_(spec), plan_(plan), o_(std::move(options)) {}

Status OffloadedJob::start() { return build(plan_.policy); }

Status OffloadedJob::build(const planner::Policy& policy) {
  offload::OffloadOptions eo;
  eo.policy = policy;
  eo.offload_dir = o_.offload_dir;
  eo.trace = o_.trace;
  const auto t0 = std::chrono::steady_clock::now();
  engine_.reset();  // the old engine's memory goes back before the new one takes its own
  STRATA_ASSIGN_OR_RETURN(engine_, offload::OffloadEngine::create(files_.config, files_.weights.get(), eo,
                                                                  *ctx_.backend, ctx_.pool, ctx_.logger));
  setup_s_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return Status::ok();
}

double OffloadedJob::remaining_s(const planner::PlanResult& p, int64_t blocks_done) const {
  const planner::Prediction& pred = p.policy.predicted;
  if (o_.workload.requests <= 0) return pred.tokens_per_s > 0 ? 1.0 / pred.tokens_per_s : 0;
  const int64_t done = blocks_done * plan_.policy.batch.block();
  const int64_t left = std::max<int64_t>(0, o_.workload.requests - done);
  const int64_t block = p.policy.batch.block();
  return static_cast<double>((left + block - 1) / block) * pred.block_s;
}

Result<bool> OffloadedJob::look_in_run() {
  looked_ = true;
  STRATA_ASSIGN_OR_RETURN(next_, recalibrate(1));
  return next_.has_value();
}

Result<runtime::ModelSwitch> OffloadedJob::after_block(int64_t blocks_done) {
  if (blocks_done != 1) return runtime::ModelSwitch{};
  if (!looked_) {
    STRATA_ASSIGN_OR_RETURN(next_, recalibrate(blocks_done));
  }
  if (!next_) return runtime::ModelSwitch{};
  planner::PlanResult next = std::move(*next_);
  next_.reset();
  return switch_to(std::move(next));
}

Result<OffloadedJob::NextPlan> OffloadedJob::recalibrate(int64_t blocks_done) {
  if (!o_.recalibrate) return NextPlan{};
  Logger& log = ctx_.logger;
  auto sample = run_sample(engine_->report(), spec_, plan_.policy, o_.hardware);
  if (!sample.is_ok()) {
    log.warn("recalibration skipped: " + sample.status().message());
    return NextPlan{};
  }
  auto rec = planner::recalibrate(o_.hardware, {*sample});
  if (!rec.is_ok()) {
    log.warn("recalibration skipped: " + rec.status().message());
    return NextPlan{};
  }
  const std::string what = looked_ ? "the first steps (up to the first refill)" : "the first block";
  if (!rec->off) {
    log.info("recalibration: " + what + " ran within 10% of the prediction on every resource");
    return NextPlan{};
  }
  log.info("recalibration: " + what + " ran more than 10% off the prediction; the profile is refit:");
  for (const std::string& n : rec->notes) log.info("  " + n);
  o_.hardware = rec->profile;
  if (!o_.planned) {
    log.info("recalibration: the policy file stays (--policy); the plan is not redone");
    return NextPlan{};
  }
  return replan(blocks_done);
}

Result<OffloadedJob::NextPlan> OffloadedJob::replan(int64_t blocks_done) {
  Logger& log = ctx_.logger;
  auto now = planner::evaluate_policy(spec_, plan_.policy, o_.hardware, o_.budgets);
  auto next = planner::plan_policy(spec_, o_.workload, o_.hardware, o_.budgets, o_.search);
  if (!now.is_ok() || !next.is_ok()) {
    log.warn("recalibration: re-planning failed (" + (now.is_ok() ? next : now).status().message() +
             "); the current policy stays");
    return NextPlan{};
  }
  const double stay = remaining_s(*now, blocks_done);
  const double move = remaining_s(*next, blocks_done) + (o_.workload.requests > 0 ? setup_s_ : 0);
  char buf[256];
  if (move >= stay * (1 - kMinGain)) {
    std::snprintf(buf, sizeof buf, "re-planned with the refit profile: the current policy stays (%s)",
                  describe_policy(now->policy).c_str());
    log.info(buf);
    plan_ = std::move(now).value();
    return NextPlan{};
  }
  std::snprintf(buf, sizeof buf,
                "re-planned with the refit profile: switching to %s (the rest predicted %.0f s against %.0f s, "
                "placing the weights again included)%s",
                describe_policy(next->policy).c_str(), move, stay,
                looked_ ? " once the running sequences finish" : "");
  log.info(buf);
  return NextPlan(std::move(next).value());
}

Result<runtime::ModelSwitch> OffloadedJob::switch_to(planner::PlanResult next) {
  Logger& log = ctx_.logger;
  const planner::PlanResult old = plan_;
  plan_ = std::move(next);
  if (!o_.quiet) print_plan(plan_, o_.hardware, -1, /*buffers=*/false, stderr);
  if (Status built = build(plan_.policy); !built.is_ok()) {
    log.warn("recalibration: the new policy's engine could not be built (" + built.message() +
             "); going on with the old policy");
    plan_ = old;
    STRATA_RETURN_IF_ERROR(build(plan_.policy));
  }
  return runtime::ModelSwitch{engine_.get(), static_cast<int32_t>(plan_.policy.batch.block())};
}

}  // namespace strata::tools
