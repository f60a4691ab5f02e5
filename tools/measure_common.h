// What the measurements behind `strata profile` share: the progress callback, wall-clock timing,
// and the text that records each fit's samples and quality in the profile's `source`, so a reader
// can judge the numbers. Pure helpers, thread safe. Units: seconds, bytes.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "planner/profile_fit.h"

namespace strata::tools {

// Called as a measurement makes progress: `done` of `total` points of `what` ("CPU attention,
// fp16 KV"); done == total once it is finished. May be empty.
using ProgressFn = std::function<void(const std::string& what, int done, int total)>;
inline void report_progress(const ProgressFn& p, const std::string& what, int done, int total) {
  if (p) p(what, done, total);
}
// Progress on stderr as "PREFIX: what: n of N": one line updated in place on a terminal,
// elsewhere a line per finished stage.
ProgressFn stderr_progress(const std::string& prefix);

using Clock = std::chrono::steady_clock;
inline double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double median(std::vector<double> v);  // of a non-empty set

// "4 KiB", "1.5 MiB", "64 MiB": a transfer size in few characters.
std::string short_bytes(double bytes);
// "7.2 us", "1.25 ms", "2.10 s".
std::string short_seconds(double seconds);
// "3.4%": a relative error.
std::string percent(double fraction);

// The root mean square of (fit - measured) / measured of a fixed + per-sequence + per-byte cost.
double attention_fit_rms(const planner::CpuAttentionCost& c,
                         const std::vector<planner::TimedAttention>& samples);
// The same of a fitted rate curve: each sample against flops / curve.tflops(rows).
double curve_fit_rms(const planner::RateCurve& c, const std::vector<planner::TimedGemm>& samples);

// "<what>: <fit>, rms relative error 3.1% over N calls: 4 KiB 7.2 us, 64 KiB 9.0 us, ...": one
// line of a profile's source for a latency + bytes / rate fit.
std::string describe_fixed_plus_rate(const std::string& what, const std::string& fit,
                                     const planner::FixedPlusRate& f,
                                     const std::vector<planner::TimedCall>& samples);

}  // namespace strata::tools
