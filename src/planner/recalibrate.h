// Recalibration: a profile corrected from runs of the engine, as per-phase, per-resource factors
// (gpu, h2d, d2h, disk_read, disk_write, cpu_attention) in the profile's `calibration`, which the
// cost model multiplies into that resource's predicted time. Pure functions, thread safe.
// Units: seconds.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "common/status.h"
#include "planner/hardware.h"
#include "planner/policy.h"

namespace strata::planner {

// Why factors and not refit rates: a resource's predicted time is a sum of terms (a copy's bytes
// over the link rate plus its latency; GEMMs, fixed kernel time and dequantisation) and one busy
// time per run cannot say which term is wrong. A factor on the sum is exact for the run measured,
// keeps every term's shape (so the LP still sees how a placement moves each one), composes over
// successive runs (new factor = old factor x measured / predicted) and leaves the measured rates
// (`strata profile`) readable. A scale wrong in one rate (a slower link, a slower GPU) is then
// corrected for every placement; several runs are fitted together by least squares.

// Busy seconds of each resource (CalibratedResource order) in one prefill step and in one decode
// step of a block, all layers (or over any span, the same for prediction and measurement).
struct PhaseBusy {
  std::array<double, kNumCalibrated> seconds{};
};
struct RunBusy {
  PhaseBusy prefill, decode;
};

// The busy seconds a prediction says one prefill step and one decode step of a block take.
RunBusy predicted_busy(const Prediction& prediction, int64_t layers);

struct RunSample {
  RunBusy predicted;  // by the cost model with the profile being recalibrated
  RunBusy measured;
};

struct RecalibrateOptions {
  double tolerance = 0.10;  // a resource more than this far off (relative) is reported
  // Busy times below this share of the phase's busiest resource (in both prediction and
  // measurement) are noise: neither fitted nor reported.
  double noise_share = 0.02;
};

struct Recalibration {
  HardwareProfile profile;  // the input with its calibration factors refitted
  bool off = false;         // some resource was more than `tolerance` off
  std::vector<std::string> notes;  // "decode h2d: measured 1.20 s, predicted 0.80 s (x1.50)"
};

// Refits the factors from one or more runs when some resource is more than `tolerance` off (then
// every resource that matters is refitted); otherwise returns the profile unchanged. A resource measured busy but predicted idle cannot be
// scaled: it is reported (off) and its factor kept. kInvalidArgument names a run, phase and
// resource with a negative or non-finite time, or an empty list.
Result<Recalibration> recalibrate(const HardwareProfile& hw, const std::vector<RunSample>& runs,
                                  const RecalibrateOptions& options = {});

}  // namespace strata::planner
