// What the offloading engine reports about its runs: the time of prefill and decode steps, each
// resource's busy time (the union of its spans, so overlapping work counts once) and the bytes it
// moved, and peak memory per tier; and Accounting, which gathers it: the executor's observer for
// host spans and bytes, plus the GPU lanes' spans, kept for a Chrome/Perfetto trace. Accounting's
// observer methods are thread safe (host spans arrive from the workers); the rest runs on the
// engine's thread. Units: bytes, seconds.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"
#include "cuda/lanes.h"
#include "offload/executor.h"
#include "offload/trace.h"

namespace strata::offload {

// One resource's use since the engine was created (or since reset_report()).
struct ResourceUse {
  std::string name;     // "gpu", "h2d", "d2h", "disk_read", "disk_write", "cpu_attention"
  double busy_s = 0;    // seconds it was busy
  uint64_t bytes = 0;   // bytes it moved (or read, for cpu_attention)
  double prefill_busy_s = 0;  // of busy_s, the seconds within prefill steps
  double decode_busy_s = 0;   // ... and within decode steps
};

struct OffloadReport {
  double prefill_s = 0;   // wall time of prefill steps
  double decode_s = 0;    // wall time of decode steps
  int64_t prefill_steps = 0;
  int64_t decode_steps = 0;
  int64_t prefill_tokens = 0;
  int64_t decode_tokens = 0;  // tokens fed to decode steps
  std::vector<ResourceUse> resources;
  uint64_t peak_gpu_bytes = 0;     // device memory in use by the process, the most sampled
  uint64_t pinned_bytes = 0;       // pinned host memory the engine holds
  uint64_t peak_rss_bytes = 0;     // the process's peak resident set
  uint64_t disk_bytes = 0;         // bytes of files in the offload directory
};

// The resource and memory lines of a report (for `strata generate`'s summary).
std::string format_offload_report(const OffloadReport& report);

class Accounting final : public ExecutorObserver {
 public:
  explicit Accounting(cuda::Lanes& lanes) : lanes_(lanes) {}

  // Starts the report's window now, forgetting what came before.
  void reset();
  // A step begins (prefill or decode) now; it ends now, with `tokens` fed.
  void begin_step(bool prefill);
  void end_step(int64_t tokens);
  int64_t steps() const { return report_.prefill_steps + report_.decode_steps; }
  // Takes the GPU lanes' finished spans into the trace.
  void collect_gpu_spans();

  void gpu_issued(const Action& action, uint64_t bytes) override;
  void host_done(const Action& action, const std::string& name, double start_s, double end_s,
                 uint64_t bytes) override;

  // The report of the window so far; memory figures are the caller's (pinned and disk bytes).
  OffloadReport report(uint64_t pinned_bytes, uint64_t disk_bytes) const;
  Status write_trace(const std::filesystem::path& path) const;

 private:
  enum Counter { kGpu, kH2d, kD2h, kDiskRead, kCpuAttention, kDiskWrite, kNumCounters };
  static Counter counter_of(ActionKind kind);

  cuda::Lanes& lanes_;
  bool prefill_ = false;
  double step_start_s_ = 0;
  OffloadReport report_;  // the step figures
  std::vector<Window> prefill_windows_, decode_windows_;  // when each step ran
  std::atomic<uint64_t> bytes_[kNumCounters] = {};
  mutable std::mutex spans_mu_;
  std::vector<TraceSpan> spans_;
  double from_s_ = 0;
};

}  // namespace strata::offload
