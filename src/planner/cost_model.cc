#include "planner/cost_model.h"

#include <algorithm>
#include <cmath>

#include "common/check.h"

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

Affine constant(double c) {
  Affine a;
  a.constant = c;
  return a;
}

// Bytes moved per layer in one phase, as affine functions of the fractions.
struct Traffic {
  Affine h2d, d2h, disk_read, disk_write, dram_extra;  // dram_extra: CPU attention's KV reads
  Affine gpu_s, cpu_s;                                 // compute seconds
};

PhaseModel finish(const Traffic& t, const HardwareProfile& hw, int64_t nb) {
  const double h2d = hw.links.h2d_gbps * 1e9, d2h = hw.links.d2h_gbps * 1e9;
  const double duplex = hw.links.duplex_gbps * 1e9;
  const double rd = hw.disk.read_gbps * 1e9, wr = hw.disk.write_gbps * 1e9;
  const double dram = hw.cpu.dram_gbps * 1e9;
  PhaseModel m;
  m.seconds[kDiskRead] = t.disk_read * (1 / rd);
  m.seconds[kDiskWrite] = t.disk_write * (1 / wr);
  m.seconds[kH2d] = t.h2d * (1 / h2d);
  m.seconds[kD2h] = t.d2h * (1 / d2h);
  m.seconds[kGpuCompute] = t.gpu_s;
  m.seconds[kCpuCompute] = t.cpu_s;
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
  Affine pcie = t.h2d;
  pcie += t.d2h;
  pcie = pcie * (1 / (2 * duplex));
  // The GPU and the CPU work on different GPU batches at once; with nb batches the pipeline
  // fills and drains once per layer, so the shorter side adds 1/nb of itself.
  Affine gpu = t.gpu_s;
  gpu += t.cpu_s * (1.0 / static_cast<double>(nb));
  Affine cpu = t.cpu_s;
  cpu += t.gpu_s * (1.0 / static_cast<double>(nb));
  m.bounds = {{"disk", disk},
              {"h2d", m.seconds[kH2d]},
              {"d2h", m.seconds[kD2h]},
              {"pcie_duplex", pcie},
              {"gpu_compute", gpu},
              {"cpu_compute", cpu},
              {"dram", m.seconds[kDram]}};
  return m;
}

}  // namespace

