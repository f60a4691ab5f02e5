#include "planner/recalibrate.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "common/check.h"

namespace strata::planner {

namespace {

// The cost model's resource behind each calibrated one.
const char* model_resource(int r) {
  static const char* kNames[kNumCalibrated] = {"gpu_compute", "h2d", "d2h", "disk_read", "disk_write", "cpu_compute"};
  return kNames[r];
}

PhaseBusy phase_busy(const PhaseTimes& t, double layers) {
  PhaseBusy b;
  for (int r = 0; r < kNumCalibrated; ++r) {
    for (const auto& [name, seconds] : t.resources)
      if (name == model_resource(r)) b.seconds[r] = layers * seconds;
  }
  return b;
}

constexpr double kMinFactor = 0.01, kMaxFactor = 100;

std::string note(Phase phase, int r, double measured, double predicted, const char* what) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "%s %s: measured %.4g s, predicted %.4g s (%s)",
                phase == kPrefill ? "prefill" : "decode", calibrated_resource_name(r), measured, predicted, what);
  return buf;
}

}  // namespace

RunBusy predicted_busy(const Prediction& p, int64_t layers) {
  const double L = static_cast<double>(layers);
  return {phase_busy(p.prefill, L), phase_busy(p.decode, L)};
}

Result<Recalibration> recalibrate(const HardwareProfile& hw, const std::vector<RunSample>& runs,
                                  const RecalibrateOptions& o) {
  if (runs.empty()) return invalid_argument("recalibration needs at least one run");
  for (size_t i = 0; i < runs.size(); ++i)
    for (Phase phase : {kPrefill, kDecode})
      for (int r = 0; r < kNumCalibrated; ++r)
        for (const RunBusy* b : {&runs[i].predicted, &runs[i].measured}) {
          const double v = (phase == kPrefill ? b->prefill : b->decode).seconds[r];
          if (!std::isfinite(v) || v < 0)
            return invalid_argument("run " + std::to_string(i) + ": " + (phase == kPrefill ? "prefill" : "decode") +
                                    " " + calibrated_resource_name(r) + ": " +
                                    (b == &runs[i].predicted ? "predicted" : "measured") +
                                    " busy seconds must be a number >= 0, not " + std::to_string(v));
        }

  Recalibration out;
  out.profile = hw;
  Calibration refit = hw.calibration;
  for (Phase phase : {kPrefill, kDecode}) {
    for (int r = 0; r < kNumCalibrated; ++r) {
      // Least-squares scale over the runs where this resource matters: sum(m p) / sum(p p).
      double mp = 0, pp = 0, m_sum = 0, p_sum = 0;
      bool unpredicted = false;
      for (const RunSample& run : runs) {
        const PhaseBusy& pb = phase == kPrefill ? run.predicted.prefill : run.predicted.decode;
        const PhaseBusy& mb = phase == kPrefill ? run.measured.prefill : run.measured.decode;
        const double busiest = std::max(*std::max_element(pb.seconds.begin(), pb.seconds.end()),
                                        *std::max_element(mb.seconds.begin(), mb.seconds.end()));
        const double p = pb.seconds[r], m = mb.seconds[r];
        const double floor = o.noise_share * busiest;
        if (p <= floor && m <= floor) continue;
        if (p <= floor) {
          unpredicted = true;
          m_sum += m;
          continue;
        }
        mp += m * p;
        pp += p * p;
        m_sum += m;
        p_sum += p;
      }
      if (unpredicted) {
        out.off = true;
        out.notes.push_back(note(phase, r, m_sum, p_sum, "busy where the model expects it idle; not scaled"));
      }
      if (pp == 0) continue;
      const double scale = mp / pp;
      double& factor = refit.factor[phase][r];
      if (std::abs(scale - 1) > o.tolerance) {
        out.off = true;
        char what[32];
        std::snprintf(what, sizeof what, "x%.3f", scale);
        out.notes.push_back(note(phase, r, m_sum, p_sum, what));
      }
      factor = std::clamp(factor * scale, kMinFactor, kMaxFactor);
    }
  }
  // Within tolerance everywhere: the profile stands as it is (measurement noise does not creep in).
  if (out.off) out.profile.calibration = refit;
  return out;
}

}  // namespace strata::planner
