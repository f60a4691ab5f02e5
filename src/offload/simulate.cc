// The plan's two checks: whether a step shape is well formed, and the timeline of a plan under
// given action durations (for tests of overlap and for the cost model's validation).
#include <algorithm>

#include "common/check.h"
#include "offload/plan.h"

namespace strata::offload {

Status check_step_shape(const StepShape& s) {
  const auto units = static_cast<size_t>(s.num_layers) + 1;
  if (s.num_layers < 1) return invalid_argument("step plan: no layers");
  if (s.num_batches < 1) return invalid_argument("step plan: no GPU batches");
  if (s.slots < 2) return invalid_argument("step plan: at least 2 GPU weight slots are needed");
  if (s.disk_staging < 1) return invalid_argument("step plan: at least 1 disk staging buffer is needed");
  if (s.batch_active.size() != static_cast<size_t>(s.num_batches))
    return invalid_argument("step plan: batch_active has " + std::to_string(s.batch_active.size()) +
                            " entries for " + std::to_string(s.num_batches) + " batches");
  if (s.streamed.size() != units || s.from_disk.size() != units)
    return invalid_argument("step plan: streamed/from_disk need one entry per layer and the head");
  for (size_t u = 0; u < units; ++u)
    if (s.from_disk[u] && !s.streamed[u])
      return invalid_argument("step plan: unit " + std::to_string(u) + " is on disk but not streamed");
  const size_t kv_units = static_cast<size_t>(s.num_layers) * s.num_batches;
  if (s.cpu_kv.size() != kv_units) return invalid_argument("step plan: cpu_kv needs layers x batches entries");
  if (!s.disk_kv.empty() && s.disk_kv.size() != kv_units)
    return invalid_argument("step plan: disk_kv needs layers x batches entries (or none)");
  for (size_t i = 0; i < s.disk_kv.size(); ++i)
    if (s.disk_kv[i] && s.cpu_kv[i])
      return invalid_argument("step plan: KV unit " + std::to_string(i) + " is on both the CPU and the disk");
  if (s.kv_disk_staging < 2) return invalid_argument("step plan: at least 2 disk KV staging buffers are needed");
  if (!s.cpu_activations.empty() && s.cpu_activations.size() != static_cast<size_t>(s.num_batches))
    return invalid_argument("step plan: cpu_activations needs one entry per GPU batch (or none)");
  if (!s.block_experts.empty() && s.block_experts.size() != static_cast<size_t>(s.num_layers))
    return invalid_argument("step plan: block_experts needs one entry per layer (or none)");
  return Status::ok();
}

Simulation simulate(const std::vector<Action>& plan, DurationFn duration, const void* context) {
  Simulation sim;
  sim.times.resize(plan.size());
  double lane_free[kNumPlanResources] = {};
  for (size_t i = 0; i < plan.size(); ++i) {
    const Action& a = plan[i];
    const int r = static_cast<int>(resource_of(a.kind));
    double start = lane_free[r];
    for (int32_t d : a.deps) {
      STRATA_CHECK(d >= 0 && static_cast<size_t>(d) < i, "simulate: a dependency on a later action");
      start = std::max(start, sim.times[d].end);
    }
    const double len = duration(a, context);
    sim.times[i] = {start, start + len};
    lane_free[r] = start + len;
    sim.busy[r] += len;
    sim.makespan = std::max(sim.makespan, start + len);
  }
  return sim;
}

}  // namespace strata::offload
