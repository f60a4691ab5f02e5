// The Chrome trace writer, read back with nlohmann::json as chrome://tracing would read it, and
// busy_by_track against interval unions worked out by hand.
#include "offload/trace.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "testing/test_data.h"

namespace strata::offload {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

json read_json(const fs::path& p) {
  std::ifstream in(p);
  EXPECT_TRUE(in.good()) << p;
  return json::parse(in);
}

const std::vector<std::string> kOrder = {"disk", "h2d", "d2h", "gpu"};

TEST(ChromeTrace, TracksMetadataAndCompleteEvents) {
  const fs::path dir = strata::testing::make_temp_dir("trace");
  const fs::path path = dir / "run.json";
  const std::vector<TraceSpan> spans = {
      {"h2d", "weights L0", 1.0, 1.5, 1'000'000'000},
      {"gpu", "layer 0 b0", 1.25, 1.375, 0},
      {"disk", "read L1", 0.5, 2.5, 2'000'000'000},
      {"cpu-attention", "attn b1", 2.0, 2.001, 0},  // not in the order: comes last
  };
  ASSERT_TRUE(write_chrome_trace(path, spans, kOrder).is_ok());

  const json doc = read_json(path);
  EXPECT_EQ(doc.at("displayTimeUnit"), "ms");
  const json& events = doc.at("traceEvents");
  ASSERT_TRUE(events.is_array());

  std::map<int, std::string> thread_name;
  std::map<int, int> sort_index;
  std::vector<json> complete;
  bool process_named = false;
  for (const json& e : events) {
    EXPECT_EQ(e.at("pid"), 1);
    const std::string ph = e.at("ph");
    if (ph == "M") {
      const std::string name = e.at("name");
      if (name == "thread_name") thread_name[e.at("tid")] = e.at("args").at("name");
      if (name == "thread_sort_index") sort_index[e.at("tid")] = e.at("args").at("sort_index");
      if (name == "process_name") process_named = e.at("args").at("name") == "strata";
    } else {
      EXPECT_EQ(ph, "X");
      complete.push_back(e);
    }
  }
  EXPECT_TRUE(process_named);
  const std::map<int, std::string> want_names = {
      {1, "disk"}, {2, "h2d"}, {3, "d2h"}, {4, "gpu"}, {5, "cpu-attention"}};
  EXPECT_EQ(thread_name, want_names);
  for (const auto& [tid, name] : want_names) EXPECT_EQ(sort_index[tid], tid) << name;

  ASSERT_EQ(complete.size(), 4u);
  // Spans keep their order; times are microseconds.
  const json& h2d = complete[0];
  EXPECT_EQ(h2d.at("name"), "weights L0");
  EXPECT_EQ(h2d.at("tid"), 2);
  EXPECT_DOUBLE_EQ(h2d.at("ts").get<double>(), 1.0e6);
  EXPECT_DOUBLE_EQ(h2d.at("dur").get<double>(), 0.5e6);
  EXPECT_EQ(h2d.at("args").at("bytes").get<uint64_t>(), 1'000'000'000u);
  EXPECT_DOUBLE_EQ(h2d.at("args").at("GB/s").get<double>(), 2.0);  // 1 GB in 0.5 s

  const json& gpu = complete[1];
  EXPECT_EQ(gpu.at("tid"), 4);
  EXPECT_DOUBLE_EQ(gpu.at("ts").get<double>(), 1.25e6);
  EXPECT_DOUBLE_EQ(gpu.at("dur").get<double>(), 0.125e6);
  EXPECT_FALSE(gpu.contains("args"));  // no bytes: no bandwidth

  const json& disk = complete[2];
  EXPECT_EQ(disk.at("tid"), 1);
  EXPECT_DOUBLE_EQ(disk.at("args").at("GB/s").get<double>(), 1.0);  // 2 GB in 2 s

  const json& attn = complete[3];
  EXPECT_EQ(attn.at("tid"), 5);
  EXPECT_NEAR(attn.at("dur").get<double>(), 1000.0, 1e-6);

  // The temporary file was renamed away.
  int files = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    ++files;
    EXPECT_EQ(entry.path().filename(), "run.json");
  }
  EXPECT_EQ(files, 1);
}

TEST(ChromeTrace, ReplacesAnExistingFileAndWritesAnEmptyTrace) {
  const fs::path path = strata::testing::make_temp_dir("trace") / "t.json";
  std::ofstream(path) << "not json, from an earlier run";
  ASSERT_TRUE(write_chrome_trace(path, {}, kOrder).is_ok());
  const json doc = read_json(path);
  int metadata = 0;
  for (const json& e : doc.at("traceEvents")) {
    EXPECT_EQ(e.at("ph"), "M");
    ++metadata;
  }
  EXPECT_EQ(metadata, 1 + 2 * static_cast<int>(kOrder.size()));  // process + 2 per track
}

TEST(ChromeTrace, SpanEndingBeforeItStartsIsRejected) {
  const fs::path path = strata::testing::make_temp_dir("trace") / "bad.json";
  const std::vector<TraceSpan> spans = {{"h2d", "ok", 0, 1, 0}, {"gpu", "backwards", 2.0, 1.5, 0}};
  Status s = write_chrome_trace(path, spans, kOrder);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("backwards"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find(path.string()), std::string::npos) << s.message();
  EXPECT_FALSE(fs::exists(path));

  const std::vector<TraceSpan> nan = {{"gpu", "nan", std::nan(""), 1.0, 0}};
  EXPECT_EQ(write_chrome_trace(path, nan, kOrder).code(), StatusCode::kInvalidArgument);
}

TEST(ChromeTrace, MissingDirectoryIsAnIoErrorNamingThePath) {
  const fs::path path = strata::testing::make_temp_dir("trace") / "no" / "such" / "t.json";
  Status s = write_chrome_trace(path, {}, kOrder);
  EXPECT_EQ(s.code(), StatusCode::kIoError);
  EXPECT_NE(s.message().find(path.string()), std::string::npos) << s.message();
}

TEST(BusyByTrack, UnionOfOverlappingSpansClippedToTheWindow) {
  const std::vector<TraceSpan> spans = {
      {"h2d", "a", 0.0, 1.0, 100},
      {"h2d", "b", 0.5, 1.5, 100},  // overlaps a: [0, 1.5) is 1.5 s, not 2
      {"h2d", "c", 2.0, 3.0, 100},
      {"gpu", "outer", 0.0, 4.0, 0},
      {"gpu", "inner", 1.0, 2.0, 0},  // inside outer: adds nothing
      {"d2h", "x", 0.0, 1.0, 10},
      {"d2h", "y", 1.0, 2.0, 10},  // touches x: 2 s together
      {"cpu-attention", "z", 5.0, 6.0, 0},
  };
  // Whole run.
  std::vector<TrackBusy> all = busy_by_track(spans, kOrder, 0.0, 10.0);
  ASSERT_EQ(all.size(), 5u);
  EXPECT_EQ(all[0].track, "disk");
  EXPECT_DOUBLE_EQ(all[0].busy_s, 0.0);
  EXPECT_EQ(all[0].bytes, 0u);
  EXPECT_EQ(all[1].track, "h2d");
  EXPECT_DOUBLE_EQ(all[1].busy_s, 2.5);
  EXPECT_EQ(all[1].bytes, 300u);
  EXPECT_EQ(all[2].track, "d2h");
  EXPECT_DOUBLE_EQ(all[2].busy_s, 2.0);
  EXPECT_EQ(all[2].bytes, 20u);
  EXPECT_EQ(all[3].track, "gpu");
  EXPECT_DOUBLE_EQ(all[3].busy_s, 4.0);
  EXPECT_EQ(all[4].track, "cpu-attention");
  EXPECT_DOUBLE_EQ(all[4].busy_s, 1.0);

  // Window [1, 2.5): h2d keeps [1, 1.5) of b and [2, 2.5) of c, half of each one's bytes; a ends
  // where the window starts.
  std::vector<TrackBusy> mid = busy_by_track(spans, kOrder, 1.0, 2.5);
  EXPECT_DOUBLE_EQ(mid[1].busy_s, 1.0);
  EXPECT_EQ(mid[1].bytes, 100u);
  EXPECT_DOUBLE_EQ(mid[2].busy_s, 1.0);  // only y
  EXPECT_EQ(mid[2].bytes, 10u);
  EXPECT_DOUBLE_EQ(mid[3].busy_s, 1.5);
  EXPECT_DOUBLE_EQ(mid[4].busy_s, 0.0);

  // An empty window.
  for (const TrackBusy& b : busy_by_track(spans, kOrder, 3.0, 3.0)) EXPECT_EQ(b.busy_s, 0.0);
}

TEST(BusyByTrack, InstantSpansCountBytesNotTime) {
  const std::vector<TraceSpan> spans = {{"disk", "flush", 1.0, 1.0, 4096},
                                        {"disk", "later", 7.0, 7.0, 1}};
  std::vector<TrackBusy> b = busy_by_track(spans, kOrder, 0.0, 5.0);
  EXPECT_EQ(b[0].track, "disk");
  EXPECT_EQ(b[0].busy_s, 0.0);
  EXPECT_EQ(b[0].bytes, 4096u);
}

// Busy time split by phase: the same spans within the prefill steps' windows and within the
// decode steps' windows, each track's union intersected with the windows' union.
TEST(BusyInWindows, EachTracksUnionWithinTheWindows) {
  const std::vector<TraceSpan> spans = {
      {"gpu", "a", 0.0, 2.0, 0},  {"gpu", "b", 1.0, 3.0, 0},  // [0, 3)
      {"gpu", "c", 5.0, 6.0, 0},  {"h2d", "x", 2.5, 5.5, 9},
      {"disk", "flush", 4.0, 4.0, 1},  // an instant: no time
  };
  const std::vector<std::string> tracks = {"gpu", "h2d", "disk", "cpu"};
  // Two prefill steps [0, 1) and [2, 4), given out of order and overlapping one another.
  const std::vector<Window> prefill = {{2.0, 4.0}, {0.0, 1.0}, {3.0, 3.5}};
  const std::vector<double> p = busy_in_windows(spans, tracks, prefill);
  ASSERT_EQ(p.size(), 4u);
  EXPECT_DOUBLE_EQ(p[0], 1.0 + 1.0);  // gpu [0, 1) and [2, 3)
  EXPECT_DOUBLE_EQ(p[1], 1.5);        // h2d [2.5, 4)
  EXPECT_DOUBLE_EQ(p[2], 0.0);
  EXPECT_DOUBLE_EQ(p[3], 0.0);
  const std::vector<Window> decode = {{4.0, 7.0}};
  const std::vector<double> d = busy_in_windows(spans, tracks, decode);
  EXPECT_DOUBLE_EQ(d[0], 1.0);  // c
  EXPECT_DOUBLE_EQ(d[1], 1.5);  // h2d [4, 5.5)
  // Windows that cover the run give the whole run's busy time.
  std::vector<Window> both = prefill;
  both.insert(both.end(), decode.begin(), decode.end());
  both.push_back({1.0, 2.0});
  const std::vector<double> all = busy_in_windows(spans, tracks, both);
  const std::vector<TrackBusy> whole = busy_by_track(spans, tracks, 0.0, 7.0);
  for (size_t t = 0; t < tracks.size(); ++t) {
    EXPECT_DOUBLE_EQ(all[t], whole[t].busy_s) << tracks[t];
  }
  EXPECT_TRUE(busy_in_windows(spans, tracks, {}) == std::vector<double>(4, 0.0));
}

}  // namespace
}  // namespace strata::offload