CostModel build_cost_model(const ModelSpec& spec, const Workload& w, const HardwareProfile& hw,
                           const BatchShape& batch, const Choices& ch) {
  STRATA_CHECK(w.prompt_len > 0 && w.gen_len > 0, "workload lengths must be positive");
  CostModel cm;
  cm.layers = spec.num_layers;
  cm.decode_steps = w.gen_len - 1;
  cm.block = batch.block();
  cm.gen_len = w.gen_len;

  const double L = static_cast<double>(spec.num_layers);
  const double gbs = static_cast<double>(batch.gpu_batch_size);
  const double nb = static_cast<double>(batch.num_gpu_batches);
  const double B = gbs * nb;
  const double s = static_cast<double>(w.prompt_len);
  const double n = static_cast<double>(w.gen_len);
  const double ctx = s + n / 2;  // mean context a decode step attends to

  const double rate_p = hw.gpu.gemm_prefill_tflops * 1e12;
  const double rate_g = hw.gpu.gemm_decode_tflops * 1e12;
  const double hbm = hw.gpu.hbm_gbps * 1e9;
  const double deq_gpu = hw.gpu.dequant_rate();
  const double deq_cpu = hw.cpu.dequant_rate();
  const double cpu_attn = hw.cpu.attention_gflops * 1e9;

  const Compression cw = ch.weights, ckv = ch.kv;
  // Bytes streamed per layer when a layer is entirely off the GPU: the layer plus its share of
  // the head, which is streamed like one more layer per step.
  const double layer_w = static_cast<double>(spec.layer_bytes(cw));
  const double head_w = static_cast<double>(spec.head_bytes(cw));
  const double w_stream = layer_w + head_w / L;
  const double p_layer = static_cast<double>(spec.layer_gemm_params);
  const double p_head = static_cast<double>(spec.head_gemm_params);
  const double deq_elems = cw == Compression::kInt4
                               ? static_cast<double>(spec.layer_compressible_elements())
                               : 0.0;
  const double q_dim = static_cast<double>(spec.q_dim);
  const double hidden = static_cast<double>(spec.hidden);
  const double kv_elems_per_token = 2.0 * static_cast<double>(spec.kv_dim);
  auto kv_bytes = [&](double tokens) {
    return static_cast<double>(spec.kv_bytes(1, ckv)) * tokens;
  };

  // ---- Prefill: the whole prompt of every sequence of the block, one layer.
  {
    Traffic t;
    const double gemm_flops = 2 * B * s * p_layer + 2 * B * p_head / L;  // head: last token only
    const double attn_flops = 2 * B * s * s * q_dim;  // QK^T and PV, causal half of each
    double gpu = (gemm_flops + attn_flops) / rate_p;
    gpu += nb * deq_elems / deq_gpu;  // each GPU batch's GEMMs dequantise the weights again
    if (ckv == Compression::kInt4) gpu += B * s * kv_elems_per_token / deq_gpu;  // quantise
    t.gpu_s = constant(gpu);
    const double kv_new = kv_bytes(B * s);
    const double hid = B * s * hidden * 2;
    t.h2d.add(kWc, w_stream).add(kWd, w_stream).add(kHc, hid);
    t.d2h.add(kCc, kv_new).add(kCd, kv_new).add(kHc, hid);
    t.disk_read.add(kWd, w_stream);
    t.disk_write.add(kCd, kv_new);
    cm.prefill = finish(t, hw, batch.num_gpu_batches);
  }

  // ---- Decode: one new token per sequence, attending to ctx positions, one layer.
  {
    Traffic t;
    // Per GPU batch the GEMMs either run at the decode rate or wait on reading the weights from
    // HBM, whichever is slower.
    double gpu = nb * std::max(2 * gbs * p_layer / rate_g, layer_w / hbm);
    gpu += nb * std::max(2 * gbs * p_head / rate_g, head_w / hbm) / L;
    gpu += nb * deq_elems / deq_gpu;
    if (ckv == Compression::kInt4) gpu += B * kv_elems_per_token / deq_gpu;
    t.gpu_s = constant(gpu);

    const double kv_read = kv_bytes(B * ctx);
    const double kv_new = kv_bytes(B);
    const double kv_deq_gpu = ckv == Compression::kInt4 ? B * ctx * kv_elems_per_token / deq_gpu : 0;
    const double kv_deq_cpu = ckv == Compression::kInt4 ? B * ctx * kv_elems_per_token / deq_cpu : 0;
    // Attention over GPU-resident KV: bound by reading it from HBM.
    t.gpu_s.add(kCg, kv_read / hbm + kv_deq_gpu);
    if (ch.attention == Attention::kGpu) {
      for (Frac f : {kCc, kCd}) {
        t.h2d.add(f, kv_read);
        t.d2h.add(f, kv_new);
        t.gpu_s.add(f, kv_read / hbm + kv_deq_gpu);
      }
    } else {
      const double qo = B * q_dim * 2;  // fp16 queries out, attention outputs back
      // The kernel's arithmetic, its unpacking of int4 KV, or its read of the KV from DRAM,
      // whichever is slowest (the dram bound adds the PCIe traffic sharing that bandwidth).
      const double attn_s = std::max({4 * B * ctx * q_dim / cpu_attn, kv_deq_cpu,
                                      kv_read / (hw.cpu.dram_gbps * 1e9)});
      for (Frac f : {kCc, kCd}) {
        t.d2h.add(f, qo + kv_new);
        t.h2d.add(f, qo);
        t.cpu_s.add(f, attn_s);
        t.dram_extra.add(f, kv_read);
      }
    }
    t.disk_read.add(kCd, kv_read);
    t.disk_write.add(kCd, kv_new);
    const double hid = B * hidden * 2;
    t.h2d.add(kWc, w_stream).add(kWd, w_stream).add(kHc, hid);
    t.d2h.add(kHc, hid);
    t.disk_read.add(kWd, w_stream);
    cm.decode = finish(t, hw, batch.num_gpu_batches);
  }
  return cm;
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

}  // namespace strata::planner
