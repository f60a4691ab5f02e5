// Fits of the hardware profile's per-call costs from timed calls: a fixed cost plus a rate, CPU
// attention's per-call, per-sequence and per-byte cost, and a GEMM rate curve over rows that never
// falls as rows grow. Least squares on the relative error (short calls carry the fixed cost), all
// coefficients >= 0. Pure functions, thread safe. Units: seconds, bytes (or any x), FLOPs, rows.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "planner/hardware.h"

namespace strata::planner {

// One timed call: `x` units of work (bytes, elements) took `seconds`.
struct TimedCall {
  double x = 0;
  double seconds = 0;
};

// seconds = fixed_s + x / rate.
struct FixedPlusRate {
  double fixed_s = 0;
  double rate = 0;          // x per second
  double rms_relative = 0;  // root mean square of (fit - measured) / measured over the samples
};

// Fits fixed_s >= 0 and rate > 0. kInvalidArgument names `what` and the first bad sample (an
// empty set, a negative, zero or non-finite time, a negative or non-finite x), or says why the
// samples cannot give a rate (fewer than two distinct x, or times that do not grow with x).
Result<FixedPlusRate> fit_fixed_plus_rate(const std::vector<TimedCall>& samples, const std::string& what);

// One timed CPU attention call over a GPU batch's KV.
struct TimedAttention {
  double sequences = 0;
  double kv_bytes = 0;
  double seconds = 0;
};
// seconds = fixed + per_sequence x sequences + kv_bytes / rate, each term >= 0 and the rate > 0.
Result<CpuAttentionCost> fit_cpu_attention(const std::vector<TimedAttention>& samples, const std::string& what);

// One timed linear-layer call: `rows` rows through matrices of `flops` FLOPs in total.
struct TimedGemm {
  double rows = 0;
  double flops = 0;
  double seconds = 0;
};
// The rate (TFLOP/s) at each distinct row count, pooled where a larger count measured slower so
// the curve never falls as rows grow (isotonic regression weighted by time).
Result<RateCurve> fit_rate_curve(const std::vector<TimedGemm>& samples, const std::string& what);

}  // namespace strata::planner
