#include "offload/layer_compute.h"

#include <algorithm>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "cuda/cuda_backend.h"
#include "offload/pinned.h"

namespace strata::offload {

LayerCompute::LayerCompute(const model::ModelConfig& config, const BlockDims& dims,
                           compute::Backend& backend, cuda::Lanes& lanes,
                           const WeightSlots& weights, KvTiers& kv, const HiddenStaging& hidden,
                           const CpuAttention& cpu_attention)
    : config_(config),
      dims_(dims),
      backend_(backend),
      lanes_(lanes),
      weights_(weights),
      kv_(kv),
      hidden_(hidden),
      cpu_attention_(cpu_attention),
      model_(std::make_unique<compute::Transformer>(config, backend, compute::ModelWeights{})) {
  const char* read = std::getenv("STRATA_ATTENTION_OUTPUT_READ");
  read_output_by_kernel_ = read != nullptr && std::string(read) == "kernel";
}

Result<std::unique_ptr<LayerCompute>> LayerCompute::create(
    const model::ModelConfig& config, const BlockDims& dims, compute::Backend& backend,
    cuda::Lanes& lanes, const WeightSlots& weights, KvTiers& kv, const HiddenStaging& hidden,
    const CpuAttention& cpu_attention) {
  std::unique_ptr<LayerCompute> c(
      new LayerCompute(config, dims, backend, lanes, weights, kv, hidden, cpu_attention));
  const OffloadWeights& w = weights.weights();
  const size_t rows = static_cast<size_t>(dims.gbs * std::max<int64_t>(dims.prefill_len, 1));
  auto pinned = [&](size_t bytes) { return allocate_pinned_bytes(lanes, bytes, "embedding rows", &c->pinned_bytes_); };
  if (w.host_table("embed.tokens")) {
    STRATA_ASSIGN_OR_RETURN(c->embed_rows_, pinned(rows * config.embed_dim() * 2));
  }
  if (w.host_table("embed.positions")) {
    STRATA_ASSIGN_OR_RETURN(c->embed_pos_rows_, pinned(rows * config.hidden_size * 2));
  }
  return c;
}

compute::Transformer::WeightFn LayerCompute::finder(int64_t unit) const {
  const TensorMap* views = &weights_.views(unit);
  return [views](const std::string& name) -> const Tensor* {
    auto f = views->find(name);
    return f == views->end() ? nullptr : &f->second;
  };
}

void LayerCompute::bind(Handlers& handlers, StepState& step) {
  auto on = [&](ActionKind kind) -> auto& { return handlers[static_cast<size_t>(kind)].enqueue; };
  on(ActionKind::kEmbed) = [this, &step](const Action& a, cuda::Lane) -> Result<uint64_t> {
    STRATA_RETURN_IF_ERROR(embed(a, step));
    return 0;
  };
  on(ActionKind::kLayer) = [this, &step](const Action& a, cuda::Lane) -> Result<uint64_t> {
    STRATA_RETURN_IF_ERROR(layer(a, step));
    return 0;
  };
  on(ActionKind::kPreAttention) = [this, &step](const Action& a, cuda::Lane) -> Result<uint64_t> {
    add_experts(a, step);
    step.qkv[a.batch] = model_->attention_inputs(a.unit, finder(a.unit), step.x[a.batch], step.subs[a.batch].batch);
    return 0;
  };
  on(ActionKind::kPostAttention) = [this, &step](const Action& a, cuda::Lane) -> Result<uint64_t> {
    return post_attention(a, step);
  };
  on(ActionKind::kHead) = [this, &step](const Action& a, cuda::Lane) -> Result<uint64_t> {
    add_experts(a, step);
    head(a, step);
    return 0;
  };
  on(ActionKind::kExperts) = [this, &step](const Action& a, cuda::Lane) -> Result<uint64_t> {
    STRATA_CHECK(step.experts_in.defined(), "offload: a layer's experts with no block-wide input");
    step.experts_out = model_->expert_block(a.unit, finder(a.unit), step.experts_in);
    return 0;
  };
}

// A batch whose hidden states are kept on the CPU embeds into its staging buffer.
Status LayerCompute::embed(const Action& a, StepState& step) {
  const compute::TokenBatch& batch = step.subs[a.batch].batch;
  Tensor& x = step.x[a.batch];
  const int64_t T = batch.size(), H = config_.hidden_size;
  const TensorMap& views = weights_.views(dims_.layers);
  Tensor emb = model_->alloc(T, config_.embed_dim());
  STRATA_RETURN_IF_ERROR(lookup("embed.tokens", batch.tokens, embed_rows_, emb));
  x = emb;
  if (auto it = views.find("embed.project_in"); it != views.end()) {
    x = model_->alloc(T, H);
    backend_.linear(emb, it->second, nullptr, x);
  }
  if (config_.family == model::Family::kOpt) {
    std::vector<int32_t> pos(batch.positions);
    for (auto& p : pos) p += 2;  // OPT's learned positions start at offset 2
    Tensor pe = model_->alloc(T, H);
    STRATA_RETURN_IF_ERROR(lookup("embed.positions", pos, embed_pos_rows_, pe));
    backend_.add(x, pe, x);
  }
  // The pinned rows are reused by the next batch: wait for their copies.
  if (embed_rows_.defined() || embed_pos_rows_.defined()) cuda::synchronize(backend_);
  if (a.hidden_staging >= 0) {
    Tensor staged = hidden_.view(a.hidden_staging, T);
    lanes_.copy_device(staged.raw(), x.raw(), staged.bytes());
    x = staged;
  }
  return Status::ok();
}

Status LayerCompute::lookup(const char* name, std::span<const int32_t> ids, Tensor& host_rows,
                            Tensor& out) {
  const OffloadWeights& w = weights_.weights();
  if (const HostTable* t = w.host_table(name)) {
    STRATA_RETURN_IF_ERROR(w.gather_host_rows(*t, ids, host_rows.raw()));
    lanes_.copy_device(out.raw(), host_rows.raw(), out.bytes());
  } else {
    backend_.embedding(weights_.views(dims_.layers).at(name), ids, out);
  }
  return Status::ok();
}

Status LayerCompute::layer(const Action& a, StepState& step) {
  // A prompt step's GPU batches (or a mixed step's) differ in tokens, so their activations differ
  // in size from one batch to the next: the blocks the backend keeps by size go back to its pool,
  // where any size reuses them, instead of piling up beside the next batch's.
  if (step.prefill || step.mixed) cuda::drop_cached_blocks(backend_);
  const compute::TokenBatch& batch = step.subs[a.batch].batch;
  const auto find = finder(a.unit);
  add_experts(a, step);
  auto in = model_->attention_inputs(a.unit, find, step.x[a.batch], batch);
  const int64_t T = batch.size(), q_dim = config_.num_heads * config_.head_dim;
  Tensor ctx = model_->alloc(T, q_dim);
  Tensor ctx3 = ctx.reshape({T, config_.num_heads, config_.head_dim});
  STRATA_RETURN_IF_ERROR(kv_.attend_on_gpu(a, batch, in, model_->attention_params(a.unit), ctx3));
  finish(a, step, ctx);
  return Status::ok();
}

void LayerCompute::finish(const Action& a, StepState& step, const Tensor& ctx) {
  Tensor& x = step.x[a.batch];
  if (!a.defer_experts) {
    model_->finish_layer(a.unit, finder(a.unit), x, ctx);
    return;
  }
  const int64_t first = step.subs[a.batch].first_row;
  Tensor mlp_in = step.experts_in.slice_rows(first, first + x.dim(0));
  model_->finish_attention(a.unit, finder(a.unit), x, ctx, mlp_in);
}

void LayerCompute::add_experts(const Action& a, StepState& step) {
  if (!a.add_experts) return;
  STRATA_CHECK(step.experts_out.defined(), "offload: a batch adds experts' output that was not computed");
  Tensor& x = step.x[a.batch];
  const int64_t first = step.subs[a.batch].first_row;
  backend_.add(x, step.experts_out.slice_rows(first, first + x.dim(0)), x);
}

// The CPU's attention output comes back on the compute lane, in order with the layer's rest: a
// copy (which queues on a copy engine behind the weights streaming in), or with
// STRATA_ATTENTION_OUTPUT_READ=kernel the compute lane's own reads of the pinned output.
uint64_t LayerCompute::post_attention(const Action& a, StepState& step) {
  const int64_t T = step.subs[a.batch].batch.size();
  Tensor ctx = model_->alloc(T, config_.num_heads * config_.head_dim);
  if (read_output_by_kernel_) {
    lanes_.read_host(ctx.raw(), cpu_attention_.output(a.batch).raw(), ctx.bytes());
  } else {
    lanes_.copy_device(ctx.raw(), cpu_attention_.output(a.batch).raw(), ctx.bytes());
  }
  finish(a, step, ctx);
  return ctx.bytes();
}

void LayerCompute::head(const Action& a, StepState& step) {
  const SubBatch& sb = step.subs[a.batch];
  if (sb.rows.empty()) return;
  Tensor lb = model_->head(finder(dims_.layers), step.x[a.batch], sb.rows);
  const size_t row_bytes = lb.bytes() / sb.rows.size();
  lanes_.copy_device(static_cast<std::byte*>(step.logits.raw()) + static_cast<size_t>(sb.logit_begin) * row_bytes,
                     lb.raw(), lb.bytes());
}

}  // namespace strata::offload
