#include "measure_gpu.h"

#include <algorithm>
#include <cstdio>

#include "cuda/cuda_backend.h"
#include "cuda/int4_weights.h"
#include "cuda/lanes.h"

namespace strata::tools {

CopyOptions copy_options(bool quick) {
  CopyOptions o;
  if (quick) return o;
  o.sizes = {4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20};
  o.repetitions = 9;
  return o;
}

LinearOptions linear_options(bool quick) {
  LinearOptions o;
  if (quick) return o;
  o.rows.clear();
  for (int64_t r = 1; r <= 4096; r *= 2) o.rows.push_back(r);
  o.min_seconds = 0.02;
  o.repetitions = 5;
  return o;
}

namespace {

// Seconds per copy of `bytes` on `lane`: batches of copies issued back to back, then a wait for
// the lanes; the median batch.
Result<double> time_copies(cuda::Lanes& lanes, cuda::Lane lane, void* device, void* host,
                           uint64_t bytes, const CopyOptions& o) {
  const uint64_t n = std::clamp<uint64_t>(o.batch_bytes / bytes, 8, 512);
  void* dst = lane == cuda::Lane::kH2d ? device : host;
  const void* src = lane == cuda::Lane::kH2d ? host : device;
  std::vector<double> per_copy;
  for (int r = 0; r <= o.repetitions; ++r) {
    const auto t0 = Clock::now();
    for (uint64_t i = 0; i < n; ++i) lanes.copy(lane, dst, src, bytes);
    STRATA_RETURN_IF_ERROR(lanes.synchronize());
    if (r > 0)
      per_copy.push_back(seconds_since(t0) / static_cast<double>(n));  // the first batch warms up
  }
  return median(per_copy);
}

std::string describe_copies(const char* field, const planner::FixedPlusRate& f,
                            const std::vector<planner::TimedCall>& s) {
  char fit[96];
  std::snprintf(fit, sizeof fit, "%.2f us + bytes / %.1f GB/s", f.fixed_s * 1e6, f.rate / 1e9);
  return describe_fixed_plus_rate(field, fit, f, s);
}

}  // namespace

Result<CopyLatencies> measure_copy_latencies(compute::Backend& backend, const CopyOptions& o,
                                             const ProgressFn& progress) {
  if (o.sizes.size() < 2 || o.repetitions < 1)
    return invalid_argument("copy test: needs at least two sizes and one repetition");
  const uint64_t largest = *std::max_element(o.sizes.begin(), o.sizes.end());
  STRATA_ASSIGN_OR_RETURN(auto lanes, cuda::Lanes::create(backend, /*timing=*/false));
  const Shape words = {static_cast<int64_t>((largest + 3) / 4)};
  STRATA_ASSIGN_OR_RETURN(Tensor host,
                          lanes->allocate_pinned(DType::kI32, words, "profile.copy_host"));
  STRATA_ASSIGN_OR_RETURN(Tensor device,
                          lanes->allocate_device(DType::kI32, words, "profile.copy_device"));
  std::fill_n(static_cast<char*>(host.raw()), largest, 1);  // touch every page
  CopyLatencies c;
  const int total = static_cast<int>(2 * o.sizes.size());
  int done = 0;
  report_progress(progress, "host<->GPU copies", 0, total);
  for (cuda::Lane lane : {cuda::Lane::kH2d, cuda::Lane::kD2h}) {
    auto& samples = lane == cuda::Lane::kH2d ? c.h2d_samples : c.d2h_samples;
    for (uint64_t bytes : o.sizes) {
      STRATA_ASSIGN_OR_RETURN(double s,
                              time_copies(*lanes, lane, device.raw(), host.raw(), bytes, o));
      samples.push_back({static_cast<double>(bytes), s});
      report_progress(progress, "host<->GPU copies", ++done, total);
    }
  }
  STRATA_ASSIGN_OR_RETURN(c.h2d,
                          planner::fit_fixed_plus_rate(c.h2d_samples, "links.h2d_latency_us"));
  STRATA_ASSIGN_OR_RETURN(c.d2h,
                          planner::fit_fixed_plus_rate(c.d2h_samples, "links.d2h_latency_us"));
  c.text =
      "pinned copies on the engine's copy lanes (batches of back-to-back copies, time per copy): " +
      describe_copies("links.h2d_latency_us", c.h2d, c.h2d_samples) + "; " +
      describe_copies("links.d2h_latency_us", c.d2h, c.d2h_samples);
  return c;
}

namespace {

// Seconds per linear() call of `rows` rows: batches of calls sized to take o.min_seconds, then a
// wait for the stream; the median batch.
Result<double> time_linear(compute::Backend& backend, const Tensor& w, int64_t rows,
                           const LinearOptions& o) {
  const DType act = backend.activation_dtype();
  STRATA_ASSIGN_OR_RETURN(Tensor x, backend.allocate_uninitialized(act, {rows, o.in_features}));
  STRATA_RETURN_IF_ERROR(cuda::fill_uniform(backend, x, 11, 0.0f, 1.0f));
  STRATA_ASSIGN_OR_RETURN(Tensor y, backend.allocate_uninitialized(act, {rows, o.out_features}));
  backend.linear(x, w, nullptr, y);  // warm-up: the first call of a shape may choose its kernel
  cuda::synchronize(backend);
  auto t0 = Clock::now();
  backend.linear(x, w, nullptr, y);
  cuda::synchronize(backend);
  const double one = std::max(seconds_since(t0), 1e-6);
  const int calls = static_cast<int>(std::clamp(o.min_seconds / one, 2.0, 2000.0));
  std::vector<double> per_call;
  for (int r = 0; r < o.repetitions; ++r) {
    t0 = Clock::now();
    for (int i = 0; i < calls; ++i) backend.linear(x, w, nullptr, y);
    cuda::synchronize(backend);
    per_call.push_back(seconds_since(t0) / calls);
  }
  return median(per_call);
}

Result<planner::RateCurve> measure_curve(compute::Backend& backend, const Tensor& w,
                                         const char* field, const LinearOptions& o,
                                         const ProgressFn& progress,
                                         std::vector<planner::TimedGemm>* samples, double* rms,
                                         std::string* text) {
  const std::string what =
      std::string("GPU linear layers, ") + (cuda::is_int4_weight(w) ? "int4" : "fp16") + " weights";
  int done = 0;
  report_progress(progress, what, 0, static_cast<int>(o.rows.size()));
  for (int64_t rows : o.rows) {
    STRATA_ASSIGN_OR_RETURN(double s, time_linear(backend, w, rows, o));
    samples->push_back({static_cast<double>(rows), 2.0 * rows * o.in_features * o.out_features, s});
    report_progress(progress, what, ++done, static_cast<int>(o.rows.size()));
  }
  STRATA_ASSIGN_OR_RETURN(planner::RateCurve curve, planner::fit_rate_curve(*samples, field));
  *rms = curve_fit_rms(curve, *samples);
  char buf[128];
  std::snprintf(buf, sizeof buf,
                "%s over [rows, %lld] x [%lld, %lld]^T, rms relative error %s:", field,
                static_cast<long long>(o.in_features), static_cast<long long>(o.out_features),
                static_cast<long long>(o.in_features), percent(*rms).c_str());
  *text += buf;
  for (size_t i = 0; i < samples->size(); ++i) {
    const auto& t = (*samples)[i];
    std::snprintf(buf, sizeof buf, "%s %.0f rows %s (%.3g TFLOP/s)", i ? "," : "", t.rows,
                  short_seconds(t.seconds).c_str(), t.flops / t.seconds / 1e12);
    *text += buf;
  }
  return curve;
}

}  // namespace

Result<LinearCurves> measure_linear_curves(compute::Backend& backend, const LinearOptions& o,
                                           const ProgressFn& progress) {
  if (!cuda::is_cuda_backend(backend))
    return unsupported("GPU linear layers: needs the CUDA backend");
  if (o.rows.empty() || o.repetitions < 1 || o.in_features % 64 != 0)
    return invalid_argument(
        "GPU linear layers: needs rows, a repetition and in_features a multiple of 64");
  LinearCurves c;
  c.text = "GPU linear layers through the CUDA backend's linear() (time per call): ";
  STRATA_ASSIGN_OR_RETURN(
      Tensor w,
      backend.allocate_uninitialized(backend.activation_dtype(), {o.out_features, o.in_features}));
  STRATA_RETURN_IF_ERROR(cuda::fill_uniform(backend, w, 7, 0.0f, 0.02f));
  STRATA_ASSIGN_OR_RETURN(c.fp16, measure_curve(backend, w, "gpu.linear_fp16", o, progress,
                                                &c.fp16_samples, &c.fp16_rms, &c.text));
  c.text += "; ";
  STRATA_ASSIGN_OR_RETURN(Tensor q, cuda::quantise_int4_on_device(backend, w));
  w = Tensor();
  cuda::release_cached_memory(backend);
  STRATA_ASSIGN_OR_RETURN(c.int4, measure_curve(backend, q, "gpu.linear_int4", o, progress,
                                                &c.int4_samples, &c.int4_rms, &c.text));
  return c;
}

}  // namespace strata::tools
