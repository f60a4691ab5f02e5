// HardwareProfile: what the planner knows about a machine: the GPU (memory, GEMM rates at
// prefill- and decode-sized shapes or as curves over rows per call, HBM bandwidth, fixed seconds
// per layer and GPU batch), the host (cores, DRAM size and bandwidth, CPU attention rates and
// per-call costs), the links (pinned host->GPU, GPU->host, both at once, latency per copy), the
// disk (bandwidth, latency per request) and calibration factors from measured runs. Every
// per-call field is optional: without it the cost model predicts from the rates alone. Read from
// and written as JSON (`strata profile` writes one; policies/hardware/ holds a catalogue compiled
// into the library). Plain values, thread safe. Units: bytes, GB/s (1e9 B/s), TFLOP/s, GFLOP/s,
// microseconds (fields ending in _us).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/status.h"

namespace strata::planner {

// A linear-layer (GEMM/GEMV) rate as a function of the rows one call multiplies: points sorted by
// rows, interpolated linearly in log(rows) and clamped at both ends.
struct RatePoint {
  double rows = 0;
  double tflops = 0;
};
struct RateCurve {
  std::vector<RatePoint> points = {};  // empty: no curve
  bool empty() const { return points.empty(); }
  double tflops(double rows) const;  // STRATA_CHECKs a curve is present
};

// Fixed GPU seconds per (layer, GPU batch): the kernel launches and small ops of one layer of one
// GPU batch, beyond its GEMMs and attention. A decode layer split around CPU attention issues
// another kernel sequence (pre-attention, the q/k/v copies to the host, the output's copy back on
// the compute stream, post-attention). Prefill attention always runs on the GPU. 0: not known.
struct GpuFixedCosts {
  double prefill_layer_us = 0;
  double decode_layer_us = 0;
  double decode_split_layer_us = 0;
  bool any() const { return prefill_layer_us > 0 || decode_layer_us > 0 || decode_split_layer_us > 0; }
};

struct GpuProfile {
  std::string name;
  uint64_t memory_bytes = 0;
  double gemm_prefill_tflops = 0;  // fp16 GEMM at prefill shapes (thousands of rows)
  double gemm_decode_tflops = 0;   // fp16 GEMM at decode shapes (tens of rows)
  double hbm_gbps = 0;             // device memory bandwidth
  // int4-g64 elements a fused dequantising kernel consumes per second, in billions; 0 derives it
  // from hbm_gbps (as fast as the packed bytes stream: 1 / 0.5625 B per element).
  double dequant_gelems = 0;
  double dequant_rate() const;  // elements/s
  // Linear layers over fp16 and over int4-g64 weights by rows per call; the int4 curve is the
  // rate of the whole int4 path (dequantisation included). Empty: the scalar rates above.
  RateCurve linear_fp16 = {}, linear_int4 = {};
  GpuFixedCosts fixed = {};
  // What CUDA reports as the device name for cards this entry describes ("Tesla T4").
  std::vector<std::string> cuda_names = {};
};

// One CPU attention call (one layer of one GPU batch): fixed + per_sequence x sequences + KV bytes
// (as stored) / rate. gbps 0: not known (the cost model uses attention_gflops and the DRAM rate).
struct CpuAttentionCost {
  double fixed_us = 0;
  double per_sequence_us = 0;
  double gbps = 0;
  bool present() const { return gbps > 0; }
};

struct CpuProfile {
  std::string name;
  int cores = 0;
  uint64_t dram_bytes = 0;
  double dram_gbps = 0;          // DRAM read bandwidth with all cores
  double gemm_tflops = 0;        // CPU GEMM (informational: the GPU runs every GEMM)
  double attention_gflops = 0;   // decode attention over host-resident KV, all cores
  // int4 KV elements dequantised per second by all cores, in billions; 0 derives it
  // (16 elements per GFLOP/s of attention rate).
  double dequant_gelems = 0;
  double dequant_rate() const;   // elements/s
  CpuAttentionCost attention_fp16 = {}, attention_int4 = {};  // by the KV cache's storage
};

// A copy of n bytes takes latency + n / rate; a 2-D copy counts once.
struct LinkProfile {
  double h2d_gbps = 0;     // pinned host -> GPU copies alone
  double d2h_gbps = 0;     // pinned GPU -> host copies alone
  double duplex_gbps = 0;  // each direction when both run at once
  double h2d_latency_us = 0;
  double d2h_latency_us = 0;
};

// A request of n bytes costs latency + n / rate of the device's time (at strata's queue depth).
struct DiskProfile {
  std::string name;
  uint64_t capacity_bytes = 0;
  double read_gbps = 0;   // O_DIRECT reads of MiB-sized blocks at the queue depth strata uses
  double write_gbps = 0;
  double read_latency_us = 0;
  double write_latency_us = 0;
};

// Measured / predicted busy seconds of each resource in each phase, from runs of the engine
// (planner/recalibrate.h). The cost model multiplies the resource's predicted seconds by its
// factor. 1 everywhere: uncalibrated.
enum CalibratedResource { kCalGpu, kCalH2d, kCalD2h, kCalDiskRead, kCalDiskWrite, kCalCpuAttention, kNumCalibrated };
const char* calibrated_resource_name(int r);  // "gpu", "h2d", "d2h", "disk_read", "disk_write", "cpu_attention"
enum Phase { kPrefill = 0, kDecode = 1 };
struct Calibration {
  std::array<std::array<double, kNumCalibrated>, 2> factor = {{{1, 1, 1, 1, 1, 1}, {1, 1, 1, 1, 1, 1}}};
  bool identity() const;
  double of(Phase p, int r) const { return factor[p][r]; }
};

// The machine a measured profile describes: `strata profile` records it and the profile cache
// (tools/profile_cache.h) is keyed by it. Empty in catalogue entries and hand-written profiles.
struct MachineId {
  std::string gpu_uuid;        // CUDA's UUID of the GPU ("GPU-8c2e0f1a-..."); empty without one
  std::string gpu_name;        // CUDA's name of the GPU
  std::string cpu_model;       // /proc/cpuinfo's "model name"
  std::string offload_device;  // the offload directory's device (st_dev), "major:minor"
  bool empty() const {
    return gpu_uuid.empty() && gpu_name.empty() && cpu_model.empty() && offload_device.empty();
  }
  bool operator==(const MachineId&) const = default;
};

struct HardwareProfile {
  std::string name;
  std::string description;
  std::string source;  // where the numbers come from (data sheets, a measurement, a paper)
  bool in_capacity_sweep = true;  // catalogue entries: whether `strata capacity` sweeps this GPU
  GpuProfile gpu;
  CpuProfile cpu;
  LinkProfile links;
  DiskProfile disk;
  Calibration calibration = {};
  MachineId machine = {};  // optional in the JSON ("machine"): where a measured profile came from
};

// Parses a profile. `source` (a file name or catalogue name) prefixes every error, which names
// the field: e.g. "hardware.json: gpu.hbm_gbps: must be a positive number".
Result<HardwareProfile> parse_hardware_profile(const nlohmann::json& j, const std::string& source);
nlohmann::json hardware_profile_to_json(const HardwareProfile& p);

// The catalogue in policies/hardware/*.json, compiled in; sorted by name.
std::vector<HardwareProfile> hardware_catalogue();
// A catalogue entry by name (case-insensitive); kNotFound lists the names.
Result<HardwareProfile> catalogue_hardware(std::string_view name);
// The catalogue entry for a card by the name CUDA reports for it and its memory in bytes (0:
// unknown): an exact name in an entry's gpu.cuda_names first, then the same name compared without
// case, punctuation and the "NVIDIA", "GeForce" and "Tesla" prefixes, then the same model number
// ("A100", "T4"); the entry whose memory is closest breaks ties, and data-sheet entries (those in
// the capacity sweep) come before a measured machine's. kNotFound names the card.
Result<HardwareProfile> catalogue_hardware_for_cuda_name(std::string_view cuda_name, uint64_t memory_bytes);

// The text of an embedded policies/ file ("capacity/prices.json"), or kNotFound.
Result<std::string> embedded_policy_file(std::string_view relative_path);

}  // namespace strata::planner
