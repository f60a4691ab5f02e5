#include "runtime/progress.h"

#include <algorithm>
#include <cmath>

namespace strata::runtime {

void format_duration(double s, char* buf, size_t size) {
  if (!std::isfinite(s) || s < 0) {
    std::snprintf(buf, size, "?");
    return;
  }
  const auto t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) std::snprintf(buf, size, "%lldh%02lldm", static_cast<long long>(t / 3600), static_cast<long long>(t % 3600 / 60));
  else if (t >= 60) std::snprintf(buf, size, "%lldm%02llds", static_cast<long long>(t / 60), static_cast<long long>(t % 60));
  else std::snprintf(buf, size, "%llds", static_cast<long long>(t));
}

Progress::Progress(const ProgressOptions& options, int64_t total_requests)
    : o_(options), total_(total_requests), start_(std::chrono::steady_clock::now()), last_draw_(start_) {}

double Progress::elapsed_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::request_read(int64_t max_new_tokens) {
  ++read_;
  read_new_tokens_ += std::max<int64_t>(0, max_new_tokens);
}

void Progress::request_done(int64_t prompt_tokens, int64_t completion_tokens, int64_t unused_new_tokens) {
  ++done_;
  in_tokens_ += prompt_tokens;
  (void)completion_tokens;  // counted as they are generated
  unused_new_tokens_ += std::max<int64_t>(0, unused_new_tokens);
  tick();
}

void Progress::tokens_generated(int64_t n) { out_tokens_ += n; }

void Progress::begin_block(int64_t requests) {
  ++block_;
  running_ = -1;
  block_requests_ = requests;
  step_ = 0;
}

void Progress::block_step(int64_t step) { step_ = std::max(step_, step); }

void Progress::running(int64_t running, int64_t slots) {
  running_ = running;
  slots_ = slots;
}

void Progress::tick() { draw(false); }

double Progress::eta_s(double elapsed) const {
  if (read_new_tokens_ > 0 && out_tokens_ > 0 && elapsed > 0) {
    const double unread = read_ < total_ ? static_cast<double>(total_) / static_cast<double>(read_) : 1.0;
    const double left = static_cast<double>(read_new_tokens_) * unread - static_cast<double>(out_tokens_) -
                        static_cast<double>(unused_new_tokens_);
    return std::max(0.0, left) * elapsed / static_cast<double>(out_tokens_);
  }
  if (done_ > 0) return static_cast<double>(total_ - done_) * elapsed / static_cast<double>(done_);
  if (o_.predicted_job_s > elapsed) return o_.predicted_job_s - elapsed;
  return NAN;
}

void Progress::draw(bool force) {
  if (o_.quiet) return;
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_draw_).count();
  if (!force && since < (o_.live ? 0.2 : o_.interval_s)) return;
  last_draw_ = now;
  const double el = std::max(1e-9, elapsed_s());
  char eta[32], spent[32], where[64] = "";
  format_duration(eta_s(el), eta, sizeof(eta));
  format_duration(el, spent, sizeof(spent));
  if (running_ >= 0 && slots_ > 0)
    std::snprintf(where, sizeof where, "%lld running in %lld slots, ", static_cast<long long>(running_),
                  static_cast<long long>(slots_));
  else if (running_ >= 0)
    std::snprintf(where, sizeof where, "%lld running, ", static_cast<long long>(running_));
  else if (block_ > 0)
    std::snprintf(where, sizeof where, "block %lld (%lld requests) step %lld, ", static_cast<long long>(block_),
                  static_cast<long long>(block_requests_), static_cast<long long>(step_));
  const double pct = total_ > 0 ? 100.0 * done_ / total_ : 100.0;
  if (o_.live) {
    constexpr int kWidth = 24;
    const int fill = static_cast<int>(pct / 100.0 * kWidth);
    char bar[kWidth + 1];
    for (int i = 0; i < kWidth; ++i) bar[i] = i < fill ? '#' : '.';
    bar[kWidth] = 0;
    std::fprintf(o_.out, "\r%s%s[%s] %lld/%lld requests  %selapsed %s  in %.0f tok/s  out %.0f tok/s  ETA %s   ", o_.label.c_str(),
                 o_.label.empty() ? "" : " ", bar,
                 static_cast<long long>(done_), static_cast<long long>(total_), where, spent, in_tokens_ / el,
                 out_tokens_ / el, eta);
  } else {
    std::fprintf(o_.out, "progress%s%s: %lld/%lld requests (%.1f%%), %selapsed %s, in %.0f tok/s, out %.0f tok/s, ETA %s\n",
                 o_.label.empty() ? "" : " ", o_.label.c_str(), static_cast<long long>(done_), static_cast<long long>(total_), pct, where, spent, in_tokens_ / el,
                 out_tokens_ / el, eta);
  }
  std::fflush(o_.out);
  drawn_ = true;
}

void Progress::finish() {
  if (o_.quiet) return;
  if (o_.live) {
    draw(true);
    std::fprintf(o_.out, "\n");
  }
  std::fflush(o_.out);
}

}  // namespace strata::runtime
