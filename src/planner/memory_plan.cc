#include "planner/memory_plan.h"

#include <algorithm>
#include <cmath>

#include "common/check.h"
#include "common/units.h"

namespace strata::planner {

uint64_t MemoryPlan::total(Tier t) const {
  uint64_t sum = 0;
  for (const auto& b : buffers)
    if (b.tier == t) sum += b.bytes();
  return sum;
}

std::array<uint64_t, kNumTiers> MemoryPlan::totals() const {
  return {total(Tier::kGpu), total(Tier::kCpu), total(Tier::kDisk)};
}

namespace {

constexpr double kGolden = 0.6180339887498949;

Tier tier_at(double p, double to_gpu, double to_cpu) {
  if (p < to_gpu) return Tier::kGpu;
  if (p < to_gpu + to_cpu) return Tier::kCpu;
  return Tier::kDisk;
}

double rotate(double p, int64_t i) {
  double x = p + static_cast<double>(i) * kGolden;
  return x - std::floor(x);
}

std::vector<uint64_t> bytes_of(const std::vector<TensorSpec>& tensors, Compression c) {
  std::vector<uint64_t> b;
  b.reserve(tensors.size());
  for (const auto& t : tensors) b.push_back(t.bytes(c));
  return b;
}

// Assigns a group of tensors (one layer, or the non-layer tensors) of `bytes` by their byte
// midpoints.
void place_group(const std::vector<uint64_t>& bytes, int64_t rotation, double to_gpu, double to_cpu,
                 Tier* out) {
  uint64_t total = 0;
  for (uint64_t b : bytes) total += b;
  uint64_t cum = 0;
  for (size_t k = 0; k < bytes.size(); ++k) {
    const uint64_t b = bytes[k];
    const double mid = total ? (static_cast<double>(cum) + b / 2.0) / static_cast<double>(total) : 0.5;
    out[k] = tier_at(rotate(mid, rotation), to_gpu, to_cpu);
    cum += b;
  }
}

// Sizes the buffers share between plan_memory and memory_affine.
struct Sizes {
  uint64_t kv_unit = 0;         // keys and values of one GPU batch in one layer, all positions
  uint64_t kv_gpu_staging = 0;  // one staging buffer on the GPU for off-GPU KV
  uint64_t kv_prompt_fp16 = 0;  // int4 KV attended on the GPU: a prompt's own keys and values
  uint64_t hidden_batch = 0;    // one GPU batch's hidden states at prefill
  uint64_t logits = 0;          // [block, vocab] fp32: a step's logits on the host
  std::vector<Buffer> working;  // GPU working activations of the computing batch + workspace
  std::vector<Buffer> cpu_attention;  // when attention runs on the CPU over off-GPU KV
};

Sizes sizes(const ModelSpec& m, const Workload& w, const BatchShape& b, const Choices& ch) {
  Sizes z;
  const uint64_t gbs = static_cast<uint64_t>(b.gpu_batch_size);
  const uint64_t s = static_cast<uint64_t>(w.prompt_len), n = static_cast<uint64_t>(w.gen_len);
  const uint64_t tokens = gbs * s;  // prefill is the larger step
  z.kv_unit = m.kv_bytes(static_cast<int64_t>(gbs * (s + n)), ch.kv);
  // Attention on the CPU: a batch's prompt KV is made in fp16 on the GPU (and quantised there
  // when stored as int4) before it leaves.
  z.kv_gpu_staging = ch.attention == Attention::kGpu
                         ? z.kv_unit
                         : m.kv_bytes(static_cast<int64_t>(tokens), Compression::kNone) +
                               (ch.kv == Compression::kInt4 ? m.kv_bytes(static_cast<int64_t>(tokens), ch.kv) : 0);
  // Attention on the GPU over an int4 cache runs a prompt in fp16 over a scratch copy of its own
  // keys and values.
  z.kv_prompt_fp16 = ch.kv == Compression::kInt4 ? m.kv_bytes(static_cast<int64_t>(tokens), Compression::kNone) : 0;
  z.hidden_batch = tokens * static_cast<uint64_t>(m.hidden) * 2;
  // A step's logit rows are every sequence of the block's, sampled together once the step is done.
  const uint64_t block = static_cast<uint64_t>(b.block()), vocab = static_cast<uint64_t>(m.vocab);
  z.logits = block * vocab * 4;
  const uint64_t h = static_cast<uint64_t>(m.hidden), q = static_cast<uint64_t>(m.q_dim);
  const uint64_t kv = static_cast<uint64_t>(m.kv_dim), ffn = static_cast<uint64_t>(m.ffn);
  auto work = [&](const char* name, uint64_t bytes, int64_t count, const char* what) {
    z.working.push_back({name, Tier::kGpu, bytes, count, what});
  };
  work("work.residual", tokens * h * 2, 1, "[gbs*prompt, hidden] fp16 residual stream");
  work("work.normed", tokens * h * 2, 1, "[gbs*prompt, hidden] fp16 normalised input");
  work("work.q", tokens * q * 2, 1, "[gbs*prompt, q_dim] fp16 queries");
  work("work.kv", tokens * kv * 2, 2, "[gbs*prompt, kv_dim] fp16 new keys, new values");
  work("work.attention_out", tokens * q * 2, 1, "[gbs*prompt, q_dim] fp16 attention output");
  if (m.is_moe()) {
    // A sparse layer's MLP: the router's logits, then expert by expert its rows gathered (the
    // same buffer takes its output), and its gate and up over them; an expert may get every row.
    // A prompt step runs it per GPU batch (gbs*prompt rows), a decode step once over the block's
    // rows, gathered in one buffer with the experts' output in another.
    const uint64_t experts = static_cast<uint64_t>(m.num_experts), expert_ffn = static_cast<uint64_t>(m.expert_ffn);
    const uint64_t rows = std::max(tokens, block);
    work("work.router", rows * experts * 2, 1, "[max(gbs*prompt, block), experts] fp16 router logits");
    work("work.expert_rows", rows * h * 2, 1, "[max(gbs*prompt, block), hidden] fp16 an expert's rows, then its output");
    work("work.mlp", rows * expert_ffn * 2, 2, "[max(gbs*prompt, block), expert ffn] fp16 an expert's gate, up");
    work("work.block_experts", block * h * 2, 2, "[block, hidden] fp16 a decode step's MLP inputs and experts' output");
  } else {
    work("work.mlp", tokens * ffn * 2, m.family == model::Family::kLlama ? 2 : 1,
         m.family == model::Family::kLlama ? "[gbs*prompt, ffn] fp16 gate, up" : "[gbs*prompt, ffn] fp16 fc1 output");
  }
  work("work.projected", tokens * h * 2, 2, "[gbs*prompt, hidden] fp16 attention and MLP outputs");
  work("work.logits", block * vocab * 2, 1, "[block, vocab] fp16 logits of the step's last positions");
  work("logits.download", z.logits, 1, "[block, vocab] fp32 device copy the sampling statistics read");
  work("sampling.scratch", block * vocab * 20, 1,
       "[block, vocab] sort keys, values and token ids, and the sort's scratch, of the sampling statistics");
  if (ch.weights == Compression::kInt4) {
    // Prompt-sized products dequantise the int4 weight into an fp16 copy for cuBLAS.
    uint64_t largest = 0;
    for (const auto& t : m.layer_tensors)
      if (t.compressible) largest = std::max<uint64_t>(largest, static_cast<uint64_t>(shape_numel(t.shape)) * 2);
    for (const auto& t : m.other_tensors)
      if (t.compressible) largest = std::max<uint64_t>(largest, static_cast<uint64_t>(shape_numel(t.shape)) * 2);
    work("work.dequantised", largest, 1, "fp16 copy of an int4 weight for a prompt-sized product");
  }
  work("cuda.context", kCudaContextBytes, 1, "CUDA context, kernel images and cuBLAS handles");
  work("workspace", kGpuWorkspaceBytes, 1, "GEMM and attention scratch");
  auto cpu = [&](const char* name, uint64_t bytes, int64_t count, const char* what) {
    z.cpu_attention.push_back({name, Tier::kCpu, bytes, count, what});
  };
  const uint64_t decode_seqs = gbs * kPagedSequencesPerSlot;
  cpu("cpu_attention.queries", decode_seqs * q * 2, 2, "[4 gbs, q_dim] fp16 queries from the GPU");
  cpu("cpu_attention.outputs", decode_seqs * q * 2, 2, "[4 gbs, q_dim] fp16 outputs to the GPU");
  cpu("cpu_attention.new_kv", m.kv_bytes(static_cast<int64_t>(decode_seqs), ch.kv), 2,
      "the step's new keys and values, stored form");
  cpu("cpu_attention.scores", gbs * static_cast<uint64_t>(m.num_heads) * (s + n) * 4, 1,
      "[gbs, heads, prompt+gen] fp32 scores");
  return z;
}

uint64_t sum_bytes(const std::vector<Buffer>& v) {
  uint64_t s = 0;
  for (const auto& b : v) s += b.bytes();
  return s;
}

}  // namespace

Placement realise(const ModelSpec& spec, const Workload& workload, const BatchShape& batch,
                  const Choices& choices, const Fractions& f) {
  Placement p;
  p.workload = workload;
  p.batch = batch;
  p.choices = choices;
  const size_t per_layer = spec.layer_tensors.size();
  const int64_t L = spec.num_layers, nb = batch.num_gpu_batches;
  const std::vector<uint64_t> layer_bytes = bytes_of(spec.layer_tensors, choices.weights);
  const std::vector<uint64_t> other_bytes = bytes_of(spec.other_tensors, choices.weights);
  p.layer_weights.resize(per_layer * static_cast<size_t>(L));
  for (int64_t i = 0; i < L; ++i)
    place_group(layer_bytes, i, f[kWg], f[kWc], p.layer_weights.data() + i * per_layer);
  p.other_weights.resize(spec.other_tensors.size());
  place_group(other_bytes, L, f[kWg], f[kWc], p.other_weights.data());

  p.kv.resize(static_cast<size_t>(L * nb));
  for (int64_t i = 0; i < L; ++i)
    for (int64_t k = 0; k < nb; ++k)
      p.kv[i * nb + k] = tier_at(rotate((k + 0.5) / static_cast<double>(nb), i), f[kCg], f[kCc]);
  p.activations.resize(static_cast<size_t>(nb));
  for (int64_t k = 0; k < nb; ++k)
    p.activations[k] = (k + 0.5) / static_cast<double>(nb) < f[kHg] ? Tier::kGpu : Tier::kCpu;

  // Realised fractions.
  std::array<double, kNumTiers> wbytes{};
  for (int64_t i = 0; i < L; ++i)
    for (size_t t = 0; t < per_layer; ++t)
      wbytes[static_cast<int>(p.layer_weights[i * per_layer + t])] += static_cast<double>(layer_bytes[t]);
  for (size_t t = 0; t < spec.other_tensors.size(); ++t)
    if (spec.other_tensors[t].gpu_consumed)
      wbytes[static_cast<int>(p.other_weights[t])] += static_cast<double>(other_bytes[t]);
  const double wsum = wbytes[0] + wbytes[1] + wbytes[2];
  std::array<double, kNumTiers> kv{}, act{};
  for (Tier t : p.kv) kv[static_cast<int>(t)] += 1;
  for (Tier t : p.activations) act[static_cast<int>(t)] += 1;
  for (int t = 0; t < kNumTiers; ++t) {
    p.realised[kWg + t] = wsum > 0 ? wbytes[t] / wsum : (t == 0 ? 1 : 0);
    p.realised[kCg + t] = kv[t] / static_cast<double>(L * nb);
  }
  p.realised[kHg] = act[0] / static_cast<double>(nb);
  p.realised[kHc] = act[1] / static_cast<double>(nb);
  return p;
}

Placement realise(const ModelSpec& spec, const Policy& policy) {
  return realise(spec, policy.workload, policy.batch, policy.choices, policy.fractions);
}

MemoryPlan plan_memory(const ModelSpec& spec, const Placement& p) {
  MemoryPlan plan;
  const Sizes z = sizes(spec, p.workload, p.batch, p.choices);
  const Compression cw = p.choices.weights;
  const size_t per_layer = spec.layer_tensors.size();
  const int64_t L = spec.num_layers;

  // Weights: resident bytes per tier; per layer (and for the head) the bytes that must be
  // streamed to the GPU (size the prefetch slots) and read from disk (size the pinned staging).
  std::array<uint64_t, kNumTiers> resident{};
  uint64_t slot = 0, disk_stage = 0;
  const std::vector<uint64_t> layer_bytes = bytes_of(spec.layer_tensors, cw);
  for (int64_t i = 0; i < L; ++i) {
    uint64_t streamed = 0, from_disk = 0;
    for (size_t t = 0; t < per_layer; ++t) {
      const Tier tier = p.layer_weights[i * per_layer + t];
      const uint64_t b = layer_bytes[t];
      resident[static_cast<int>(tier)] += b;
      if (tier != Tier::kGpu) streamed += b;
      if (tier == Tier::kDisk) from_disk += b;
    }
    slot = std::max(slot, streamed);
    disk_stage = std::max(disk_stage, from_disk);
  }
  {
    uint64_t streamed = 0, from_disk = 0;
    for (size_t t = 0; t < spec.other_tensors.size(); ++t) {
      const Tier tier = p.other_weights[t];
      const uint64_t b = spec.other_tensors[t].bytes(cw);
      resident[static_cast<int>(tier)] += b;
      if (!spec.other_tensors[t].gpu_consumed) continue;
      if (tier != Tier::kGpu) streamed += b;
      if (tier == Tier::kDisk) from_disk += b;
    }
    slot = std::max(slot, streamed);
    disk_stage = std::max(disk_stage, from_disk);
  }
  int64_t kv_on[kNumTiers] = {0, 0, 0}, act_on[kNumTiers] = {0, 0, 0};
  for (Tier t : p.kv) ++kv_on[static_cast<int>(t)];
  for (Tier t : p.activations) ++act_on[static_cast<int>(t)];
  const bool kv_off_gpu = kv_on[1] + kv_on[2] > 0;

  auto add = [&](std::string name, Tier tier, uint64_t bytes_each, int64_t count, std::string what) {
    if (bytes_each == 0 || count == 0) return;
    plan.buffers.push_back({std::move(name), tier, bytes_each, count, std::move(what)});
  };
  // GPU.
  add("weights.resident", Tier::kGpu, resident[0], 1, "weight tensors kept on the GPU");
  add("weights.prefetch_slot", Tier::kGpu, slot, p.choices.prefetch_slots,
      p.choices.prefetch_slots >= 3 ? "streamed part of a layer: layers j+1 and j+2 load while j computes"
                                    : "streamed part of a layer: layer j+1 loads while j computes");
  add("kv.resident", Tier::kGpu, z.kv_unit, kv_on[0], "KV of one GPU batch in one layer");
  if (kv_off_gpu)
    add("kv.gpu_staging", Tier::kGpu, z.kv_gpu_staging, 2,
        p.choices.attention == Attention::kGpu ? "off-GPU KV of one batch and layer, loading and in use"
                                               : "a batch's new prompt KV on its way off the GPU");
  if (kv_on[0] > 0 || (p.choices.attention == Attention::kGpu && kv_off_gpu))
    add("kv.prompt_fp16", Tier::kGpu, z.kv_prompt_fp16, 1,
        "a prompt's own keys and values in fp16 for attention over int4 KV on the GPU");
  add("activations.resident", Tier::kGpu, z.hidden_batch, act_on[0],
      "[gbs, prompt, hidden] fp16 hidden states of one GPU batch");
  if (act_on[1] > 0)
    add("activations.gpu_staging", Tier::kGpu, z.hidden_batch, 2,
        "hidden states of the next batch loading and the previous one storing");
  for (const auto& b : z.working) plan.buffers.push_back(b);
  // Pinned host memory.
  add("weights.resident", Tier::kCpu, resident[1], 1, "weight tensors kept in pinned DRAM");
  add("weights.disk_staging", Tier::kCpu, disk_stage, 2, "disk part of a layer read ahead of PCIe");
  add("kv.resident", Tier::kCpu, z.kv_unit, kv_on[1], "KV of one GPU batch in one layer");
  if (kv_on[2] > 0)
    add("kv.disk_staging", Tier::kCpu, z.kv_unit, 3, "disk KV: two batches read ahead, one written");
  add("activations.resident", Tier::kCpu, z.hidden_batch, act_on[1],
      "[gbs, prompt, hidden] fp16 hidden states of one GPU batch");
  if (p.choices.attention == Attention::kCpu && kv_off_gpu)
    for (const auto& b : z.cpu_attention) plan.buffers.push_back(b);
  add("host.logits", Tier::kCpu, z.logits, 2, "[block, vocab] fp32 logits for sampling: pinned download and copy");
  // Disk.
  add("weights.resident", Tier::kDisk, resident[2], 1, "weight tensors in the offload directory");
  add("kv.resident", Tier::kDisk, z.kv_unit, kv_on[2], "KV of one GPU batch in one layer");
  return plan;
}

std::array<Affine, kNumTiers> memory_affine(const ModelSpec& spec, const Workload& w,
                                            const BatchShape& b, const Choices& ch) {
  const Sizes z = sizes(spec, w, b, ch);
  const double wall = static_cast<double>(spec.total_weight_bytes(ch.weights));
  const double wmax = static_cast<double>(std::max(spec.layer_bytes(ch.weights), spec.head_bytes(ch.weights)));
  const double units = static_cast<double>(spec.num_layers * b.num_gpu_batches);
  const double unit = static_cast<double>(z.kv_unit);
  const double hid = static_cast<double>(z.hidden_batch);
  const double nb = static_cast<double>(b.num_gpu_batches);
  std::array<Affine, kNumTiers> m;
  Affine& g = m[0];
  const double slots = ch.prefetch_slots;
  g.constant = static_cast<double>(sum_bytes(z.working)) + slots * wmax +
               2 * static_cast<double>(z.kv_gpu_staging) + 2 * hid;
  g.add(kWg, wall - slots * wmax);
  g.add(kCg, units * unit - 2 * static_cast<double>(z.kv_gpu_staging));
  // The int4 prompt scratch: always with attention on the GPU, else with the KV on the GPU (the
  // staging it replaces is counted the other way round).
  if (ch.attention == Attention::kGpu) {
    g.constant += static_cast<double>(z.kv_prompt_fp16);
  } else {
    g.add(kCg, static_cast<double>(z.kv_prompt_fp16));
  }
  g.add(kHg, nb * hid - 2 * hid);
  Affine& c = m[1];
  c.constant = 2 * static_cast<double>(z.logits);
  c.add(kWc, wall).add(kWd, 2 * wmax);
  c.add(kCc, units * unit).add(kCd, 3 * unit);
  c.add(kHc, nb * hid);
  if (ch.attention == Attention::kCpu) {
    const double att = static_cast<double>(sum_bytes(z.cpu_attention));
    c.add(kCc, att).add(kCd, att);
  }
  Affine& d = m[2];
  d.add(kWd, wall).add(kCd, units * unit);
  return m;
}

Status check_memory(const MemoryPlan& plan, const Budgets& budgets) {
  for (Tier t : {Tier::kGpu, Tier::kCpu, Tier::kDisk}) {
    const uint64_t used = plan.total(t), budget = budgets.of(t);
    if (used <= budget) continue;
    std::vector<const Buffer*> on;
    for (const auto& b : plan.buffers)
      if (b.tier == t) on.push_back(&b);
    std::sort(on.begin(), on.end(), [](auto* a, auto* b) { return a->bytes() > b->bytes(); });
    std::string largest;
    for (size_t i = 0; i < on.size() && i < 3; ++i)
      largest += (i ? ", " : "") + on[i]->name + " " + format_bytes(on[i]->bytes());
    return out_of_memory(std::string(tier_name(t)) + " tier short by " + format_bytes(used - budget) +
                         ": the placement needs " + format_bytes(used) + " but the budget is " +
                         format_bytes(budget) + " (largest: " + largest + ")");
  }
  return Status::ok();
}

int64_t paged_kv_page_len(int64_t gbs, int64_t max_len) {
  const int64_t target = std::clamp<int64_t>(max_len / 8, 1, 64);
  auto largest_divisor = [target](int64_t of) {
    int64_t d = target;
    while (of % d != 0) --d;
    return d;
  };
  const int64_t len = largest_divisor(max_len);
  return len * 4 < target ? largest_divisor(gbs * max_len) : len;
}

}  // namespace strata::planner
