#include "measure_common.h"

#include <unistd.h>

#include <cstdio>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "common/check.h"

namespace strata::tools {

double median(std::vector<double> v) {
  STRATA_CHECK(!v.empty(), "median of nothing");
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

std::string short_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) {
    bytes /= 1024;
    ++u;
  }
  char buf[32];
  if (bytes == std::floor(bytes))
    std::snprintf(buf, sizeof buf, "%.0f %s", bytes, units[u]);
  else
    std::snprintf(buf, sizeof buf, "%.3g %s", bytes, units[u]);
  return buf;
}

std::string short_seconds(double s) {
  char buf[32];
  if (s < 1e-3)
    std::snprintf(buf, sizeof buf, "%.3g us", s * 1e6);
  else if (s < 1)
    std::snprintf(buf, sizeof buf, "%.3g ms", s * 1e3);
  else
    std::snprintf(buf, sizeof buf, "%.3g s", s);
  return buf;
}

std::string percent(double fraction) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", 100 * fraction);
  return buf;
}

double attention_fit_rms(const planner::CpuAttentionCost& c,
                         const std::vector<planner::TimedAttention>& samples) {
  if (samples.empty() || !c.present()) return 0;
  double err = 0;
  for (const auto& s : samples) {
    const double fit =
        c.fixed_us * 1e-6 + c.per_sequence_us * 1e-6 * s.sequences + s.kv_bytes / (c.gbps * 1e9);
    err += (fit - s.seconds) * (fit - s.seconds) / (s.seconds * s.seconds);
  }
  return std::sqrt(err / static_cast<double>(samples.size()));
}

double curve_fit_rms(const planner::RateCurve& c, const std::vector<planner::TimedGemm>& samples) {
  if (samples.empty() || c.empty()) return 0;
  double err = 0;
  for (const auto& s : samples) {
    const double fit = s.flops / (c.tflops(s.rows) * 1e12);
    err += (fit - s.seconds) * (fit - s.seconds) / (s.seconds * s.seconds);
  }
  return std::sqrt(err / static_cast<double>(samples.size()));
}

std::string describe_fixed_plus_rate(const std::string& what, const std::string& fit,
                                     const planner::FixedPlusRate& f,
                                     const std::vector<planner::TimedCall>& samples) {
  // A non-negative fit puts the fixed cost at zero when noise hides it under the smallest call.
  const std::string unresolved =
      f.fixed_s == 0 ? " (fixed cost not resolved: below the noise of these calls)" : "";
  std::string out = what + ": " + fit + unresolved + ", rms relative error " +
                    percent(f.rms_relative) + " over " + std::to_string(samples.size()) + " points:";
  for (size_t i = 0; i < samples.size(); ++i)
    out += (i ? ", " : " ") + short_bytes(samples[i].x) + " " + short_seconds(samples[i].seconds);
  return out;
}

ProgressFn stderr_progress(const std::string& prefix) {
  const bool tty = isatty(STDERR_FILENO) != 0;
  return [tty, prefix](const std::string& what, int done, int total) {
    if (tty) {
      std::fprintf(stderr, "\r\033[K%s: %s: %d of %d%s", prefix.c_str(), what.c_str(), done, total,
                   done == total ? "\n" : "");
    } else if (done == total) {
      std::fprintf(stderr, "%s: %s: %d of %d\n", prefix.c_str(), what.c_str(), done, total);
    }
    std::fflush(stderr);
  };
}

}  // namespace strata::tools
