// The offloading engine's setup: the GPU's lanes and the workers, then the components in the
// order their memory is taken (weights and their slots, KV, CPU attention, hidden states,
// embeddings), each from the placement; then the plan's view of them, and their handlers.
#include "offload/engine.h"

#include <algorithm>
#include <climits>
#include <utility>

#include "common/units.h"
#include "offload/engine_impl.h"
#include "offload/near_gpu.h"
#include "planner/memory_plan.h"
#include "storage/topology.h"

namespace strata::offload {

namespace {

BlockDims block_dims(const model::ModelConfig& config, const planner::Placement& p) {
  BlockDims d;
  d.layers = config.num_layers;
  d.batches = p.batch.num_gpu_batches;
  d.gbs = p.batch.gpu_batch_size;
  d.prefill_len = p.workload.prompt_len;
  d.max_len = p.workload.prompt_len + p.workload.gen_len;
  return d;
}

// The engine's disk I/O (io_uring at queue depth 64, or its fallback), with a test's faults.
Result<std::unique_ptr<storage::IoBackend>> make_io(const OffloadOptions& options, Logger& log) {
  storage::IoBackendOptions io_options;
  io_options.queue_depth = 64;
  STRATA_ASSIGN_OR_RETURN(auto io, storage::make_io_backend(io_options, log));
  if (options.io_faults.empty()) return io;
  auto faulty = std::make_unique<storage::FaultInjectingBackend>(std::move(io));
  for (const auto& rule : options.io_faults) faulty->add_rule(rule);
  return std::unique_ptr<storage::IoBackend>(std::move(faulty));
}

// Pinned buffers on the GPU's NUMA node: the calling thread's new pages come from there while
// the binding lives.
std::unique_ptr<storage::ThreadMemoryBinding> bind_memory(int numa_node, Logger& log) {
  if (numa_node < 0) return nullptr;
  auto bound = storage::ThreadMemoryBinding::bind(numa_node);
  if (!bound.is_ok()) {
    log.warn("offload: pinned buffers left on any NUMA node: " + bound.status().to_string());
    return nullptr;
  }
  log.info("offload: pinned buffers on NUMA node " + std::to_string(numa_node) + ", nearest the GPU");
  return std::move(bound).value();
}

}  // namespace

Status OffloadEngine::Impl::build(model::WeightSource* source) {
  dims = block_dims(config, placement);
  if (placement.choices.kv == planner::Compression::kInt4 && config.head_dim % 64 != 0)
    return invalid_argument("offload: int4 KV needs head_dim a multiple of 64, not " +
                            std::to_string(config.head_dim));
  STRATA_ASSIGN_OR_RETURN(lanes, cuda::Lanes::create(*backend, /*timing=*/true));
  gpu = std::make_unique<CudaGpuLanes>(*lanes);
  accounting = std::make_unique<Accounting>(*lanes);
  STRATA_ASSIGN_OR_RETURN(io, make_io(options, *log));
  disk_worker = std::make_unique<TaskWorker>("the offload disk");
  cpu_worker = std::make_unique<TaskWorker>("attention on the CPU");
  STRATA_RETURN_IF_ERROR(make_components(source));

  base_shape.num_layers = static_cast<int32_t>(dims.layers);
  base_shape.num_batches = static_cast<int32_t>(dims.batches);
  weights->describe_to(&base_shape);
  kv->describe_to(&base_shape);
  hidden->describe_to(&base_shape);
  weights->bind(handlers);
  kv->bind(handlers, step_state);
  cpu_attention->bind(handlers, step_state, *kv, compute->model());
  hidden->bind(handlers, step_state);
  compute->bind(handlers, step_state);

  STRATA_RETURN_IF_ERROR(lanes->synchronize());
  lanes->sample_memory();
  (void)lanes->take_spans();
  accounting->reset();
  log->info("offload: ready: " + format_bytes(lanes->device_bytes_in_use()) + " on the GPU, " +
            format_bytes(pinned_bytes()) + " pinned, " + format_bytes(disk_bytes()) + " on disk");
  return Status::ok();
}

Status OffloadEngine::Impl::make_components(model::WeightSource* source) {
  const GpuNeighbourhood near = near_gpu(lanes->device(), *log);
  const auto membind = bind_memory(near.numa_node, *log);
  const planner::Choices& ch = placement.choices;
  log->info("offload: placing " + format_bytes(spec.total_weight_bytes(ch.weights)) + " of weights");
  STRATA_ASSIGN_OR_RETURN(auto placed,
                          OffloadWeights::create(config, spec, placement, source, options.synthetic_seed, *backend,
                                                 *lanes, *io, options.offload_dir, *log));
  for (const auto& t : placed->unit(dims.layers).tensors)
    if (t.name == "embed.project_in" && t.tier != planner::Tier::kGpu)
      return unsupported("offload: embed.project_in must stay on the GPU");
  const int num_slots = std::max(planner::kMinPrefetchSlots, ch.prefetch_slots);
  STRATA_ASSIGN_OR_RETURN(weights, WeightSlots::create(std::move(placed), num_slots, *lanes, *io));
  STRATA_ASSIGN_OR_RETURN(kv, KvTiers::create(config, placement, dims, *backend, *lanes, *io, options.offload_dir, *log));
  const bool cpu_attends = kv->any_off_gpu() && !kv->gpu_attention();
  STRATA_ASSIGN_OR_RETURN(cpu_attention, CpuAttention::create(cpu_attends, config, dims, near.cpus, *pool,
                                                              *cpu_worker, *lanes, *log));
  STRATA_ASSIGN_OR_RETURN(hidden, HiddenStaging::create(placement, dims, config.hidden_size, *backend, *lanes));
  STRATA_ASSIGN_OR_RETURN(compute, LayerCompute::create(config, dims, *backend, *lanes, *weights, *kv, *hidden,
                                                        *cpu_attention));
  return Status::ok();
}

uint64_t OffloadEngine::Impl::pinned_bytes() const {
  return weights->pinned_bytes() + kv->pinned_bytes() + cpu_attention->pinned_bytes() +
         hidden->pinned_bytes() + compute->pinned_bytes();
}

uint64_t OffloadEngine::Impl::disk_bytes() const {
  return weights->weights().file_bytes() + kv->file_bytes();
}

OffloadEngine::OffloadEngine() : impl_(std::make_unique<Impl>()) {}
OffloadEngine::~OffloadEngine() = default;

Result<std::unique_ptr<OffloadEngine>> OffloadEngine::create(const model::ModelConfig& config,
                                                             model::WeightSource* source,
                                                             const OffloadOptions& options,
                                                             compute::Backend& backend,
                                                             ThreadPool& pool, Logger& log) {
  std::unique_ptr<OffloadEngine> e(new OffloadEngine());
  Impl& m = *e->impl_;
  m.backend = &backend;
  m.pool = &pool;
  m.log = &log;
  m.config = config;
  m.options = options;
  STRATA_ASSIGN_OR_RETURN(m.spec, planner::make_model_spec(config, options.policy.model));
  m.placement = planner::realise(m.spec, options.policy);
  STRATA_RETURN_IF_ERROR(m.build(source));
  return e;
}

const model::ModelConfig& OffloadEngine::config() const { return impl_->config; }
compute::Backend& OffloadEngine::backend() { return *impl_->backend; }
const planner::Policy& OffloadEngine::policy() const { return impl_->options.policy; }

Status OffloadEngine::reset(int32_t slots, int32_t max_len) {
  Impl& m = *impl_;
  if (slots > m.dims.gbs * m.dims.batches)
    return invalid_argument("offload: " + std::to_string(slots) + " sequences do not fit the policy's block of " +
                            std::to_string(m.dims.gbs * m.dims.batches) + " (" + std::to_string(m.dims.gbs) +
                            " x " + std::to_string(m.dims.batches) + ")");
  if (max_len > m.dims.max_len)
    return invalid_argument("offload: sequences of " + std::to_string(max_len) +
                            " positions exceed the policy's prompt + generated length of " +
                            std::to_string(m.dims.max_len));
  const auto gbs = static_cast<int32_t>(m.dims.gbs);
  m.start_run(0, {slots, max_len, false, gbs, gbs, gbs});
  return Status::ok();
}

void OffloadEngine::Impl::start_run(int64_t page_len, const StepLimits& run_limits) {
  kv->set_page_len(page_len);
  limits = run_limits;
  // A GPU batch's tokens in a step stay within a prompt step's activations (the embedding rows,
  // the hidden states' staging, the planner's sizes). A decode step takes prompt tokens too where
  // every attention runs on the GPU: up to that limit less the batch's running sequences.
  limits.group_tokens = dims.gbs * std::max<int64_t>(1, dims.prefill_len);
  limits.mixed = (kv->gpu_attention() || !kv->any_off_gpu()) && limits.group_tokens > limits.group_seqs;
  cpu_worker->clear_error();
  disk_worker->clear_error();
}

Result<compute::PageLayout> OffloadEngine::reset_paged(int64_t, int32_t) {
  Impl& m = *impl_;
  const int64_t rows = m.dims.gbs * m.dims.max_len;
  const int64_t len = planner::paged_kv_page_len(m.dims.gbs, m.dims.max_len);
  const int64_t group = rows / len, pages = group * m.dims.batches;
  if (pages > INT32_MAX) return invalid_argument("offload: " + std::to_string(pages) + " KV pages are too many");
  const auto gbs = static_cast<int32_t>(m.dims.gbs);
  // A decode step's tokens stay within what a prompt step's activations take.
  const int64_t seqs = std::min<int64_t>({group, m.dims.gbs * planner::kPagedSequencesPerSlot,
                                          m.dims.gbs * std::max<int64_t>(1, m.dims.prefill_len)});
  compute::PageLayout layout{static_cast<int32_t>(pages), static_cast<int32_t>(len), static_cast<int32_t>(group),
                             static_cast<int32_t>(seqs), gbs};
  m.start_run(len, {layout.pages, layout.page_len, true, layout.group_pages, layout.group_seqs, layout.group_prompts});
  return layout;
}

bool OffloadEngine::mixed_steps() const { return impl_->limits.mixed; }

int64_t OffloadEngine::mixed_step_prompt_tokens() const {
  const StepLimits& l = impl_->limits;
  return l.mixed ? l.group_tokens - l.group_seqs : 0;
}

Result<Tensor> OffloadEngine::forward(const compute::TokenBatch& batch, std::span<const int32_t> rows) {
  return impl_->step(batch, rows, /*to_host=*/true);
}

Result<Tensor> OffloadEngine::forward_for_sampling(const compute::TokenBatch& batch, std::span<const int32_t> rows) {
  return impl_->step(batch, rows, /*to_host=*/false);
}

OffloadReport OffloadEngine::report() const {
  return impl_->accounting->report(impl_->pinned_bytes(), impl_->disk_bytes());
}

void OffloadEngine::reset_report() { impl_->accounting->reset(); }

Status OffloadEngine::write_trace(const std::filesystem::path& path) const {
  if (!impl_->options.trace) return invalid_argument("offload: the engine was made without tracing");
  return impl_->accounting->write_trace(path);
}

}  // namespace strata::offload
