#include "compute/logit_adjust.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <string>

#include "common/check.h"

namespace strata::compute {

Status check_logits(const Tensor& logits, bool host, const char* op) {
  if (!logits.defined() || logits.dtype() != DType::kF32 || logits.rank() != 2 ||
      (host && logits.memory() == MemoryKind::kGpu))
    return invalid_argument(std::string(op) + ": the logits must be an F32 [rows, vocab] tensor" +
                            (host ? " in host memory" : "") + ", got " +
                            (logits.defined() ? shape_string(logits.shape()) : std::string("none")));
  return Status::ok();
}

Status check_mask(int64_t vocab, std::span<const uint64_t> allowed, const char* op) {
  if (!allowed.empty() && static_cast<int64_t>(allowed.size()) != (vocab + 63) / 64)
    return invalid_argument(std::string(op) + ": a mask of " + std::to_string(allowed.size()) +
                            " words for a vocabulary of " + std::to_string(vocab) + " (" +
                            std::to_string((vocab + 63) / 64) + " words)");
  return Status::ok();
}

namespace {

Status check_row(const Tensor& logits, int64_t row, const char* op) {
  if (row < 0 || row >= logits.dim(0))
    return invalid_argument(std::string(op) + ": row " + std::to_string(row) + " of logits with " +
                            std::to_string(logits.dim(0)) + " rows");
  return Status::ok();
}

Status check_token(int64_t vocab, int64_t token, const char* op) {
  if (token < 0 || token >= vocab)
    return invalid_argument(std::string(op) + ": token " + std::to_string(token) + " outside a vocabulary of " +
                            std::to_string(vocab));
  return Status::ok();
}

Status check_adjustment(int64_t vocab, const RowAdjustment& a) {
  for (const TokenEdit& e : a.edits) STRATA_RETURN_IF_ERROR(check_token(vocab, e.token, "adjust_logits"));
  return check_mask(vocab, a.allowed, "adjust_logits");
}

// x[t] = -inf for every token t whose bit in `allowed` is clear. A byte of the mask at a time,
// without a branch per token: each of the byte's eight tokens keeps its bits where the byte's bit
// is set, else takes -inf's.
void refuse_unmasked(std::span<float> x, std::span<const uint64_t> allowed) {
  struct Lanes {
    uint32_t keep[256][8];
  };
  static const Lanes lanes = [] {
    Lanes l{};
    for (unsigned b = 0; b < 256; ++b)
      for (unsigned j = 0; j < 8; ++j) l.keep[b][j] = ((b >> j) & 1) != 0 ? 0xffffffffu : 0u;
    return l;
  }();
  const uint32_t minus_inf = std::bit_cast<uint32_t>(-INFINITY);
  const size_t n = x.size(), whole = std::min(n / 8, allowed.size() * 8);
  for (size_t i = 0; i < whole; ++i) {
    const uint32_t* keep = lanes.keep[(allowed[i / 8] >> ((i % 8) * 8)) & 0xff];
    uint32_t v[8];
    std::memcpy(v, x.data() + i * 8, sizeof v);
    for (int j = 0; j < 8; ++j) v[j] = (v[j] & keep[j]) | (minus_inf & ~keep[j]);
    std::memcpy(x.data() + i * 8, v, sizeof v);
  }
  for (size_t t = whole * 8; t < n; ++t)
    if (((allowed[t / 64] >> (t % 64)) & 1) == 0) x[t] = -INFINITY;
}

}  // namespace

Status check_adjustments(const Tensor& logits, std::span<const RowAdjustment> adjustments) {
  STRATA_RETURN_IF_ERROR(check_logits(logits, false, "adjust_logits"));
  for (const RowAdjustment& a : adjustments) {
    STRATA_RETURN_IF_ERROR(check_row(logits, a.row, "adjust_logits"));
    STRATA_RETURN_IF_ERROR(check_adjustment(logits.dim(1), a));
  }
  return Status::ok();
}

Status check_draws(const Tensor& logits, std::span<const RowDraw> draws) {
  STRATA_RETURN_IF_ERROR(check_logits(logits, false, "draw_tokens"));
  for (const RowDraw& d : draws) {
    STRATA_RETURN_IF_ERROR(check_row(logits, d.row, "draw_tokens"));
    if (!(d.temperature > 0.0f))
      return invalid_argument("draw_tokens: temperature " + std::to_string(d.temperature) + " (must be > 0)");
    STRATA_RETURN_IF_ERROR(check_mask(logits.dim(1), d.allowed, "draw_tokens"));
  }
  return Status::ok();
}

Status check_values(const Tensor& logits, std::span<const std::pair<int64_t, int32_t>> at) {
  STRATA_RETURN_IF_ERROR(check_logits(logits, false, "logit_values"));
  for (const auto& [row, token] : at) {
    STRATA_RETURN_IF_ERROR(check_row(logits, row, "logit_values"));
    STRATA_RETURN_IF_ERROR(check_token(logits.dim(1), token, "logit_values"));
  }
  return Status::ok();
}

Status adjust_row(std::span<float> x, const RowAdjustment& a) {
  const auto V = static_cast<int64_t>(x.size());
  STRATA_RETURN_IF_ERROR(check_adjustment(V, a));
  for (const TokenEdit& e : a.edits) {
    float& v = x[static_cast<size_t>(e.token)];
    if (e.penalty != 1.0f) v = v > 0 ? v / e.penalty : v * e.penalty;
    if (e.subtract != 0.0f) v -= e.subtract;
    if (e.add != 0.0f) v += e.add;
    if (e.refuse) v = -INFINITY;
  }
  if (!a.allowed.empty()) refuse_unmasked(x, a.allowed);
  if (a.min_p && !x.empty()) {
    // p_t < min_p * p_max  <=>  x_t < x_max + T log(min_p)
    const float floor = *std::max_element(x.begin(), x.end()) + a.min_p_offset;
    for (float& v : x)
      if (v < floor) v = -INFINITY;
  }
  return Status::ok();
}

int32_t draw_in_row(std::span<const float> x, const RowDraw& d) {
  const double inv_t = 1.0 / d.temperature;
  double acc = 0;
  int32_t last = 0;
  const bool masked = !d.allowed.empty();
  for (size_t i = 0; i < x.size(); ++i) {
    if (masked && ((d.allowed[i / 64] >> (i % 64)) & 1) == 0) continue;
    const double w = std::exp(x[i] * inv_t - d.max_logit * inv_t);
    if (w <= 0) continue;
    acc += w;
    last = static_cast<int32_t>(i);
    if (d.target < acc) return last;
  }
  return last;
}

namespace {

void each_range(const RowLoop& loop, int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  if (loop) {
    loop(n, fn);
  } else if (n > 0) {
    fn(0, n);
  }
}

}  // namespace

Result<Tensor> adjust_logits_on_host(const Tensor& logits, std::span<const RowAdjustment> adjustments,
                                     const RowLoop& loop) {
  STRATA_RETURN_IF_ERROR(check_logits(logits, true, "adjust_logits"));
  STRATA_RETURN_IF_ERROR(check_adjustments(logits, adjustments));
  const int64_t V = logits.dim(1);
  Tensor out = Tensor::host(DType::kF32, {static_cast<int64_t>(adjustments.size()), V});
  each_range(loop, static_cast<int64_t>(adjustments.size()), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      float* row = out.data<float>() + i * V;
      std::memcpy(row, logits.data<float>() + adjustments[i].row * V, static_cast<size_t>(V) * sizeof(float));
      const Status adjusted = adjust_row({row, static_cast<size_t>(V)}, adjustments[i]);
      STRATA_CHECK(adjusted.is_ok(), adjusted.to_string());  // checked above
    }
  });
  return out;
}

Result<std::vector<DrawnToken>> draw_tokens_on_host(const Tensor& logits, std::span<const RowDraw> draws,
                                                    const RowLoop& loop) {
  STRATA_RETURN_IF_ERROR(check_logits(logits, true, "draw_tokens"));
  STRATA_RETURN_IF_ERROR(check_draws(logits, draws));
  const int64_t V = logits.dim(1);
  std::vector<DrawnToken> out(draws.size());
  each_range(loop, static_cast<int64_t>(draws.size()), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const float* row = logits.data<float>() + draws[i].row * V;
      const int32_t t = draw_in_row({row, static_cast<size_t>(V)}, draws[i]);
      out[i] = {t, row[t]};
    }
  });
  return out;
}

Result<std::vector<float>> logit_values_on_host(const Tensor& logits,
                                                std::span<const std::pair<int64_t, int32_t>> at) {
  STRATA_RETURN_IF_ERROR(check_logits(logits, true, "logit_values"));
  STRATA_RETURN_IF_ERROR(check_values(logits, at));
  std::vector<float> out;
  out.reserve(at.size());
  for (const auto& [row, token] : at) out.push_back(logits.data<float>()[row * logits.dim(1) + token]);
  return out;
}

}  // namespace strata::compute
