// OffloadedJob: `strata generate` on the offloading engine. Holds the plan (the planner's choice
// for the job, or a policy file), the engine built for it, and what the first block teaches (on
// the continuous schedule, the steps before the first refill): the engine's measured busy time
// per phase and resource is set beside the cost model's; when
// a resource is more than 10% off, the profile is refit (planner/recalibrate.h), the rest of the
// job re-planned, and the engine rebuilt for the new policy when that saves more time than placing
// the weights again takes. Says what it does in the log. Not thread safe; borrows the context, the
// weight source and the profile's inputs for its lifetime. Units: seconds, bytes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>

#include "common/status.h"
#include "model/model_dir.h"
#include "offload/engine.h"
#include "planner/hardware.h"
#include "planner/model_spec.h"
#include "planner/search.h"
#include "runtime/batch_job.h"
#include "runtime/context.h"

namespace strata::tools {

struct OffloadedJobOptions {
  planner::HardwareProfile hardware;
  planner::Budgets budgets;
  planner::SearchOptions search;
  planner::Workload workload;       // the job's lengths and request count (0: unknown)
  bool planned = true;              // the planner chose the policy (false: a policy file)
  bool recalibrate = true;          // check the first block and re-plan
  std::filesystem::path offload_dir;
  bool trace = false;
  bool quiet = false;               // no plan printed on stderr
};

class OffloadedJob {
 public:
  OffloadedJob(runtime::Context& ctx, model::ModelFiles& files, const planner::ModelSpec& spec,
               const planner::PlanResult& plan, OffloadedJobOptions options);

  // Builds the engine for the current plan.
  Status start();
  offload::OffloadEngine& engine() { return *engine_; }
  const planner::PlanResult& plan() const { return plan_; }
  // For BatchJobOptions::look_in_first_run: the recalibration from the steps run so far (the
  // engine idle between two steps); true when the re-plan switches policy, which after_block(1)
  // then builds.
  Result<bool> look_in_run();
  // For BatchJobOptions::after_block: after the first block, its recalibration (unless a look
  // inside the run did it) and the switch of engine it asks for.
  Result<runtime::ModelSwitch> after_block(int64_t blocks_done);

 private:
  Status build(const planner::Policy& policy);
  // The rest of the job after `blocks_done` blocks of the current policy: its predicted seconds
  // under policy `p` (and its blocks), or of every token when the request count is not known.
  double remaining_s(const planner::PlanResult& p, int64_t blocks_done) const;
  // The profile refit from the engine's report so far, and the policy to switch to, if any.
  using NextPlan = std::optional<planner::PlanResult>;
  Result<NextPlan> recalibrate(int64_t blocks_done);
  Result<NextPlan> replan(int64_t blocks_done);
  // Builds the engine of `next` (or, when it does not build, the current one again).
  Result<runtime::ModelSwitch> switch_to(planner::PlanResult next);

  runtime::Context& ctx_;
  model::ModelFiles& files_;
  const planner::ModelSpec& spec_;
  planner::PlanResult plan_;
  OffloadedJobOptions o_;
  std::unique_ptr<offload::OffloadEngine> engine_;
  double setup_s_ = 0;  // how long the last engine took to build
  bool looked_ = false;  // the recalibration ran inside the first run
  NextPlan next_;  // the policy the recalibration switches to
};

}  // namespace strata::tools
