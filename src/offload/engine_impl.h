// The offloading engine's insides, shared by its setup (engine.cc) and its step (step.cc): the
// GPU's lanes, the disk and CPU workers, the components that own the buffers and carry out the
// actions, the cached plan of each kind of step, and the step in flight. Internal to
// src/offload. Not thread safe.
#pragma once

#include <map>
#include <memory>
#include <span>
#include <tuple>
#include <utility>
#include <vector>

#include "cuda/lanes.h"
#include "offload/accounting.h"
#include "offload/cpu_attention.h"
#include "offload/engine.h"
#include "offload/executor.h"
#include "offload/hidden_staging.h"
#include "offload/kv_tiers.h"
#include "offload/layer_compute.h"
#include "offload/plan.h"
#include "offload/step_state.h"
#include "offload/task_worker.h"
#include "offload/weight_slots.h"
#include "planner/memory_plan.h"
#include "planner/model_spec.h"
#include "storage/io_backend.h"

namespace strata::offload {

struct OffloadEngine::Impl {
  // What it runs, fixed at creation.
  model::ModelConfig config;
  planner::ModelSpec spec;
  planner::Placement placement;
  OffloadOptions options;
  compute::Backend* backend = nullptr;
  ThreadPool* pool = nullptr;
  Logger* log = nullptr;
  BlockDims dims;

  // Resources: the GPU's lanes, the offload disk, the workers beside the GPU.
  std::unique_ptr<cuda::Lanes> lanes;
  std::unique_ptr<CudaGpuLanes> gpu;
  std::unique_ptr<storage::IoBackend> io;
  std::unique_ptr<TaskWorker> disk_worker, cpu_worker;

  // Components, each owning its buffers and handling its actions.
  std::unique_ptr<WeightSlots> weights;
  std::unique_ptr<KvTiers> kv;
  std::unique_ptr<CpuAttention> cpu_attention;
  std::unique_ptr<HiddenStaging> hidden;
  std::unique_ptr<LayerCompute> compute;
  std::unique_ptr<Accounting> accounting;
  Handlers handlers;

  // Steps: the plan of each (prefill, experts over the block, active batches), and the step in
  // flight.
  StepShape base_shape;
  std::map<std::tuple<bool, bool, std::vector<bool>>, std::vector<Action>> plans;
  StepState step_state;
  StepLimits limits;

  Status build(model::WeightSource* source);
  // A run starts: the KV seen as slots (page_len 0) or pages, the limits its steps keep, the
  // workers' errors of the last run cleared.
  void start_run(int64_t page_len, const StepLimits& run_limits);
  Status make_components(model::WeightSource* source);
  // One step; its logits (F32) on the host, or with `to_host` false on the GPU.
  Result<Tensor> step(const compute::TokenBatch& batch, std::span<const int32_t> rows, bool to_host);
  const std::vector<Action>& plan_for(const StepState& st);
  // Whether the step's sparse layers run their experts once over every GPU batch's rows.
  bool block_experts(const StepState& st) const;
  uint64_t pinned_bytes() const;
  uint64_t disk_bytes() const;
};

}  // namespace strata::offload
