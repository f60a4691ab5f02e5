// The Chrome trace writer (one event a line, streamed to a temporary file, then renamed) and the
// per-track busy-time union.
#include "offload/trace.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <unordered_map>
#include <utility>

namespace strata::offload {
namespace {

constexpr int kPid = 1;

// track_order (each name once), then the other tracks of `spans` in order of first appearance.
std::vector<std::string> all_tracks(std::span<const TraceSpan> spans,
                                    std::span<const std::string> track_order) {
  std::vector<std::string> tracks;
  auto add = [&](const std::string& t) {
    if (std::find(tracks.begin(), tracks.end(), t) == tracks.end()) tracks.push_back(t);
  };
  for (const std::string& t : track_order) add(t);
  for (const TraceSpan& s : spans) add(s.track);
  return tracks;
}

// Closes the file and removes the temporary on every path that does not rename it.
class TempFile {
 public:
  explicit TempFile(std::filesystem::path p) : path_(std::move(p)) {
    file_ = std::fopen(path_.c_str(), "wb");
  }
  ~TempFile() {
    if (file_ != nullptr) std::fclose(file_);
    if (!kept_) std::remove(path_.c_str());
  }
  std::FILE* get() const { return file_; }
  // Flushes and closes; false (errno set) when buffered bytes could not be written.
  bool close() {
    std::FILE* f = file_;
    file_ = nullptr;
    return std::fclose(f) == 0;
  }
  void keep() { kept_ = true; }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  std::FILE* file_ = nullptr;
  bool kept_ = false;
};

Status write_error(const std::filesystem::path& path, const std::string& what, int err) {
  return io_error("cannot write the trace " + path.string() + ": " + what + ": " +
                      std::strerror(err) + " (check that the directory exists and is writable)",
                  err);
}

}  // namespace

Status write_chrome_trace(const std::filesystem::path& path, std::span<const TraceSpan> spans,
                          std::span<const std::string> track_order) {
  for (const TraceSpan& s : spans) {
    if (!std::isfinite(s.start_s) || !std::isfinite(s.end_s) || s.end_s < s.start_s) {
      return invalid_argument("trace " + path.string() + ": span '" + s.name + "' on track '" +
                              s.track + "' runs from " + std::to_string(s.start_s) + " s to " +
                              std::to_string(s.end_s) +
                              " s; a span must end at or after its start");
    }
  }
  const std::vector<std::string> tracks = all_tracks(spans, track_order);
  std::unordered_map<std::string, int> tid;
  for (size_t i = 0; i < tracks.size(); ++i) tid[tracks[i]] = static_cast<int>(i) + 1;

  TempFile tmp(path.string() + ".tmp." + std::to_string(::getpid()));
  if (tmp.get() == nullptr) return write_error(path, "cannot create " + tmp.path().string(), errno);

  std::string text = "{\"displayTimeUnit\": \"ms\", \"traceEvents\": [\n";
  bool first = true;
  auto emit = [&](const nlohmann::json& event) {
    if (!first) text += ",\n";
    first = false;
    text += event.dump();
  };
  auto flush = [&]() {
    const bool ok = std::fwrite(text.data(), 1, text.size(), tmp.get()) == text.size();
    text.clear();
    return ok;
  };
  emit({{"name", "process_name"}, {"ph", "M"}, {"pid", kPid}, {"args", {{"name", "strata"}}}});
  for (const std::string& t : tracks) {
    emit({{"name", "thread_name"},
          {"ph", "M"},
          {"pid", kPid},
          {"tid", tid[t]},
          {"args", {{"name", t}}}});
    emit({{"name", "thread_sort_index"},
          {"ph", "M"},
          {"pid", kPid},
          {"tid", tid[t]},
          {"args", {{"sort_index", tid[t]}}}});
  }
  for (const TraceSpan& s : spans) {
    const double dur_s = s.end_s - s.start_s;
    nlohmann::json event = {{"name", s.name},    {"cat", s.track},      {"ph", "X"},
                            {"pid", kPid},       {"tid", tid[s.track]}, {"ts", s.start_s * 1e6},
                            {"dur", dur_s * 1e6}};
    if (s.bytes > 0) {
      event["args"]["bytes"] = s.bytes;
      if (dur_s > 0) event["args"]["GB/s"] = static_cast<double>(s.bytes) / dur_s / 1e9;
    }
    emit(event);
    if (text.size() > (size_t{1} << 20) && !flush())
      return write_error(path, "writing " + tmp.path().string(), errno);
  }
  text += "\n]}\n";
  if (!flush()) return write_error(path, "writing " + tmp.path().string(), errno);
  if (!tmp.close()) return write_error(path, "closing " + tmp.path().string(), errno);
  if (std::rename(tmp.path().c_str(), path.c_str()) != 0)
    return write_error(path, "renaming " + tmp.path().string() + " over it", errno);
  tmp.keep();
  return Status::ok();
}

std::vector<TrackBusy> busy_by_track(std::span<const TraceSpan> spans,
                                     std::span<const std::string> track_order, double from_s,
                                     double to_s) {
  const std::vector<std::string> tracks = all_tracks(spans, track_order);
  std::vector<TrackBusy> out;
  out.reserve(tracks.size());
  for (const std::string& t : tracks) {
    TrackBusy busy;
    busy.track = t;
    std::vector<std::pair<double, double>> clipped;  // [start, end) within the window
    double bytes = 0;
    for (const TraceSpan& s : spans) {
      if (s.track != t) continue;
      const double a = std::max(s.start_s, from_s), b = std::min(s.end_s, to_s);
      if (s.end_s <= s.start_s) {  // an instant: its bytes count when it lies in the window
        if (s.start_s >= from_s && s.start_s < to_s) bytes += static_cast<double>(s.bytes);
        continue;
      }
      if (b <= a) continue;
      clipped.emplace_back(a, b);
      bytes += static_cast<double>(s.bytes) * (b - a) / (s.end_s - s.start_s);
    }
    std::sort(clipped.begin(), clipped.end());
    double cur_a = 0, cur_b = 0;
    bool open = false;
    for (const auto& [a, b] : clipped) {
      if (open && a <= cur_b) {
        cur_b = std::max(cur_b, b);
        continue;
      }
      if (open) busy.busy_s += cur_b - cur_a;
      cur_a = a;
      cur_b = b;
      open = true;
    }
    if (open) busy.busy_s += cur_b - cur_a;
    busy.bytes = static_cast<uint64_t>(std::llround(bytes));
    out.push_back(std::move(busy));
  }
  return out;
}

namespace {

// Sorted, disjoint intervals covering the same time as `v`.
std::vector<std::pair<double, double>> merged(std::vector<std::pair<double, double>> v) {
  std::sort(v.begin(), v.end());
  std::vector<std::pair<double, double>> out;
  for (const auto& [a, b] : v) {
    if (b <= a) continue;
    if (!out.empty() && a <= out.back().second) {
      out.back().second = std::max(out.back().second, b);
    } else {
      out.emplace_back(a, b);
    }
  }
  return out;
}

}  // namespace

std::vector<double> busy_in_windows(std::span<const TraceSpan> spans, std::span<const std::string> tracks,
                                    std::span<const Window> windows) {
  std::vector<std::pair<double, double>> w;
  for (const Window& x : windows) w.emplace_back(x.from_s, x.to_s);
  const auto win = merged(std::move(w));
  std::vector<double> out;
  for (const std::string& t : tracks) {
    std::vector<std::pair<double, double>> v;
    for (const TraceSpan& s : spans)
      if (s.track == t) v.emplace_back(s.start_s, s.end_s);
    const auto busy = merged(std::move(v));
    double total = 0;
    size_t i = 0, j = 0;  // two pointers over the sorted, disjoint lists
    while (i < busy.size() && j < win.size()) {
      const double a = std::max(busy[i].first, win[j].first), b = std::min(busy[i].second, win[j].second);
      if (b > a) total += b - a;
      (busy[i].second < win[j].second ? i : j) += 1;
    }
    out.push_back(total);
  }
  return out;
}

}  // namespace strata::offload
