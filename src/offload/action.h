// The actions of the offloading engine's step (offload/plan.h makes the list): what each does,
// the resource it occupies (the disk, a PCIe direction, the GPU's compute, the CPU's attention
// workers) and the earlier actions it waits for. Plain values and pure functions, thread safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace strata::offload {

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
  kExperts,        // a sparse layer's router and experts, once over every GPU batch's rows of a
                   // decode step (the batches' layer actions left them their MLP inputs)
};
inline constexpr int kNumActionKinds = 16;
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
  // A batch's layer action (kLayer, kPostAttention) of a layer whose experts run in its kExperts:
  // it stops before the experts, leaving its MLP input in the step's block-wide buffer.
  bool defer_experts = false;
  // A batch's first action of a layer or the head (kLayer, kPreAttention, kHead) after a kExperts:
  // it first adds that layer's expert output to the batch's hidden states.
  bool add_experts = false;
  std::vector<int32_t> deps;  // indices of earlier actions of this plan that must finish first
};

std::string describe(const Action& action);  // "load L3 part 1/2 -> slot 0", for tests and traces

}  // namespace strata::offload
