// Traces of the offloading runtime: spans of work on named tracks (disk, h2d, d2h, gpu, CPU
// attention), written as a Chrome trace (the JSON object format that chrome://tracing and
// ui.perfetto.dev open), and the busy time of each track over a window, to check overlap and
// the planner's prediction. Pure functions apart from the file write; thread safe.
// Units: seconds on one clock (the runtime's, since its start), bytes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"

namespace strata::offload {

// One piece of work on one track, [start_s, end_s).
struct TraceSpan {
  std::string track;  // "disk", "h2d", "d2h", "gpu", "cpu-attention", ...
  std::string name;   // what ran: "weights L3", "kv store b2", ...
  double start_s = 0;
  double end_s = 0;
  uint64_t bytes = 0;  // bytes moved; 0 for compute
};

// Writes `spans` to `path` as {"traceEvents": [...], "displayTimeUnit": "ms"}: one thread per
// track, in `track_order` first and then any other track in order of first appearance, each named
// and sorted by metadata events; a complete event ("ph": "X", ts and dur in microseconds) per span,
// with args bytes and GB/s when bytes > 0. The file is written next to `path` and renamed over it,
// so a reader never sees half a trace. kInvalidArgument for a span that ends before it starts or
// has a non-finite time; kIoError naming the path when it cannot be written.
Status write_chrome_trace(const std::filesystem::path& path, std::span<const TraceSpan> spans,
                          std::span<const std::string> track_order);

// Busy time of one track over a window, and the bytes its spans moved there.
struct TrackBusy {
  std::string track;
  double busy_s = 0;   // length of the union of the track's spans within the window
  uint64_t bytes = 0;  // each span's bytes times the fraction of it inside the window
};

// For each track (track_order first, in that order, then others in order of first appearance):
// the union of its span intervals clipped to [from_s, to_s), so spans that overlap on one track
// count once. A span of zero length counts its bytes when it lies in the window.
std::vector<TrackBusy> busy_by_track(std::span<const TraceSpan> spans,
                                     std::span<const std::string> track_order, double from_s,
                                     double to_s);

// A stretch of time [from_s, to_s).
struct Window {
  double from_s = 0;
  double to_s = 0;
};

// For each of `tracks`, in order: the seconds the union of its spans covers within the union of
// `windows` (which need not be sorted; overlapping windows count once), e.g. within every
// prefill step of a run.
std::vector<double> busy_in_windows(std::span<const TraceSpan> spans, std::span<const std::string> tracks,
                                    std::span<const Window> windows);

}  // namespace strata::offload
