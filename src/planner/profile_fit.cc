#include "planner/profile_fit.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <map>

namespace strata::planner {

namespace {

bool finite(double v) { return std::isfinite(v); }

std::string sample_text(size_t i) { return "sample " + std::to_string(i); }

// Least squares of seconds ~ sum(coef[k] * col[k]) with coef >= 0, each row weighted by
// 1 / seconds^2 (relative error). Exact for up to three columns: every subset of columns is solved
// unconstrained and the best one whose coefficients are all >= 0 wins.
struct Nnls {
  std::array<double, 3> coef{};
  double rms_relative = 0;
  bool ok = false;
};

Nnls nonnegative_least_squares(const std::vector<std::array<double, 3>>& raw, const std::vector<double>& y, int n) {
  // Columns scaled to at most 1 keep the normal equations well conditioned (bytes reach 1e9).
  std::array<double, 3> scale{1, 1, 1};
  for (int k = 0; k < n; ++k) {
    double m = 0;
    for (const auto& row : raw) m = std::max(m, std::abs(row[k]));
    if (m > 0) scale[k] = m;
  }
  std::vector<std::array<double, 3>> cols(raw);
  for (auto& row : cols)
    for (int k = 0; k < n; ++k) row[k] /= scale[k];
  Nnls best;
  double best_err = std::numeric_limits<double>::infinity();
  for (int mask = 1; mask < (1 << n); ++mask) {
    std::vector<int> use;
    for (int k = 0; k < n; ++k)
      if (mask & (1 << k)) use.push_back(k);
    const int m = static_cast<int>(use.size());
    // Normal equations of the weighted problem (rows scaled by 1 / y).
    double a[3][4] = {};
    for (size_t i = 0; i < y.size(); ++i) {
      const double w = 1 / y[i];
      for (int r = 0; r < m; ++r) {
        for (int c = 0; c < m; ++c) a[r][c] += cols[i][use[r]] * w * cols[i][use[c]] * w;
        a[r][m] += cols[i][use[r]] * w * y[i] * w;
      }
    }
    bool singular = false;
    for (int p = 0; p < m && !singular; ++p) {  // Gaussian elimination with partial pivoting
      int piv = p;
      for (int r = p + 1; r < m; ++r)
        if (std::abs(a[r][p]) > std::abs(a[piv][p])) piv = r;
      std::swap(a[p], a[piv]);
      double scale = 0;
      for (int c = 0; c < m; ++c) scale = std::max(scale, std::abs(a[p][c]));
      if (!(std::abs(a[p][p]) > 1e-12 * scale)) singular = true;
      for (int r = 0; r < m && !singular; ++r) {
        if (r == p) continue;
        const double f = a[r][p] / a[p][p];
        for (int c = p; c <= m; ++c) a[r][c] -= f * a[p][c];
      }
    }
    if (singular) continue;
    std::array<double, 3> coef{};
    bool nonneg = true;
    for (int r = 0; r < m; ++r) {
      coef[use[r]] = a[r][m] / a[r][r];
      nonneg &= coef[use[r]] >= 0;
    }
    if (!nonneg) continue;
    double err = 0;
    for (size_t i = 0; i < y.size(); ++i) {
      double fit = 0;
      for (int k = 0; k < n; ++k) fit += coef[k] * cols[i][k];
      err += (fit - y[i]) * (fit - y[i]) / (y[i] * y[i]);
    }
    if (err < best_err * (1 - 1e-12)) {
      best_err = err;
      best.coef = coef;
      best.ok = true;
      best.rms_relative = std::sqrt(err / static_cast<double>(y.size()));
    }
  }
  for (int k = 0; k < n; ++k) best.coef[k] /= scale[k];
  return best;
}

Status check_time(const std::string& what, size_t i, double seconds) {
  if (!finite(seconds) || !(seconds > 0))
    return invalid_argument(what + ": " + sample_text(i) + ": the time must be a positive number of seconds, not " +
                            std::to_string(seconds));
  return Status::ok();
}

Status check_amount(const std::string& what, size_t i, const char* name, double v, bool positive) {
  if (!finite(v) || v < 0 || (positive && v == 0))
    return invalid_argument(what + ": " + sample_text(i) + ": " + name + " must be a " +
                            (positive ? "positive" : "non-negative") + " number, not " + std::to_string(v));
  return Status::ok();
}

}  // namespace

Result<FixedPlusRate> fit_fixed_plus_rate(const std::vector<TimedCall>& samples, const std::string& what) {
  if (samples.empty()) return invalid_argument(what + ": no timed calls to fit");
  std::vector<std::array<double, 3>> cols;
  std::vector<double> y;
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (size_t i = 0; i < samples.size(); ++i) {
    STRATA_RETURN_IF_ERROR(check_amount(what, i, "x", samples[i].x, false));
    STRATA_RETURN_IF_ERROR(check_time(what, i, samples[i].seconds));
    cols.push_back({1.0, samples[i].x, 0.0});
    y.push_back(samples[i].seconds);
    lo = std::min(lo, samples[i].x);
    hi = std::max(hi, samples[i].x);
  }
  if (!(hi > lo))
    return invalid_argument(what + ": every call moved the same amount (" + std::to_string(lo) +
                            "): a fixed cost and a rate need at least two different sizes");
  const Nnls fit = nonnegative_least_squares(cols, y, 2);
  if (!fit.ok || !(fit.coef[1] > 0))
    return invalid_argument(what + ": the times do not grow with the amount moved, so no rate fits them");
  return FixedPlusRate{fit.coef[0], 1 / fit.coef[1], fit.rms_relative};
}

Result<CpuAttentionCost> fit_cpu_attention(const std::vector<TimedAttention>& samples, const std::string& what) {
  if (samples.empty()) return invalid_argument(what + ": no timed calls to fit");
  std::vector<std::array<double, 3>> cols;
  std::vector<double> y;
  for (size_t i = 0; i < samples.size(); ++i) {
    STRATA_RETURN_IF_ERROR(check_amount(what, i, "sequences", samples[i].sequences, true));
    STRATA_RETURN_IF_ERROR(check_amount(what, i, "kv_bytes", samples[i].kv_bytes, false));
    STRATA_RETURN_IF_ERROR(check_time(what, i, samples[i].seconds));
    cols.push_back({1.0, samples[i].sequences, samples[i].kv_bytes});
    y.push_back(samples[i].seconds);
  }
  const Nnls fit = nonnegative_least_squares(cols, y, 3);
  if (!fit.ok || !(fit.coef[2] > 0))
    return invalid_argument(what + ": the times do not grow with the KV bytes, so no rate fits them "
                            "(time calls over KV of several sizes)");
  CpuAttentionCost c;
  c.fixed_us = fit.coef[0] * 1e6;
  c.per_sequence_us = fit.coef[1] * 1e6;
  c.gbps = 1 / fit.coef[2] / 1e9;
  return c;
}

Result<RateCurve> fit_rate_curve(const std::vector<TimedGemm>& samples, const std::string& what) {
  if (samples.empty()) return invalid_argument(what + ": no timed calls to fit");
  std::map<double, std::pair<double, double>> by_rows;  // rows -> (flops, seconds) summed
  for (size_t i = 0; i < samples.size(); ++i) {
    STRATA_RETURN_IF_ERROR(check_amount(what, i, "rows", samples[i].rows, true));
    STRATA_RETURN_IF_ERROR(check_amount(what, i, "flops", samples[i].flops, true));
    STRATA_RETURN_IF_ERROR(check_time(what, i, samples[i].seconds));
    auto& [flops, seconds] = by_rows[samples[i].rows];
    flops += samples[i].flops;
    seconds += samples[i].seconds;
  }
  // Pool adjacent violators: a block's rate is its FLOPs over its seconds, so merging blocks
  // weighs each by its time.
  struct Block {
    double first_rows, flops, seconds;
    size_t count;
  };
  std::vector<Block> blocks;
  for (const auto& [rows, fs] : by_rows) {
    blocks.push_back({rows, fs.first, fs.second, 1});
    while (blocks.size() > 1) {
      Block& b = blocks[blocks.size() - 1];
      Block& a = blocks[blocks.size() - 2];
      if (a.flops / a.seconds <= b.flops / b.seconds) break;
      a.flops += b.flops;
      a.seconds += b.seconds;
      a.count += b.count;
      blocks.pop_back();
    }
  }
  RateCurve curve;
  auto it = by_rows.begin();
  for (const Block& b : blocks)
    for (size_t k = 0; k < b.count; ++k, ++it) curve.points.push_back({it->first, b.flops / b.seconds / 1e12});
  return curve;
}

}  // namespace strata::planner
