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
// off-GPU KV) before each of its computations and stored back after.
// plan_step() and simulate() are pure functions (no GPU, no threads), thread safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace strata::runtime {

enum class ActionKind : uint8_t {
  kDiskRead,       // unit's disk-resident weights -> pinned staging `staging`
  kLoadWeights,    // part `part` of `parts` of unit's streamed weights -> GPU slot `slot`
  kEmbed,          // batch's token (and position) embeddings -> its hidden state
  kLayer,          // a whole layer of a batch on the GPU (GPU attention)
  kStoreKv,        // KV rows of (layer, batch) written this step (a prompt's, or decode's new
                   // row), GPU staging `staging` -> host KV (or its pinned disk staging)
  kPreAttention,   // norm, q/k/v projections and rotary embedding of (layer, batch)
  kQkvToHost,      // (layer, batch)'s new q, k, v -> pinned host
  kCpuAttention,   // attention of (layer, batch) over its host KV, appending the new k, v
  kPostAttention,  // attention output -> GPU, output projection, residual and MLP
  kHead,           // final norm and LM head over the batch's logit rows
  kReadKv,         // (layer, batch)'s disk KV -> pinned staging `host_staging`
  kLoadKv,         // (layer, batch)'s off-GPU KV (host or pinned staging) -> GPU staging `staging`
  kWriteKv,        // (layer, batch)'s KV rows written this step, pinned staging -> disk
  kLoadHidden,     // the batch's hidden states, pinned host -> GPU staging `hidden_staging`
  kStoreHidden,    // the batch's hidden states after embed or a layer -> pinned host
};
const char* action_name(ActionKind kind);

enum class PlanResource : uint8_t { kDisk, kH2d, kD2h, kGpu, kCpu };
inline constexpr int kNumPlanResources = 5;
const char* plan_resource_name(PlanResource r);  // "disk", "h2d", "d2h", "gpu", "cpu"
PlanResource resource_of(ActionKind kind);

struct Action {
  ActionKind kind = ActionKind::kLayer;
  int32_t unit = -1;     // layer index; num_layers is the head
  int32_t batch = -1;    // GPU batch, for per-batch actions
  int32_t part = 0;      // kLoadWeights
  int32_t parts = 1;     // kLoadWeights
  int32_t slot = -1;     // GPU weight slot the unit occupies (streamed units), else -1
  int32_t staging = -1;  // kDiskRead / kLoadWeights from disk: pinned staging buffer;
                         // kLayer / kLoadKv / kStoreKv of off-GPU KV: GPU KV staging buffer
  int32_t host_staging = -1;  // disk KV: the pinned staging buffer holding (layer, batch)'s KV
  int32_t hidden_staging = -1;  // CPU activations: the GPU buffer holding the batch's hidden states
  std::vector<int32_t> deps;  // indices of earlier actions of this plan that must finish first
};

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

std::string describe(const Action& action);  // "load L3 part 1/2 -> slot 0", for tests and traces

}  // namespace strata::runtime
