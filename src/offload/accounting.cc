#include "offload/accounting.h"

#include <cstdio>

#include "common/process.h"
#include "common/units.h"

namespace strata::offload {

namespace {

// The trace tracks, in the order the report lists the resources.
const std::vector<std::string> kReportTracks = {"gpu", "h2d", "d2h", "disk", "cpu", "disk_write"};
const char* const kResourceNames[] = {"gpu", "h2d", "d2h", "disk_read", "cpu_attention", "disk_write"};
// The order a trace shows its tracks in.
const std::vector<std::string> kTraceTracks = {"disk", "disk_write", "h2d", "gpu", "d2h", "cpu"};

}  // namespace

std::string format_offload_report(const OffloadReport& rep) {
  std::string out;
  char buf[160];
  const double t = rep.prefill_s + rep.decode_s;
  for (const auto& u : rep.resources) {
    std::snprintf(buf, sizeof buf, "%s%s %s, busy %.0f%%", out.empty() ? "offload: " : "; ",
                  u.name.c_str(), format_bytes(u.bytes).c_str(), t > 0 ? 100 * u.busy_s / t : 0.0);
    out += buf;
  }
  if (!out.empty()) out += "\n";
  std::snprintf(buf, sizeof buf, "peak memory: gpu %s, pinned %s, resident %s, disk %s\n",
                format_bytes(rep.peak_gpu_bytes).c_str(), format_bytes(rep.pinned_bytes).c_str(),
                format_bytes(rep.peak_rss_bytes).c_str(), format_bytes(rep.disk_bytes).c_str());
  return out + buf;
}

// The attention output comes back to the GPU on the compute lane: PCIe traffic all the same.
Accounting::Counter Accounting::counter_of(ActionKind kind) {
  switch (kind) {
    case ActionKind::kDiskRead:
    case ActionKind::kReadKv: return kDiskRead;
    case ActionKind::kWriteKv: return kDiskWrite;
    case ActionKind::kCpuAttention: return kCpuAttention;
    case ActionKind::kPostAttention: return kH2d;
    default: break;
  }
  const PlanResource r = resource_of(kind);
  return r == PlanResource::kH2d ? kH2d : r == PlanResource::kD2h ? kD2h : kGpu;
}

void Accounting::reset() {
  report_ = {};
  prefill_windows_.clear();
  decode_windows_.clear();
  for (auto& b : bytes_) b = 0;
  std::lock_guard lock(spans_mu_);
  spans_.clear();
  from_s_ = lanes_.now_s();
}

void Accounting::begin_step(bool prefill) {
  prefill_ = prefill;
  step_start_s_ = lanes_.now_s();
}

void Accounting::end_step(int64_t tokens) {
  const double now = lanes_.now_s();
  (prefill_ ? prefill_windows_ : decode_windows_).push_back({step_start_s_, now});
  (prefill_ ? report_.prefill_s : report_.decode_s) += now - step_start_s_;
  (prefill_ ? report_.prefill_steps : report_.decode_steps) += 1;
  (prefill_ ? report_.prefill_tokens : report_.decode_tokens) += tokens;
}

void Accounting::collect_gpu_spans() {
  auto got = lanes_.take_spans();
  std::lock_guard lock(spans_mu_);
  for (auto& s : got)
    spans_.push_back({cuda::lane_name(s.lane), std::move(s.name), s.start_s, s.end_s, s.bytes});
}

// Device memory peaks inside a prompt step's layers (their activations): sampled after each.
void Accounting::gpu_issued(const Action& action, uint64_t bytes) {
  bytes_[counter_of(action.kind)] += bytes;
  if (prefill_ && action.kind == ActionKind::kLayer) lanes_.sample_memory();
}

void Accounting::host_done(const Action& action, const std::string& name, double start_s,
                           double end_s, uint64_t bytes) {
  const Counter c = counter_of(action.kind);
  bytes_[c] += bytes;
  const char* track = c == kDiskWrite ? "disk_write" : c == kCpuAttention ? "cpu" : "disk";
  std::lock_guard lock(spans_mu_);
  spans_.push_back({track, name, start_s, end_s, bytes});
}

OffloadReport Accounting::report(uint64_t pinned_bytes, uint64_t disk_bytes) const {
  OffloadReport r = report_;
  std::vector<TrackBusy> busy;
  std::vector<double> prefill, decode;
  {
    std::lock_guard lock(spans_mu_);
    busy = busy_by_track(spans_, kReportTracks, from_s_, lanes_.now_s());
    prefill = busy_in_windows(spans_, kReportTracks, prefill_windows_);
    decode = busy_in_windows(spans_, kReportTracks, decode_windows_);
  }
  for (int c = 0; c < kNumCounters; ++c)
    r.resources.push_back({kResourceNames[c], busy[c].busy_s, bytes_[c], prefill[c], decode[c]});
  r.peak_gpu_bytes = lanes_.peak_device_bytes();
  r.pinned_bytes = pinned_bytes;
  r.peak_rss_bytes = peak_rss_bytes();
  r.disk_bytes = disk_bytes;
  return r;
}

Status Accounting::write_trace(const std::filesystem::path& path) const {
  std::lock_guard lock(spans_mu_);
  return write_chrome_trace(path, spans_, kTraceTracks);
}

}  // namespace strata::offload
