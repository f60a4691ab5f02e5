#include "planner/cost_model.h"

#include <algorithm>
#include <cmath>

#include "common/check.h"
#include "planner/engine_calls.h"
#include "planner/memory_plan.h"

namespace strata::planner {

double Affine::eval(const Fractions& f) const {
  double v = constant;
  for (int i = 0; i < kNumFracs; ++i) v += coef[i] * f[i];
  return v;
}

Affine& Affine::operator+=(const Affine& o) {
  constant += o.constant;
  for (int i = 0; i < kNumFracs; ++i) coef[i] += o.coef[i];
  return *this;
}

Affine Affine::operator*(double s) const {
  Affine a = *this;
  a.constant *= s;
  for (auto& c : a.coef) c *= s;
  return a;
}

const char* resource_name(int r) {
  static const char* kNames[kNumResources] = {"disk_read",   "disk_write",  "h2d", "d2h",
                                              "gpu_compute", "cpu_compute", "dram"};
  return kNames[r];
}

namespace {

constexpr double kUs = 1e-6;

Affine constant(double c) {
  Affine a;
  a.constant = c;
  return a;
}

// What one layer of one phase moves and computes, as affine functions of the fractions.
struct Traffic {
  Affine h2d, d2h, disk_read, disk_write, dram_extra;  // bytes; dram_extra: CPU attention's KV reads
  Affine h2d_copies, d2h_copies, read_requests, write_requests;  // calls, each paying its latency
  Affine gpu_s, cpu_s;                                             // compute seconds
};

PhaseModel finish(const Traffic& t, const HardwareProfile& hw, int64_t nb, Phase phase) {
  const double h2d = hw.links.h2d_gbps * 1e9, d2h = hw.links.d2h_gbps * 1e9;
  const double duplex = hw.links.duplex_gbps * 1e9;
  const double rd = hw.disk.read_gbps * 1e9, wr = hw.disk.write_gbps * 1e9;
  const double dram = hw.cpu.dram_gbps * 1e9;
  const Calibration& cal = hw.calibration;
  auto cal_of = [&](int r) { return cal.of(phase, r); };
  PhaseModel m;
  Affine disk_read = t.disk_read * (1 / rd);
  disk_read += t.read_requests * (hw.disk.read_latency_us * kUs);
  Affine disk_write = t.disk_write * (1 / wr);
  disk_write += t.write_requests * (hw.disk.write_latency_us * kUs);
  Affine h2d_s = t.h2d * (1 / h2d);
  h2d_s += t.h2d_copies * (hw.links.h2d_latency_us * kUs);
  Affine d2h_s = t.d2h * (1 / d2h);
  d2h_s += t.d2h_copies * (hw.links.d2h_latency_us * kUs);
  m.seconds[kDiskRead] = disk_read * cal_of(kCalDiskRead);
  m.seconds[kDiskWrite] = disk_write * cal_of(kCalDiskWrite);
  m.seconds[kH2d] = h2d_s * cal_of(kCalH2d);
  m.seconds[kD2h] = d2h_s * cal_of(kCalD2h);
  m.seconds[kGpuCompute] = t.gpu_s * cal_of(kCalGpu);
  m.seconds[kCpuCompute] = t.cpu_s * cal_of(kCalCpuAttention);
  // Every DMA byte crosses DRAM once (disk reads land in pinned staging and leave it over PCIe:
  // counted once in disk_read and once in h2d); CPU attention reads its KV from DRAM too.
  Affine dram_bytes = t.h2d;
  dram_bytes += t.d2h;
  dram_bytes += t.disk_read;
  dram_bytes += t.disk_write;
  dram_bytes += t.dram_extra;
  m.seconds[kDram] = dram_bytes * (1 / dram);

  // One NVMe device serves reads and writes in turn.
  Affine disk = m.seconds[kDiskRead];
  disk += m.seconds[kDiskWrite];
  // Both directions at once share the link: each at the duplex rate, each copy paying its latency.
  Affine pcie_h2d = t.h2d * (1 / duplex);
  pcie_h2d += t.h2d_copies * (hw.links.h2d_latency_us * kUs);
  Affine pcie_d2h = t.d2h * (1 / duplex);
  pcie_d2h += t.d2h_copies * (hw.links.d2h_latency_us * kUs);
  Affine pcie = pcie_h2d * (0.5 * cal_of(kCalH2d));
  pcie += pcie_d2h * (0.5 * cal_of(kCalD2h));
  // The GPU and the CPU work on different GPU batches at once; with nb batches the pipeline
  // fills and drains once per layer, so the shorter side adds 1/nb of itself.
  Affine gpu = m.seconds[kGpuCompute];
  gpu += m.seconds[kCpuCompute] * (1.0 / static_cast<double>(nb));
  Affine cpu = m.seconds[kCpuCompute];
  cpu += m.seconds[kGpuCompute] * (1.0 / static_cast<double>(nb));
  m.bounds = {{"disk", disk},
              {"h2d", m.seconds[kH2d]},
              {"d2h", m.seconds[kD2h]},
              {"pcie_duplex", pcie},
              {"gpu_compute", gpu},
              {"cpu_compute", cpu},
              {"dram", m.seconds[kDram]}};
  return m;
}

// The shape of the problem: model, workload and batch numbers every term below uses.
struct Shape {
  double L, gbs, nb, B, s, n, ctx;
  int64_t max_len;
  double layer_w, head_w, w_stream;  // bytes: a layer, the head, a layer plus its share of the head
  double p_layer, p_head;            // GEMM parameters a token runs through
  // A layer's GEMMs as a dense part over every row and, in a sparse layer, `experts` experts of
  // which each row runs `k` (0 and 0 when dense): bytes, GEMM parameters and int4 weight elements
  // dequantised (0: fp16) of the dense part and of one expert.
  double dense_w, expert_w, p_dense, p_expert, deq_dense, deq_expert;
  double experts, k;
  double q_dim, hidden, kv_elems_per_token;
  double kv_token_bytes;             // one token's keys and values in one layer, stored form
  double parts;                      // KV copies per unit for keys or values (1, or 3 for int4)
};

// Seconds of a linear layer's GEMMs in one call of `rows` rows: the rate at that many rows or
// reading the weights from HBM, whichever is slower.
double linear_s(const RateCurve& curve, double rows, double flops, double bytes, double hbm) {
  return std::max(flops / (curve.tflops(rows) * 1e12), bytes / hbm);
}

// The GEMM rate at a number of rows per call: the curve's, or one scalar rate for every call.
struct GemmRate {
  const RateCurve* curve = nullptr;
  double scalar_tflops = 0;
  double tflops(double rows) const { return curve != nullptr ? curve->tflops(rows) : scalar_tflops; }
};

// Experts a call of `rows` rows wakes when each row picks k of the E experts, each alike:
// E (1 - (1 - k/E)^rows), nearly all of them once rows is well past E / k.
double woken_experts(const Shape& z, double rows) {
  return z.experts * (1 - std::pow(1 - z.k / z.experts, rows));
}

// Seconds of one layer's GEMMs in one call of `rows` rows: the dense part over every row and, in
// a sparse layer, each woken expert over its share of the rows (rows x k / woken, so at the rate
// of that smaller M), each at its rate or reading its weights from HBM, whichever is slower.
double dense_gemm_s(const Shape& z, const GemmRate& rate, double rows, double hbm) {
  return std::max(2 * rows * z.p_dense / (rate.tflops(rows) * 1e12), z.dense_w / hbm);
}
double experts_gemm_s(const Shape& z, const GemmRate& rate, double rows, double hbm) {
  if (z.experts == 0) return 0;
  const double woken = woken_experts(z, rows), m = rows * z.k / woken;
  return woken * std::max(2 * m * z.p_expert / (rate.tflops(m) * 1e12), z.expert_w / hbm);
}
double layer_gemm_s(const Shape& z, const GemmRate& rate, double rows, double hbm) {
  return dense_gemm_s(z, rate, rows, hbm) + experts_gemm_s(z, rate, rows, hbm);
}

// int4 weight elements one layer's GEMMs dequantise in a call of `rows` rows (idle experts none).
double layer_dequant_elems(const Shape& z, double rows) {
  if (z.experts == 0) return z.deq_dense;
  return z.deq_dense + woken_experts(z, rows) * z.deq_expert;
}

// The curve that prices the weights' GEMMs, or nullptr for the scalar rates.
const RateCurve* weight_curve(const GpuProfile& g, Compression cw) {
  if (cw == Compression::kInt4 && !g.linear_int4.empty()) return &g.linear_int4;
  return g.linear_fp16.empty() ? nullptr : &g.linear_fp16;
}

// Copies of a layer's streamed weights: one per part of each tier off the GPU per GPU batch, and
// the same again for the head (one more unit per step); one disk request per unit's disk part.
void weight_calls(const Shape& z, Traffic& t) {
  const double per_layer = 1 + 1 / z.L;
  t.h2d_copies.add(kWc, z.nb * per_layer).add(kWd, z.nb * per_layer);
  t.read_requests.add(kWd, per_layer);
}

PhaseModel prefill_model(const Shape& z, const ModelSpec& spec, const HardwareProfile& hw,
                         const BatchShape& batch, const Choices& ch) {
  Traffic t;
  const GpuProfile& g = hw.gpu;
  const double hbm = g.hbm_gbps * 1e9;
  const double attn_flops = 2 * z.B * z.s * z.s * z.q_dim;  // QK^T and PV, causal half of each
  const RateCurve* curve = weight_curve(g, ch.weights);
  double gpu;
  if (curve == nullptr) {
    const double gemm_flops = 2 * z.B * z.s * z.p_layer + 2 * z.B * z.p_head / z.L;  // head: last token
    gpu = (gemm_flops + attn_flops) / (g.gemm_prefill_tflops * 1e12);
  } else {
    const double rows = z.gbs * z.s;
    gpu = z.nb * layer_gemm_s(z, {curve}, rows, hbm);
    gpu += z.nb * linear_s(*curve, z.gbs, 2 * z.gbs * z.p_head, z.head_w, hbm) / z.L;
    const double attn_rate = g.linear_fp16.empty() ? g.gemm_prefill_tflops : g.linear_fp16.tflops(rows);
    gpu += attn_flops / (attn_rate * 1e12);
  }
  // Each GPU batch's GEMMs dequantise the weights again (an int4 curve has that inside).
  if (curve != &g.linear_int4) gpu += z.nb * layer_dequant_elems(z, z.gbs * z.s) / g.dequant_rate();
  if (ch.kv == Compression::kInt4) gpu += z.B * z.s * z.kv_elems_per_token / g.dequant_rate();  // quantise
  gpu += z.nb * g.fixed.prefill_layer_us * kUs;
  t.gpu_s = constant(gpu);

  const double kv_new = z.kv_token_bytes * z.B * z.s;
  const double hid = z.B * z.s * z.hidden * 2;
  t.h2d.add(kWc, z.w_stream).add(kWd, z.w_stream).add(kHc, hid);
  t.d2h.add(kCc, kv_new).add(kCd, kv_new).add(kHc, hid);
  t.disk_read.add(kWd, z.w_stream);
  t.disk_write.add(kCd, kv_new);
  weight_calls(z, t);
  // A batch's hidden states go to the host after each layer and come back before the next.
  t.h2d_copies.add(kHc, z.nb);
  t.d2h_copies.add(kHc, z.nb);
  // Off-GPU KV leaves in one 2-D copy per part, for keys and values; disk KV is then written
  // sequence by sequence.
  t.d2h_copies.add(kCc, z.nb * 2 * z.parts).add(kCd, z.nb * 2 * z.parts);
  const auto gbs = batch.gpu_batch_size;
  t.write_requests.add(kCd, z.nb * static_cast<double>(kv_disk_requests(
                                       spec, ch.kv, gbs, z.max_len, 0, static_cast<int64_t>(z.s))));
  return finish(t, hw, batch.num_gpu_batches, kPrefill);
}

// Seconds of one CPU attention call over a GPU batch's KV of `kv_bytes`; without a per-call
// profile the kernel's arithmetic, its unpacking of int4 KV, or its read of the KV from DRAM,
// whichever is slowest (the dram bound adds the PCIe traffic sharing that bandwidth).
double cpu_attention_call_s(const Shape& z, const HardwareProfile& hw, Compression ckv, double kv_bytes) {
  const CpuAttentionCost& c = ckv == Compression::kInt4 ? hw.cpu.attention_int4 : hw.cpu.attention_fp16;
  if (c.present()) return c.fixed_us * kUs + c.per_sequence_us * kUs * z.gbs + kv_bytes / (c.gbps * 1e9);
  const double kv_deq = ckv == Compression::kInt4 ? z.gbs * z.ctx * z.kv_elems_per_token / hw.cpu.dequant_rate() : 0;
  return std::max({4 * z.gbs * z.ctx * z.q_dim / (hw.cpu.attention_gflops * 1e9), kv_deq,
                   kv_bytes / (hw.cpu.dram_gbps * 1e9)});
}

PhaseModel decode_model(const Shape& z, const ModelSpec& spec, const HardwareProfile& hw,
                        const BatchShape& batch, const Choices& ch) {
  Traffic t;
  const GpuProfile& g = hw.gpu;
  const double hbm = g.hbm_gbps * 1e9;
  const RateCurve* curve = weight_curve(g, ch.weights);
  // Per GPU batch the GEMMs either run at the decode rate or wait on reading the weights from
  // HBM, whichever is slower; a sparse layer's experts run once over the whole block's rows.
  const GemmRate rate{curve, g.gemm_decode_tflops};
  double gpu = z.nb * dense_gemm_s(z, rate, z.gbs, hbm) + experts_gemm_s(z, rate, z.B, hbm);
  if (curve == nullptr) {
    const double rate = g.gemm_decode_tflops * 1e12;
    gpu += z.nb * std::max(2 * z.gbs * z.p_head / rate, z.head_w / hbm) / z.L;
  } else {
    gpu += z.nb * linear_s(*curve, z.gbs, 2 * z.gbs * z.p_head, z.head_w, hbm) / z.L;
  }
  if (curve != &g.linear_int4) {
    const double experts = z.experts > 0 ? woken_experts(z, z.B) * z.deq_expert : 0;
    gpu += (z.nb * z.deq_dense + experts) / g.dequant_rate();
  }
  if (ch.kv == Compression::kInt4) gpu += z.B * z.kv_elems_per_token / g.dequant_rate();
  t.gpu_s = constant(gpu);

  const double kv_read = z.kv_token_bytes * z.B * z.ctx;
  const double kv_new = z.kv_token_bytes * z.B;
  const double kv_deq_gpu = ch.kv == Compression::kInt4 ? z.B * z.ctx * z.kv_elems_per_token / g.dequant_rate() : 0;
  const double fixed = z.nb * g.fixed.decode_layer_us * kUs;
  // Attention over GPU-resident KV: bound by reading it from HBM.
  t.gpu_s.add(kCg, kv_read / hbm + kv_deq_gpu + fixed);
  if (ch.attention == Attention::kGpu) {
    for (Frac f : {kCc, kCd}) {
      t.h2d.add(f, kv_read);
      t.d2h.add(f, kv_new);
      t.gpu_s.add(f, kv_read / hbm + kv_deq_gpu + fixed);
      // The unit comes in one 2-D copy per part for keys and values; each sequence's new row goes
      // back in its own copies.
      t.h2d_copies.add(f, z.nb * 2 * z.parts);
      t.d2h_copies.add(f, z.B * 2 * z.parts);
    }
  } else {
    const double qo = z.B * z.q_dim * 2;  // fp16 queries out, attention outputs back
    const double call = cpu_attention_call_s(z, hw, ch.kv, kv_read / z.nb);
    for (Frac f : {kCc, kCd}) {
      t.d2h.add(f, qo + kv_new);
      t.h2d.add(f, qo);
      t.cpu_s.add(f, z.nb * call);
      t.dram_extra.add(f, kv_read);
      t.gpu_s.add(f, z.nb * g.fixed.decode_split_layer_us * kUs);
      t.d2h_copies.add(f, z.nb * 3);  // q, k and v to the host
    }
  }
  t.disk_read.add(kCd, kv_read);
  t.disk_write.add(kCd, kv_new);
  const auto gbs = batch.gpu_batch_size;
  const auto c = static_cast<int64_t>(z.ctx);
  t.read_requests.add(kCd, z.nb * static_cast<double>(kv_disk_requests(spec, ch.kv, gbs, z.max_len, 0, c + 1)));
  t.write_requests.add(kCd, z.nb * static_cast<double>(kv_disk_requests(spec, ch.kv, gbs, z.max_len, c, c + 1)));
  const double hid = z.B * z.hidden * 2;
  t.h2d.add(kWc, z.w_stream).add(kWd, z.w_stream).add(kHc, hid);
  t.d2h.add(kHc, hid);
  t.disk_read.add(kWd, z.w_stream);
  weight_calls(z, t);
  t.h2d_copies.add(kHc, z.nb);
  t.d2h_copies.add(kHc, z.nb);
  return finish(t, hw, batch.num_gpu_batches, kDecode);
}

}  // namespace

namespace {

// Blocks of `w.prompt_len + w.gen_len`-token requests in KV caches laid out for `max_len`
// positions per sequence (the longest request of the job).
CostModel build_for(const ModelSpec& spec, const Workload& w, int64_t max_len, const HardwareProfile& hw,
                    const BatchShape& batch, const Choices& ch) {
  STRATA_CHECK(w.prompt_len > 0 && w.gen_len > 0, "workload lengths must be positive");
  STRATA_CHECK(w.prompt_len + w.gen_len <= max_len, "a request longer than its KV cache");
  CostModel cm;
  cm.layers = spec.num_layers;
  cm.decode_steps = w.gen_len - 1;
  cm.block = batch.block();
  cm.gen_len = w.gen_len;

  Shape z;
  z.L = static_cast<double>(spec.num_layers);
  z.gbs = static_cast<double>(batch.gpu_batch_size);
  z.nb = static_cast<double>(batch.num_gpu_batches);
  z.B = z.gbs * z.nb;
  z.s = static_cast<double>(w.prompt_len);
  z.n = static_cast<double>(w.gen_len);
  z.ctx = z.s + z.n / 2;  // mean context a decode step attends to
  z.max_len = max_len;
  // Bytes streamed per layer when a layer is entirely off the GPU: the layer plus its share of
  // the head, which is streamed like one more layer per step. A sparse layer streams every
  // expert, each step: its weights load before its router has run, and an offline batch wakes
  // nearly every expert anyway (a GPU batch of R rows leaves one idle with odds (1 - k/E)^R).
  z.layer_w = static_cast<double>(spec.layer_bytes(ch.weights));
  z.head_w = static_cast<double>(spec.head_bytes(ch.weights));
  z.w_stream = z.layer_w + z.head_w / z.L;
  z.p_layer = static_cast<double>(spec.layer_gemm_params);
  z.p_head = static_cast<double>(spec.head_gemm_params);
  const bool int4 = ch.weights == Compression::kInt4;
  const uint64_t experts = static_cast<uint64_t>(spec.num_experts);
  z.experts = static_cast<double>(spec.num_experts);
  z.k = static_cast<double>(spec.experts_per_token);
  z.expert_w = static_cast<double>(spec.expert_bytes(ch.weights));
  z.dense_w = static_cast<double>(spec.layer_bytes(ch.weights) - experts * spec.expert_bytes(ch.weights));
  z.p_dense = static_cast<double>(spec.layer_dense_gemm_params);
  z.p_expert = static_cast<double>(spec.expert_gemm_params);
  const int64_t expert_elems = spec.expert_compressible_elements();
  z.deq_expert = int4 ? static_cast<double>(expert_elems) : 0.0;
  z.deq_dense = int4 ? static_cast<double>(spec.layer_compressible_elements() - spec.num_experts * expert_elems) : 0.0;
  z.q_dim = static_cast<double>(spec.q_dim);
  z.hidden = static_cast<double>(spec.hidden);
  z.kv_elems_per_token = 2.0 * static_cast<double>(spec.kv_dim);
  z.kv_token_bytes = static_cast<double>(spec.kv_bytes(1, ch.kv));
  z.parts = kv_parts(ch.kv);

  cm.prefill = prefill_model(z, spec, hw, batch, ch);
  cm.decode = decode_model(z, spec, hw, batch, ch);
  return cm;
}

}  // namespace

CostModel build_cost_model(const ModelSpec& spec, const Workload& w, const HardwareProfile& hw,
                           const BatchShape& batch, const Choices& ch) {
  return build_for(spec, w, w.prompt_len + w.gen_len, hw, batch, ch);
}

PhaseTimes evaluate_phase(const PhaseModel& phase, const Fractions& f) {
  PhaseTimes t;
  for (int r = 0; r < kNumResources; ++r) t.resources.emplace_back(resource_name(r), phase.seconds[r].eval(f));
  double best = -1;
  for (const auto& b : phase.bounds) {
    const double v = b.seconds.eval(f);
    t.bounds.emplace_back(b.name, v);
    if (v > best) {
      best = v;
      t.bottleneck = b.name;
    }
  }
  t.layer_s = std::max(best, 0.0);
  if (t.bottleneck == "disk") {
    t.bottleneck = phase.seconds[kDiskRead].eval(f) >= phase.seconds[kDiskWrite].eval(f)
                       ? "disk_read"
                       : "disk_write";
  }
  return t;
}

Prediction predict(const CostModel& m, const Fractions& f, const Workload& w) {
  Prediction p;
  p.prefill = evaluate_phase(m.prefill, f);
  p.decode = evaluate_phase(m.decode, f);
  const double L = static_cast<double>(m.layers);
  p.prefill_s = L * p.prefill.layer_s;
  p.decode_step_s = m.decode_steps > 0 ? L * p.decode.layer_s : 0;
  p.block_s = p.prefill_s + static_cast<double>(m.decode_steps) * p.decode_step_s;
  p.tokens_per_s = static_cast<double>(m.block * m.gen_len) / p.block_s;
  if (w.requests > 0) {
    const int64_t blocks = (w.requests + m.block - 1) / m.block;
    p.job_s = static_cast<double>(blocks) * p.block_s;
  }
  p.bottleneck = p.prefill_s >= static_cast<double>(m.decode_steps) * p.decode_step_s
                     ? p.prefill.bottleneck
                     : p.decode.bottleneck;
  return p;
}

int32_t refill_threshold(double mean_new_tokens, int32_t slots) {
  const double fraction = std::min(0.5, std::sqrt(2.0 / std::max(1.0, mean_new_tokens)));
  return std::max<int32_t>(1, static_cast<int32_t>(std::ceil(fraction * slots)));
}

int64_t paged_batch_size(const Workload& w, int64_t gbs) {
  double weighted = 0, weight = 0;
  for (const auto& b : w.mix) {
    const double g = static_cast<double>(b.gen_len), n = static_cast<double>(b.count);
    weighted += n * g * static_cast<double>(b.prompt_len + b.gen_len);
    weight += n * g;
  }
  if (!w.continuous || weight <= 0) return gbs;
  const double longest = static_cast<double>(w.prompt_len + w.gen_len);
  const double page = static_cast<double>(paged_kv_page_len(gbs, w.prompt_len + w.gen_len));
  const double mean = weighted / weight + page / 2;
  return std::clamp<int64_t>(static_cast<int64_t>(std::floor(static_cast<double>(gbs) * longest / mean)), gbs,
                             gbs * kPagedSequencesPerSlot);
}

JobModel build_job_model(const ModelSpec& spec, const Workload& w, const HardwareProfile& hw,
                         const BatchShape& given, const Choices& ch) {
  JobModel job;
  if (w.mix.empty()) {
    job.parts.push_back(build_cost_model(spec, w, hw, given, ch));
    job.blocks.push_back(1);
    return job;
  }
  // A continuous job's GPU batches hold as many sequences as their KV pages fit.
  BatchShape batch = given;
  batch.gpu_batch_size = paged_batch_size(w, given.gpu_batch_size);
  const double block = static_cast<double>(batch.block());
  double total = 0, gen = 0, prompt = 0;
  for (const auto& b : w.mix) {
    total += static_cast<double>(b.count);
    gen += static_cast<double>(b.count * b.gen_len);
    prompt += static_cast<double>(b.count * b.prompt_len);
  }
  for (const auto& b : w.mix) {
    job.parts.push_back(build_for(spec, {b.prompt_len, b.gen_len, 0, {}}, w.prompt_len + w.gen_len, hw, batch, ch));
    const double share = static_cast<double>(b.count) / (w.requests > 0 ? block : total);
    job.blocks.push_back(w.requests > 0 && !w.continuous ? std::ceil(share) : share);
  }
  if (w.continuous) {
    // A refill every time refill_threshold's share of the slots has emptied, per block-worth of
    // requests (or per request's share of one without a request count). With attention on the
    // GPU the engine takes the joining prompts into its decode steps (mixed steps): no refill
    // reads the weights again.
    const double requests = w.requests > 0 ? total : 1.0;
    job.refills = requests / refill_threshold(gen / total, static_cast<int32_t>(block));
    if (w.requests <= 0) job.refills /= block;
    if (ch.attention == Attention::kGpu) job.refills = 0;
    if (w.requests > 0) {
      const int64_t mean_prompt = std::max<int64_t>(1, std::llround(prompt / total));
      job.tail = build_for(spec, {mean_prompt, w.gen_len, 0, {}}, w.prompt_len + w.gen_len, hw,
                           {given.gpu_batch_size, 1}, ch);
    }
  }
  return job;
}

Prediction predict(const JobModel& job, const Fractions& f, const Workload& w) {
  STRATA_CHECK(!job.parts.empty() && job.parts.size() == job.blocks.size(), "a job model needs its parts");
  if (job.parts.size() == 1 && w.mix.empty()) return predict(job.parts[0], f, w);
  Prediction out;
  double blocks = 0, time = 0, tokens = 0, heaviest = -1;
  for (size_t i = 0; i < job.parts.size(); ++i) {
    const CostModel& m = job.parts[i];
    const Prediction p = predict(m, f, Workload{});
    const double b = job.blocks[i];
    blocks += b;
    time += b * p.block_s;
    tokens += b * static_cast<double>(m.block * m.gen_len);
    out.prefill_s += b * p.prefill_s;
    out.decode_step_s += b * p.decode_step_s;
    if (b * p.block_s > heaviest) {
      heaviest = b * p.block_s;
      out.prefill = p.prefill;
      out.decode = p.decode;
      out.bottleneck = p.bottleneck;
    }
  }
  out.prefill_s /= blocks;
  out.decode_step_s /= blocks;
  time += job.refills * out.decode_step_s;
  if (job.tail && w.requests > 0) {
    const Prediction one = predict(*job.tail, f, Workload{});
    time = std::max(time, out.prefill_s + static_cast<double>(std::max<int64_t>(0, w.gen_len - 1)) * one.decode_step_s);
  }
  out.block_s = time / blocks;
  out.tokens_per_s = tokens / time;
  if (w.requests > 0) out.job_s = time;
  return out;
}

}  // namespace strata::planner
