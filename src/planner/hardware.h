// HardwareProfile: what the planner knows about a machine: the GPU (memory, GEMM rates at
// prefill- and decode-sized shapes, HBM bandwidth), the host (cores, DRAM size and bandwidth, CPU
// GEMM and attention rates), the links (pinned host->GPU, GPU->host, both at once) and the disk.
// Read from and written as JSON (`strata profile` writes one; policies/hardware/ holds a catalogue
// compiled into the library). Pure, thread safe. Units: bytes, GB/s (1e9 B/s), TFLOP/s, GFLOP/s.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/status.h"

namespace strata::planner {

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
};

struct LinkProfile {
  double h2d_gbps = 0;     // pinned host -> GPU copies alone
  double d2h_gbps = 0;     // pinned GPU -> host copies alone
  double duplex_gbps = 0;  // each direction when both run at once
};

struct DiskProfile {
  std::string name;
  uint64_t capacity_bytes = 0;
  double read_gbps = 0;   // O_DIRECT reads of MiB-sized blocks at the queue depth strata uses
  double write_gbps = 0;
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
};

// Parses a profile. `source` (a file name or catalogue name) prefixes every error, which names
// the field: e.g. "hardware.json: gpu.hbm_gbps: must be a positive number".
Result<HardwareProfile> parse_hardware_profile(const nlohmann::json& j, const std::string& source);
nlohmann::json hardware_profile_to_json(const HardwareProfile& p);

// The catalogue in policies/hardware/*.json, compiled in; sorted by name.
std::vector<HardwareProfile> hardware_catalogue();
// A catalogue entry by name (case-insensitive); kNotFound lists the names.
Result<HardwareProfile> catalogue_hardware(std::string_view name);

// The text of an embedded policies/ file ("capacity/prices.json"), or kNotFound.
Result<std::string> embedded_policy_file(std::string_view relative_path);

}  // namespace strata::planner
