// The measurements behind `strata profile` on small grids, with the real kernels and a temporary
// directory: CPU attention per call and disk requests give positive fitted fields from fits that
// pass and are recorded in the text; bad options are named. The GPU parts (copies, linear layers)
// run only where there is a GPU.
#include "machine_profile.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "common/thread_pool.h"
#include "cuda/cuda_backend.h"
#include "cuda/device.h"
#include "measure_disk.h"
#include "measure_gpu.h"
#include "measure_host.h"
#include "testing/test_data.h"

namespace strata::tools {
namespace {

TEST(MachineProfile, CpuAttentionPerCallFitsTheKernelOnASmallGrid) {
  ThreadPool pool(2);
  CpuAttentionGrid g;
  g.sequences = {1, 4, 8};
  g.contexts = {64, 256, 512};
  g.heads = 8;
  g.kv_heads = 2;
  g.head_dim = 64;
  g.repetitions = 3;
  g.arena_bytes = 96 << 20;  // larger than the test machine's caches
  int last_done = -1, last_total = 0;
  auto r = measure_cpu_attention_calls(pool, g, [&](const std::string& what, int done, int total) {
    EXPECT_NE(what.find("CPU attention"), std::string::npos);
    last_done = done;
    last_total = total;
  });
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(last_done, 9);
  EXPECT_EQ(last_total, 9);
  for (const auto* c : {&r->fp16, &r->int4}) {
    EXPECT_GT(c->gbps, 0);
    EXPECT_GE(c->fixed_us, 0);
    EXPECT_GE(c->per_sequence_us, 0);
  }
  ASSERT_EQ(r->fp16_samples.size(), 9u);
  ASSERT_EQ(r->int4_samples.size(), 9u);
  // int4 KV is 9/32 of fp16's bytes at the same shape.
  EXPECT_DOUBLE_EQ(r->int4_samples[4].kv_bytes * 32, r->fp16_samples[4].kv_bytes * 9);
  EXPECT_DOUBLE_EQ(r->fp16_samples[4].kv_bytes,
                   4.0 * 256 * 2 * 64 * 2 * 2);  // seqs x positions x E x 2 B x k,v
  EXPECT_LT(r->fp16_rms, 1.0);
  EXPECT_LT(r->int4_rms, 1.0);
  for (const char* s : {"cpu.attention_fp16", "cpu.attention_int4", "rms relative error", "8x512"})
    EXPECT_NE(r->text.find(s), std::string::npos) << s << " in " << r->text;

  g.head_dim = 96;
  auto bad = measure_cpu_attention_calls(pool, g, {});
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("head_dim"), std::string::npos);
}

TEST(MachineProfile, DiskRequestsFitLatencyAndRateInATemporaryDirectory) {
  const auto dir = testing::make_temp_dir("profile-disk");
  Logger log(LogLevel::kQuiet);
  DiskRequestOptions o;
  o.dir = dir;
  o.file_bytes = 8 << 20;
  o.request_sizes = {4 << 10, 64 << 10, 1 << 20};
  o.min_seconds_per_pass = 0.02;
  o.max_seconds_per_pass = 0.5;
  auto r = measure_disk_requests(o, log, {});
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  for (const auto* f : {&r->read, &r->write}) {
    EXPECT_GT(f->rate, 0);
    EXPECT_GE(f->fixed_s, 0);  // how much per request depends on the machine's load; the fits are
                               // checked on known samples in tests/planner/profile_fit_test.cc
    EXPECT_LT(f->rms_relative, 1.0);
  }
  ASSERT_EQ(r->read_samples.size(), 3u);
  EXPECT_DOUBLE_EQ(r->read_samples[0].x, 4096);
  EXPECT_NE(r->text.find("disk.read_latency_us"), std::string::npos);
  EXPECT_NE(r->text.find("queue depth"), std::string::npos);
  EXPECT_TRUE(std::filesystem::is_empty(dir)) << "the test file is removed";

  o.dir = dir / "missing";
  auto missing = measure_disk_requests(o, log, {});
  ASSERT_FALSE(missing.is_ok());
  EXPECT_NE(missing.status().message().find("missing"), std::string::npos);
  o.dir = dir;
  o.request_sizes = {3000, 8192};
  auto odd = measure_disk_requests(o, log, {});
  ASSERT_FALSE(odd.is_ok());
  EXPECT_NE(odd.status().message().find("3000"), std::string::npos);
}

TEST(MachineProfile, GpuCopiesAndLinearLayersWhereThereIsAGpu) {
  if (cuda::query_devices().devices.empty()) GTEST_SKIP() << "no CUDA device";
  auto backend = cuda::make_cuda_backend({});
  ASSERT_TRUE(backend.is_ok()) << backend.status().to_string();
  CopyOptions c;
  c.sizes = {4 << 10, 1 << 20, 16 << 20};
  c.repetitions = 3;
  auto copies = measure_copy_latencies(**backend, c, {});
  ASSERT_TRUE(copies.is_ok()) << copies.status().to_string();
  EXPECT_GT(copies->h2d.rate, 0);
  EXPECT_GT(copies->d2h.rate, 0);
  EXPECT_GT(copies->h2d.fixed_s, 0);
  LinearOptions l;
  l.out_features = 1024;
  l.in_features = 1024;
  l.rows = {1, 16, 256};
  l.min_seconds = 0.001;
  auto linear = measure_linear_curves(**backend, l, {});
  ASSERT_TRUE(linear.is_ok()) << linear.status().to_string();
  ASSERT_EQ(linear->fp16.points.size(), 3u);
  ASSERT_EQ(linear->int4.points.size(), 3u);
  EXPECT_GT(linear->fp16.points.back().tflops, 0);
  EXPECT_GE(linear->fp16.points.back().tflops, linear->fp16.points.front().tflops);  // never falls
}

}  // namespace
}  // namespace strata::tools
