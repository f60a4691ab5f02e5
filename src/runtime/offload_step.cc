// OffloadEngine::Impl::step: one step of the block, issued action by action from the zig-zag
// plan onto the GPU lanes and the disk and CPU workers.
#include <algorithm>

#include "common/units.h"
#include "cuda/cuda_backend.h"
#include "cuda/int4_weights.h"
#include "runtime/context.h"
#include "runtime/offload_engine_impl.h"

namespace strata::runtime {

using namespace offload_detail;

Result<Tensor> OffloadEngine::Impl::step(const compute::TokenBatch& batch, std::span<const int32_t> rows) {
  STRATA_RETURN_IF_ERROR(model->check_batch(batch));
  const int64_t T = batch.size();
  // Split the step by GPU batch: sequences must come in slot order.
  std::vector<SubBatch> subs(static_cast<size_t>(nb));
  std::vector<bool> active(static_cast<size_t>(nb), false);
  bool prefill = false, decode = false;
  int32_t last_slot = -1;
  for (const auto& s : batch.seqs) {
    if (s.slot <= last_slot || s.slot >= slots_in_use)
      return invalid_argument("offload: sequences must come in increasing slot order within [0, " +
                              std::to_string(slots_in_use) + ")");
    last_slot = s.slot;
    if (s.past_len + s.num_tokens > max_len_in_use)
      return invalid_argument("offload: the sequence in slot " + std::to_string(s.slot) + " needs " +
                              std::to_string(s.past_len + s.num_tokens) + " positions; reset() made room for " +
                              std::to_string(max_len_in_use));
    (s.past_len == 0 ? prefill : decode) = true;
    if (s.past_len == 0 && s.num_tokens > prefill_len)
      return invalid_argument("offload: a prompt of " + std::to_string(s.num_tokens) +
                              " tokens is longer than the policy's prompt length " + std::to_string(prefill_len));
    const int64_t b = s.slot / gbs;
    SubBatch& sb = subs[b];
    if (!active[b]) sb.first_row = s.offset;
    active[b] = true;
    sb.batch.add_sequence(static_cast<int32_t>(s.slot - b * gbs), s.past_len,
                          std::span<const int32_t>(batch.tokens).subspan(s.offset, s.num_tokens));
  }
  if (prefill && decode)
    return unsupported("offload: a step mixes prompts and decoding; run them as separate steps");
  if (decode)
    for (const auto& s : batch.seqs)
      if (s.num_tokens != 1) return unsupported("offload: decode steps take one token per sequence");
  // Logit rows, by batch, in order.
  int32_t r_out = 0;
  for (int64_t b = 0, ri = 0; b < nb; ++b) {
    if (!active[b]) continue;
    SubBatch& sb = subs[b];
    sb.logit_begin = r_out;
    const int32_t end = sb.first_row + sb.batch.size();
    while (ri < static_cast<int64_t>(rows.size()) && rows[ri] >= sb.first_row && rows[ri] < end) {
      sb.rows.push_back(rows[ri++] - sb.first_row);
      ++r_out;
    }
  }
  if (r_out != static_cast<int32_t>(rows.size()))
    return invalid_argument("offload: logit rows must be in increasing order within [0, " +
                            std::to_string(T) + ")");

  // The plan of this step.
  auto key = std::make_pair(prefill, active);
  auto it = plans.find(key);
  if (it == plans.end()) {
    StepShape shape = base_shape;
    shape.prefill = prefill;
    shape.batch_active = active;
    it = plans.emplace(key, plan_step(shape)).first;
  }
  const std::vector<Action>& plan = it->second;

  const double t_step = lanes->now_s();
  std::vector<Tensor> x(static_cast<size_t>(nb));
  std::vector<compute::Transformer::AttentionInputs> qkv(static_cast<size_t>(nb));
  std::vector<cuda::Event> ev(plan.size());
  std::vector<int64_t> ticket(plan.size(), -1);
  Tensor logits = model->alloc(static_cast<int64_t>(rows.size()), config.vocab_size);
  const int64_t E = config.num_kv_heads * config.head_dim, Hq = config.num_heads, D = config.head_dim;

  auto lane_of = [](PlanResource r) {
    if (r == PlanResource::kH2d) return cuda::Lane::kH2d;
    return r == PlanResource::kD2h ? cuda::Lane::kD2h : cuda::Lane::kCompute;
  };
  auto host_action = [&](int32_t i) {
    const PlanResource r = resource_of(plan[i].kind);
    return r == PlanResource::kDisk || r == PlanResource::kCpu;
  };
  auto host_worker = [&](int32_t i) -> TaskWorker& {
    return resource_of(plan[i].kind) == PlanResource::kDisk ? *disk_worker : *cpu_worker;
  };
  // GPU actions: wait for deps on other lanes (on the GPU) and on host work (here).
  auto gpu_deps = [&](const Action& a, cuda::Lane lane) -> Status {
    for (int32_t d : a.deps) {
      if (host_action(d)) {
        STRATA_RETURN_IF_ERROR(host_worker(d).wait(ticket[d]));
      } else if (lane_of(resource_of(plan[d].kind)) != lane) {
        lanes->wait(lane, ev[d]);
      }
    }
    return Status::ok();
  };
  // Host actions: the GPU events and the other worker's tasks they need, waited on by the worker.
  struct HostWaits {
    std::vector<cuda::Event> events;
    TaskWorker* other = nullptr;
    int64_t ticket = -1;
  };
  auto host_waits = [&](const Action& a, const TaskWorker& self) {
    HostWaits w;
    for (int32_t d : a.deps) {
      if (!host_action(d)) {
        w.events.push_back(ev[d]);
      } else if (&host_worker(d) != &self) {
        w.other = &host_worker(d);
        w.ticket = std::max(w.ticket, ticket[d]);
      }
    }
    return w;
  };
  auto wait_for = [this](const HostWaits& w) -> Status {
    if (w.other) STRATA_RETURN_IF_ERROR(w.other->wait(w.ticket));
    for (const auto& e : w.events) STRATA_RETURN_IF_ERROR(lanes->host_wait(e));
    return Status::ok();
  };
  auto find_in = [&](int64_t u) {
    const auto* views = &unit_views[u];
    return [views](const std::string& name) -> const Tensor* {
      auto f = views->find(name);
      return f == views->end() ? nullptr : &f->second;
    };
  };

  // Issues every action; the workers may still run tasks that point into this frame, so every
  // way out goes through the drain below.
  auto issue = [&]() -> Status {
    for (size_t i = 0; i < plan.size(); ++i) {
      const Action& a = plan[i];
      const PlanResource res = resource_of(a.kind);
      const cuda::Lane lane = lane_of(res);
      const std::string name = describe(a);
      if (res == PlanResource::kDisk && a.kind == ActionKind::kDiskRead) {
        const WeightUnit& unit = weights->unit(a.unit);
        auto waits = host_waits(a, *disk_worker);
        void* buf = disk_staging[a.staging].raw();
        const storage::IoFile* file = weights->file();
        ticket[i] = disk_worker->submit([this, waits, wait_for, buf, file, &unit, name]() -> Status {
          STRATA_RETURN_IF_ERROR(wait_for(waits));
          const double t0 = lanes->now_s();
          storage::IoRequest r;
          r.kind = storage::IoOpKind::kRead;
          r.file = file;
          r.offset = unit.disk_offset;
          r.buf = buf;
          r.length = unit.disk_bytes;
          r.what = "streamed weights (" + name + ")";
          STRATA_RETURN_IF_ERROR(storage::run_io(*io, {&r, 1}));
          host_span("disk", name, t0, unit.disk_bytes);
          return Status::ok();
        });
        bytes[static_cast<int>(PlanResource::kDisk)] += unit.disk_bytes;
        continue;
      }
      if (res == PlanResource::kDisk) {  // KV between its file and pinned staging
        const bool write = a.kind == ActionKind::kWriteKv;
        auto rows = kv_rows(subs[a.batch].batch.seqs, write);
        auto waits = host_waits(a, *disk_worker);
        auto* buf = static_cast<std::byte*>(kv_disk_staging[a.host_staging].raw());
        const int64_t region = kv[a.unit * nb + a.batch].disk_region;
        ticket[i] = disk_worker->submit([this, waits, wait_for, buf, region, rows, write, name]() -> Status {
          STRATA_RETURN_IF_ERROR(wait_for(waits));
          const double t0 = lanes->now_s();
          auto moved = write ? kv_file->write(region, rows, buf) : kv_file->read(region, rows, buf);
          STRATA_RETURN_IF_ERROR(moved.status());
          (write ? kv_disk_written : kv_disk_read) += moved.value();
          host_span(write ? "disk_write" : "disk", name, t0, moved.value());
          return Status::ok();
        });
        continue;
      }
      if (res == PlanResource::kCpu) {
        const SubBatch& sb = subs[a.batch];
        const compute::HostKvView view = host_kv(kv[a.unit * nb + a.batch], a.host_staging);
        CpuAttentionIo& cio = cpu_io[a.batch];
        auto waits = host_waits(a, *cpu_worker);
        const compute::AttentionParams params = model->attention_params(a.unit);
        uint64_t kv_bytes = 0;
        for (const auto& s : sb.batch.seqs)
          kv_bytes += (static_cast<uint64_t>(s.past_len) + s.num_tokens) *
                      (int4_kv ? static_cast<uint64_t>(E) * 9 / 16 : static_cast<uint64_t>(E) * 2) * 2;
        ticket[i] = cpu_worker->submit([this, waits, wait_for, &sb, view, &cio, params, name, Hq, kv_bytes]() -> Status {
          STRATA_RETURN_IF_ERROR(wait_for(waits));
          const double t0 = lanes->now_s();
          compute::host_kv_attention(*attention_pool, view, Hq, cio.q.data<uint16_t>(), cio.k.data<uint16_t>(),
                                     cio.v.data<uint16_t>(), sb.batch.seqs, params, cio.out.data<uint16_t>());
          host_span("cpu", name, t0, kv_bytes);
          return Status::ok();
        });
        bytes[static_cast<int>(PlanResource::kCpu)] += kv_bytes;
        continue;
      }

      STRATA_RETURN_IF_ERROR(gpu_deps(a, lane));
      uint64_t moved = 0;
      switch (a.kind) {
        case ActionKind::kLoadWeights: {
          const WeightUnit& unit = weights->unit(a.unit);
          STRATA_CHECK(a.slot == unit_slot[a.unit], "offload: the plan and the engine disagree on a slot");
          auto* slot = static_cast<std::byte*>(slots[a.slot].raw());
          auto chunk = [&](size_t total, int32_t part) {
            const size_t per = (total / a.parts + 4095) / 4096 * 4096;
            const size_t b0 = std::min(total, per * part), b1 = std::min(total, per * (part + 1));
            return std::make_pair(b0, b1);
          };
          lanes->begin(lane, name, 0);
          auto [c0, c1] = chunk(unit.cpu_bytes, a.part);
          if (c1 > c0) lanes->copy(lane, slot + c0, static_cast<const std::byte*>(unit.cpu_blob.raw()) + c0, c1 - c0);
          auto [d0, d1] = chunk(unit.disk_bytes, a.part);
          if (d1 > d0)
            lanes->copy(lane, slot + unit.cpu_bytes + d0, static_cast<const std::byte*>(disk_staging[a.staging].raw()) + d0,
                        d1 - d0);
          moved = (c1 - c0) + (d1 - d0);
          break;
        }
        case ActionKind::kEmbed: {
          lanes->begin(lane, name);
          STRATA_RETURN_IF_ERROR(embed(subs[a.batch], x[a.batch]));
          if (a.hidden_staging >= 0) {  // kept on the CPU: through the staging buffer
            Tensor staged = hidden_view(a.hidden_staging, subs[a.batch].batch.size());
            lanes->copy_device(staged.raw(), x[a.batch].raw(), staged.bytes());
            x[a.batch] = staged;
          }
          break;
        }
        case ActionKind::kLoadHidden: {
          Tensor staged = hidden_view(a.hidden_staging, subs[a.batch].batch.size());
          lanes->begin(lane, name);
          lanes->copy(lane, staged.raw(), host_hidden[a.batch].raw(), staged.bytes());
          x[a.batch] = staged;
          moved = staged.bytes();
          break;
        }
        case ActionKind::kStoreHidden: {
          const Tensor& staged = x[a.batch];
          STRATA_CHECK(staged.raw() == hidden_staging[a.hidden_staging].raw(),
                       "offload: a batch's hidden states are not in their staging buffer");
          lanes->begin(lane, name);
          lanes->copy(lane, host_hidden[a.batch].raw(), staged.raw(), staged.bytes());
          moved = staged.bytes();
          break;
        }
        case ActionKind::kLayer: {
          lanes->begin(lane, name);
          const SubBatch& sb = subs[a.batch];
          const auto find = find_in(a.unit);
          auto in = model->attention_inputs(a.unit, find, x[a.batch], sb.batch);
          const int64_t Tb = sb.batch.size();
          Tensor ctx_t = model->alloc(Tb, Hq * D);
          Tensor ctx3 = ctx_t.reshape({Tb, Hq, D});
          KvUnit& kvu = kv[a.unit * nb + a.batch];
          if (int4_kv && (kvu.tier == Tier::kGpu || gpu_attention)) {
            cuda::Int4KvCache& c4 = kvu.tier == Tier::kGpu ? kvu.gpu4 : kv_staging4[a.staging];
            STRATA_RETURN_IF_ERROR(cuda::attention_int4_kv(*backend, in.q, in.k, in.v, c4, sb.batch.seqs,
                                                           model->attention_params(a.unit), ctx3));
            model->finish_layer(a.unit, find, x[a.batch], ctx_t);
            break;
          }
          compute::LayerKvCache& cache = kvu.tier == Tier::kGpu ? kvu.gpu : kv_staging[a.staging];
          backend->attention(in.q, in.k, in.v, cache, sb.batch.seqs, model->attention_params(a.unit), ctx3);
          if (kvu.tier != Tier::kGpu && int4_kv)
            for (int kvi = 0; kvi < 2; ++kvi) {
              const Tensor& src = kvi == 0 ? cache.k : cache.v;
              STRATA_RETURN_IF_ERROR(cuda::quantise_int4_async(*backend, src.reshape({gbs * prefill_len, E}),
                                                               kv_blob_staging[a.staging][kvi]));
            }
          model->finish_layer(a.unit, find, x[a.batch], ctx_t);
          break;
        }
        case ActionKind::kLoadKv: {
          const SubBatch& sb = subs[a.batch];
          const compute::HostKvView src = host_kv(kv[a.unit * nb + a.batch], a.host_staging);
          int32_t used_slots = 0, P = 0;  // every position before the new ones
          for (const auto& s : sb.batch.seqs) {
            used_slots = std::max(used_slots, s.slot + 1);
            P = std::max(P, s.past_len);
          }
          lanes->begin(lane, name);
          for (int kvi = 0; kvi < 2; ++kvi)
            moved += copy_kv_rows(lane, gpu_staging(a.staging, kvi), kvi == 0 ? src.k : src.v, src.shape, 0,
                                  used_slots, 0, P);
          break;
        }
        case ActionKind::kStoreKv: {
          const SubBatch& sb = subs[a.batch];
          const compute::HostKvView host = host_kv(kv[a.unit * nb + a.batch], a.host_staging);
          int32_t used_slots = 0, P = 0;
          for (const auto& s : sb.batch.seqs) {
            used_slots = std::max(used_slots, s.slot + 1);
            P = std::max(P, s.past_len + s.num_tokens);
          }
          lanes->begin(lane, name);
          for (int kvi = 0; kvi < 2; ++kvi) {
            std::byte* dst = kvi == 0 ? host.k : host.v;
            if (gpu_attention) {
              // The staging has the host layout: the new rows of each sequence (decode), or every
              // sequence's prompt rows.
              const std::byte* src = gpu_staging(a.staging, kvi);
              if (!prefill) {
                for (const auto& s : sb.batch.seqs)
                  moved += copy_kv_rows(lane, dst, src, host.shape, s.slot, 1, s.past_len, s.past_len + s.num_tokens);
              } else {
                moved += copy_kv_rows(lane, dst, src, host.shape, 0, used_slots, 0, P);
              }
            } else if (!int4_kv) {
              // Attention on the CPU: the prompt's fp16 KV from a [gbs, prompt] staging.
              const size_t row = static_cast<size_t>(E) * 2;
              const Tensor& src = kvi == 0 ? kv_staging[a.staging].k : kv_staging[a.staging].v;
              lanes->copy_2d(lane, dst, max_len * row, src.raw(), prefill_len * row, P * row, used_slots);
              moved += static_cast<uint64_t>(P) * row * used_slots;
            } else {
              // ... or its int4 blob, quantised on the GPU from that staging.
              const auto* blob = static_cast<const std::byte*>(kv_blob_staging[a.staging][kvi].raw());
              const size_t staged_rows = static_cast<size_t>(gbs * prefill_len);
              const size_t code_row = static_cast<size_t>(E) / 2, group_row = static_cast<size_t>(E) / 64 * 2;
              const compute::HostKvShape& hs = host.shape;
              // codes, then scales, then mins: each a [rows, bytes-per-row] matrix in both blobs.
              lanes->copy_2d(lane, dst, max_len * code_row, blob, prefill_len * code_row, P * code_row, used_slots);
              lanes->copy_2d(lane, dst + hs.scale_offset(0), max_len * group_row, blob + staged_rows * code_row,
                             prefill_len * group_row, P * group_row, used_slots);
              lanes->copy_2d(lane, dst + hs.min_offset(0), max_len * group_row,
                             blob + staged_rows * (code_row + group_row), prefill_len * group_row, P * group_row,
                             used_slots);
              moved += static_cast<uint64_t>(P) * (code_row + 2 * group_row) * used_slots;
            }
          }
          break;
        }
        case ActionKind::kPreAttention: {
          lanes->begin(lane, name);
          qkv[a.batch] = model->attention_inputs(a.unit, find_in(a.unit), x[a.batch], subs[a.batch].batch);
          break;
        }
        case ActionKind::kQkvToHost: {
          const auto& in = qkv[a.batch];
          CpuAttentionIo& cio = cpu_io[a.batch];
          lanes->begin(lane, name);
          lanes->copy(lane, cio.q.raw(), in.q.raw(), in.q.bytes());
          lanes->copy(lane, cio.k.raw(), in.k.raw(), in.k.bytes());
          lanes->copy(lane, cio.v.raw(), in.v.raw(), in.v.bytes());
          moved = in.q.bytes() + in.k.bytes() + in.v.bytes();
          break;
        }
        case ActionKind::kPostAttention: {
          const SubBatch& sb = subs[a.batch];
          const int64_t Tb = sb.batch.size();
          lanes->begin(lane, name);
          Tensor ctx_t = model->alloc(Tb, Hq * D);
          lanes->copy_device(ctx_t.raw(), cpu_io[a.batch].out.raw(), ctx_t.bytes());
          model->finish_layer(a.unit, find_in(a.unit), x[a.batch], ctx_t);
          bytes[static_cast<int>(PlanResource::kH2d)] += ctx_t.bytes();
          break;
        }
        case ActionKind::kHead: {
          const SubBatch& sb = subs[a.batch];
          lanes->begin(lane, name);
          if (!sb.rows.empty()) {
            Tensor lb = model->head(find_in(L), x[a.batch], sb.rows);
            lanes->copy_device(static_cast<std::byte*>(logits.raw()) + static_cast<size_t>(sb.logit_begin) * lb.bytes() / sb.rows.size(),
                               lb.raw(), lb.bytes());
          }
          break;
        }
        default:
          STRATA_CHECK(false, "offload: unexpected action " + name);
      }
      lanes->end(lane);
      ev[i] = lanes->record(lane);
      bytes[static_cast<int>(res)] += moved;
      // Device memory peaks inside a prompt step's layers (its activations): sample after each.
      if (prefill && a.kind == ActionKind::kLayer) lanes->sample_memory();
    }
    return Status::ok();
  };
  const Status issued = issue();
  const Status cpu_done = cpu_worker->drain();
  const Status disk_done = disk_worker->drain();
  const Status gpu_done = lanes->synchronize();
  for (const Status* st : {&issued, &disk_done, &cpu_done, &gpu_done})
    if (!st->is_ok()) return st->with_context("offload: step " + std::to_string(report.prefill_steps + report.decode_steps));
  lanes->sample_memory();
  collect_gpu_spans();
  Tensor host = rows.empty() ? Tensor::host(DType::kF32, {0, config.vocab_size}) : backend->to_host_f32(logits);
  // The prompt-sized activations the backend keeps cached would stay reserved through decoding.
  if (prefill) {
    logits = Tensor();
    x.clear();
    qkv.clear();
    cuda::release_cached_memory(*backend);
  }
  const double took = lanes->now_s() - t_step;
  (prefill ? report.prefill_s : report.decode_s) += took;
  (prefill ? report.prefill_steps : report.decode_steps) += 1;
  (prefill ? report.prefill_tokens : report.decode_tokens) += T;
  return host;
}

}  // namespace strata::runtime
