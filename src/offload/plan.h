// The zig-zag block schedule of one step, as data: the actions the offloading engine issues, in
// issue order, each on one resource, with the earlier actions it waits for. Within a step the
// schedule goes layer by layer and, within a layer, GPU batch by GPU batch. Weights of streamed
// units (layers, and the head after them) are loaded into a ring of GPU slots `slots - 1` units
// ahead, each unit's load split into one part per GPU batch and issued as the batches go by
// (never all at the first batch); disk parts are read into pinned staging before their copy.
// Where a batch's KV sits on the CPU, decode attention runs there: the GPU computes the batch's
// queries, keys and values, they go to the host, the CPU attends, and the batch's output
// projection and MLP are issued only after the next batch's queries, so the GPU works on other
// batches while the CPU attends. With `gpu_attention`, decode attention over off-GPU KV runs on
// the GPU instead: the batch's KV is copied into one of two GPU staging buffers one batch ahead,
// and the new rows go back afterwards. Prefill attention always runs on the GPU; KV that belongs
// off the GPU is stored there afterwards through the two GPU staging buffers. KV on the disk
// passes through pinned staging buffers: read two batches ahead of its attention and written
// back (the new rows only, after decode) behind it. A batch whose hidden states live on the CPU
// (`cpu_activations`) has them loaded into one of two GPU staging buffers (one batch ahead, like
// off-GPU KV) before each of its computations and stored back after. In a layer with
// `block_experts`, each batch's layer action stops before the experts, and one kExperts action
// after the layer's last batch runs the router and each expert once over every batch's rows (so a
// decode step reads each expert's weights once, not once per GPU batch); each batch's next action
// adds that output to its hidden states first.
// plan_step() and simulate() are pure functions (no GPU, no threads), thread safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "offload/action.h"

namespace strata::offload {

struct StepShape {
  int32_t num_layers = 0;
  int32_t num_batches = 1;
  bool prefill = false;
  std::vector<bool> batch_active;  // [num_batches]: the batch has sequences this step
  // [num_layers + 1] (the head last): the unit has weights off the GPU / on the disk.
  std::vector<bool> streamed;
  std::vector<bool> from_disk;
  std::vector<bool> cpu_kv;   // [layer * num_batches + batch]: that KV lives on the CPU
  std::vector<bool> disk_kv;  // [layer * num_batches + batch]: on the disk (empty: nowhere)
  bool gpu_attention = false;  // decode attention over off-GPU KV runs on the GPU
  int32_t kv_disk_staging = 3;  // pinned staging buffers for disk KV
  std::vector<bool> cpu_activations;  // [num_batches]: hidden states kept on the CPU (empty: none)
  // [num_layers] (empty: none): the layer's experts run once over every GPU batch's rows (a
  // decode step of a mixture of experts), not batch by batch.
  std::vector<bool> block_experts;
  int32_t slots = 3;         // GPU weight slots (loads run slots - 1 units ahead)
  int32_t disk_staging = 2;  // pinned staging buffers for disk parts
};

// Why a shape is malformed (sizes, counts), or ok.
Status check_step_shape(const StepShape& shape);

// The actions of one step in issue order. Per resource, actions run in this order.
std::vector<Action> plan_step(const StepShape& shape);

// A timeline of a plan under given durations: each action starts when its resource has finished
// the actions before it and its deps have finished (and, for a load into a slot or staging
// buffer, after the previous occupant's last user: the plan states that as a dependency).
struct ActionTime {
  double start = 0;
  double end = 0;
};
struct Simulation {
  std::vector<ActionTime> times;
  double makespan = 0;
  double busy[kNumPlanResources] = {};
};
using DurationFn = double (*)(const Action& action, const void* context);
Simulation simulate(const std::vector<Action>& plan, DurationFn duration, const void* context);

}  // namespace strata::offload
