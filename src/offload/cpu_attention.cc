#include "offload/cpu_attention.h"

#include <algorithm>
#include <string>

#include "compute/host_kv.h"
#include "offload/pinned.h"
#include "planner/memory_plan.h"

namespace strata::offload {

Result<std::unique_ptr<CpuAttention>> CpuAttention::create(bool enabled,
                                                            const model::ModelConfig& config,
                                                            const BlockDims& dims,
                                                            const std::vector<int>& near_cpus,
                                                            ThreadPool& default_pool,
                                                            TaskWorker& worker, cuda::Lanes& lanes,
                                                            Logger& log) {
  std::unique_ptr<CpuAttention> c(new CpuAttention(lanes, default_pool));
  if (!enabled) return c;
  c->io_.resize(static_cast<size_t>(dims.batches));
  // A decode step of paged KV may hold more than gbs sequences a batch.
  const int64_t seqs = dims.gbs * planner::kPagedSequencesPerSlot;
  const size_t q_bytes = static_cast<size_t>(seqs * config.num_heads * config.head_dim * 2);
  const size_t kv_bytes = static_cast<size_t>(seqs * config.num_kv_heads * config.head_dim * 2);
  auto pinned = [&](size_t bytes, const char* what) {
    return allocate_pinned_bytes(lanes, bytes, what, &c->pinned_bytes_);
  };
  for (auto& b : c->io_) {
    STRATA_ASSIGN_OR_RETURN(b.q, pinned(q_bytes, "cpu_attention.queries"));
    STRATA_ASSIGN_OR_RETURN(b.out, pinned(q_bytes, "cpu_attention.outputs"));
    STRATA_ASSIGN_OR_RETURN(b.k, pinned(kv_bytes, "cpu_attention.new_kv"));
    STRATA_ASSIGN_OR_RETURN(b.v, pinned(kv_bytes, "cpu_attention.new_kv"));
  }
  if (!near_cpus.empty()) STRATA_RETURN_IF_ERROR(c->bind_near(near_cpus, default_pool, worker, log));
  return c;
}

// Attention on the CPU reads pinned KV and talks to the GPU: its threads, and the worker's, go
// on the nearest cores when they can; when they cannot, it says so and runs unbound.
Status CpuAttention::bind_near(const std::vector<int>& cpus, ThreadPool& default_pool,
                               TaskWorker& worker, Logger& log) {
  near_pool_ = std::make_unique<ThreadPool>(std::min<int>(default_pool.size(), static_cast<int>(cpus.size())));
  Status bound = near_pool_->bind_workers(cpus);
  const int64_t t = worker.submit([cpus] { return bind_this_thread(cpus); });
  if (bound.is_ok()) bound = worker.wait(t);
  if (bound.is_ok()) {
    pool_ = near_pool_.get();
    log.info("offload: CPU attention on " + std::to_string(near_pool_->size()) +
             " threads bound to the CPUs nearest the GPU");
  } else {
    log.warn("offload: CPU attention left unbound: " + bound.to_string());
    worker.clear_error();
  }
  return Status::ok();
}

void CpuAttention::bind(Handlers& handlers, const StepState& step, const KvTiers& kv,
                        const compute::Transformer& model) {
  if (io_.empty()) return;
  handlers[static_cast<size_t>(ActionKind::kQkvToHost)].enqueue =
      [this, &step](const Action& a, cuda::Lane lane) -> Result<uint64_t> {
    const auto& in = step.qkv[a.batch];
    BatchIo& io = io_[a.batch];
    lanes_.copy(lane, io.q.raw(), in.q.raw(), in.q.bytes());
    lanes_.copy(lane, io.k.raw(), in.k.raw(), in.k.bytes());
    lanes_.copy(lane, io.v.raw(), in.v.raw(), in.v.bytes());
    return in.q.bytes() + in.k.bytes() + in.v.bytes();
  };
  const int64_t heads = model.config().num_heads;
  handlers[static_cast<size_t>(ActionKind::kCpuAttention)].task =
      [this, &step, &kv, &model, heads](const Action& a) -> Result<HostTask> {
    const SubBatch* sb = &step.subs[a.batch];
    const compute::HostKvView view = kv.host_view(a.unit, a.batch, a.host_staging);
    BatchIo* io = &io_[a.batch];
    const compute::AttentionParams params = model.attention_params(a.unit);
    const uint64_t kv_bytes = kv.bytes_read(sb->batch.seqs);
    return HostTask([this, sb, view, io, params, heads, kv_bytes]() -> Result<uint64_t> {
      compute::host_kv_attention(*pool_, view, heads, io->q.data<uint16_t>(), io->k.data<uint16_t>(),
                                 io->v.data<uint16_t>(), sb->batch.seqs, params, io->out.data<uint16_t>());
      return kv_bytes;
    });
  };
}

}  // namespace strata::offload
