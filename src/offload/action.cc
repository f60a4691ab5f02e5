#include "offload/action.h"

namespace strata::offload {

const char* action_name(ActionKind kind) {
  switch (kind) {
    case ActionKind::kDiskRead: return "disk_read";
    case ActionKind::kLoadWeights: return "load_weights";
    case ActionKind::kEmbed: return "embed";
    case ActionKind::kLayer: return "layer";
    case ActionKind::kStoreKv: return "store_kv";
    case ActionKind::kPreAttention: return "pre_attention";
    case ActionKind::kQkvToHost: return "qkv_to_host";
    case ActionKind::kCpuAttention: return "cpu_attention";
    case ActionKind::kPostAttention: return "post_attention";
    case ActionKind::kHead: return "head";
    case ActionKind::kReadKv: return "read_kv";
    case ActionKind::kLoadKv: return "load_kv";
    case ActionKind::kWriteKv: return "write_kv";
    case ActionKind::kLoadHidden: return "load_hidden";
    case ActionKind::kStoreHidden: return "store_hidden";
    case ActionKind::kExperts: return "experts";
  }
  return "?";
}

const char* plan_resource_name(PlanResource r) {
  switch (r) {
    case PlanResource::kDisk: return "disk";
    case PlanResource::kH2d: return "h2d";
    case PlanResource::kD2h: return "d2h";
    case PlanResource::kGpu: return "gpu";
    case PlanResource::kCpu: return "cpu";
  }
  return "?";
}

PlanResource resource_of(ActionKind kind) {
  switch (kind) {
    case ActionKind::kDiskRead:
    case ActionKind::kReadKv:
    case ActionKind::kWriteKv: return PlanResource::kDisk;
    case ActionKind::kLoadWeights:
    case ActionKind::kLoadKv:
    case ActionKind::kLoadHidden: return PlanResource::kH2d;
    case ActionKind::kStoreHidden:
    case ActionKind::kStoreKv:
    case ActionKind::kQkvToHost: return PlanResource::kD2h;
    case ActionKind::kCpuAttention: return PlanResource::kCpu;
    default: return PlanResource::kGpu;
  }
}

std::string describe(const Action& a) {
  std::string s = action_name(a.kind);
  if (a.unit >= 0) s += " L" + std::to_string(a.unit);
  if (a.batch >= 0) s += " b" + std::to_string(a.batch);
  if (a.kind == ActionKind::kLoadWeights)
    s += " part " + std::to_string(a.part + 1) + "/" + std::to_string(a.parts);
  if (a.slot >= 0) s += " slot " + std::to_string(a.slot);
  if (a.staging >= 0) s += " staging " + std::to_string(a.staging);
  if (a.host_staging >= 0) s += " host " + std::to_string(a.host_staging);
  if (a.hidden_staging >= 0) s += " hidden " + std::to_string(a.hidden_staging);
  if (a.add_experts) s += " +experts";
  if (a.defer_experts) s += " defer";
  return s;
}

}  // namespace strata::offload
