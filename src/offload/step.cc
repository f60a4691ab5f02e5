// One step of the block: the batch split by GPU batch, the zig-zag plan of this kind of step
// (offload/plan.h, made once per kind and kept), and its actions run by the executor, each by the
// component that owns what it touches (engine_impl.h lists them). Read this and plan.cc's
// Planner::run to know the schedule.
#include <string>

#include "common/units.h"
#include "cuda/cuda_backend.h"
#include "offload/engine_impl.h"

namespace strata::offload {

bool OffloadEngine::Impl::block_experts(const StepState& st) const {
  return !st.prefill && !st.mixed && config.is_moe();
}

const std::vector<Action>& OffloadEngine::Impl::plan_for(const StepState& st) {
  const bool block = block_experts(st);
  auto key = std::make_tuple(st.prefill, block, st.active);
  auto it = plans.find(key);
  if (it == plans.end()) {
    StepShape shape = base_shape;
    shape.prefill = st.prefill;
    shape.batch_active = st.active;
    // A decode step runs each sparse layer's experts once over every batch's rows; a prompt
    // step's batches already wake every expert, and their rows together would not fit (nor a
    // mixed step's: its prompt tokens run batch by batch too).
    if (block) {
      shape.block_experts.resize(static_cast<size_t>(dims.layers));
      for (int64_t j = 0; j < dims.layers; ++j) shape.block_experts[static_cast<size_t>(j)] = config.is_sparse_layer(j);
    }
    it = plans.emplace(std::move(key), plan_step(shape)).first;
  }
  return it->second;
}

Result<Tensor> OffloadEngine::Impl::step(const compute::TokenBatch& batch, std::span<const int32_t> rows,
                                         bool to_host) {
  compute::Transformer& model = compute->model();
  STRATA_RETURN_IF_ERROR(model.check_batch(batch));
  STRATA_RETURN_IF_ERROR(split_step(batch, rows, dims, limits, &step_state));
  const bool prefill = step_state.prefill;
  const std::vector<Action>& plan = plan_for(step_state);

  accounting->begin_step(prefill);
  step_state.x.assign(static_cast<size_t>(dims.batches), Tensor());
  step_state.qkv.assign(static_cast<size_t>(dims.batches), {});
  step_state.logits = model.alloc(static_cast<int64_t>(rows.size()), config.vocab_size);
  if (block_experts(step_state)) step_state.experts_in = model.alloc(batch.size(), config.hidden_size);
  Executor executor(*gpu, *disk_worker, *cpu_worker);
  const Status ran = executor.run(plan, handlers, *accounting);
  if (!ran.is_ok()) {
    step_state = StepState{};
    return ran.with_context("offload: step " + std::to_string(accounting->steps()));
  }
  lanes->sample_memory();
  if (log->level() <= LogLevel::kDebug)
    log->debug("offload: step " + std::to_string(accounting->steps()) + (prefill ? " (prefill)" : "") + ": " +
               format_bytes(lanes->device_bytes_in_use()) + " in use on the GPU, peak " +
               format_bytes(lanes->peak_device_bytes()));
  accounting->collect_gpu_spans();
  Tensor logits = rows.empty() ? Tensor::host(DType::kF32, {0, config.vocab_size})
                 : to_host     ? backend->to_host_f32(step_state.logits)
                               : backend->f32_copy(step_state.logits);
  // The step's activations go back to the backend; a prompt step's would otherwise stay
  // reserved in its cache through decoding, and blocks of a decode step's sizes (which change as
  // sequences stop, and with the sampling's scratch) would pile up beside the next step's.
  step_state = StepState{};
  if (prefill) {
    cuda::release_cached_memory(*backend);
  } else {
    cuda::drop_cached_blocks(*backend);
  }
  accounting->end_step(batch.size());
  return logits;
}

}  // namespace strata::offload
