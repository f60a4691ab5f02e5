// GPU lanes: copies that must round-trip bytes exactly, cross-lane ordering that only holds when
// record()/wait() work (the work waited for is made slow, so a missing wait reads stale bytes),
// trace spans checked against the host clock and the PCIe limit, and allocation failures.
// Tests that need a GPU skip without one; the backend check runs in every build.
#include "cuda/lanes.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>
#include <thread>

#include "common/units.h"
#include "cuda_test_util.h"

#ifdef STRATA_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace strata::cuda {
namespace {

TEST(Lanes, NeedTheCudaBackend) {
  ThreadPool pool(1);
  std::unique_ptr<compute::Backend> cpu = compute::make_cpu_backend(pool);
  auto r = Lanes::create(*cpu, /*timing=*/true);
  ASSERT_FALSE(r.is_ok());
#ifdef STRATA_HAVE_CUDA
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().to_string();
  EXPECT_NE(r.status().message().find("'cpu'"), std::string::npos) << r.status().message();
#else
  EXPECT_EQ(r.status().code(), StatusCode::kUnsupported) << r.status().to_string();
  EXPECT_NE(r.status().message().find("without CUDA"), std::string::npos) << r.status().message();
#endif
}

TEST(Lanes, Names) {
  EXPECT_STREQ(lane_name(Lane::kCompute), "gpu");
  EXPECT_STREQ(lane_name(Lane::kH2d), "h2d");
  EXPECT_STREQ(lane_name(Lane::kD2h), "d2h");
}

#ifdef STRATA_HAVE_CUDA

class LanesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    STRATA_REQUIRE_GPU();
    auto g = make_cuda_backend(CudaBackendOptions{});
    ASSERT_TRUE(g.is_ok()) << g.status().to_string();
    gpu_ = std::move(g).value();
  }

  std::unique_ptr<Lanes> make(bool timing) {
    auto r = Lanes::create(*gpu_, timing);
    STRATA_CHECK(r.is_ok(), r.status().to_string());
    return std::move(r).value();
  }

  Tensor pinned(Lanes& lanes, DType dt, int64_t n, const char* what) {
    auto r = lanes.allocate_pinned(dt, {n}, what);
    STRATA_CHECK(r.is_ok(), r.status().to_string());
    return std::move(r).value();
  }
  Tensor device(Lanes& lanes, DType dt, Shape shape, const char* what) {
    auto r = lanes.allocate_device(dt, std::move(shape), what);
    STRATA_CHECK(r.is_ok(), r.status().to_string());
    return std::move(r).value();
  }

  // Keeps the compute lane busy for ~10-20 ms on an H100: ten F16 GEMMs of 8192^3.
  void busy_compute() {
    constexpr int64_t kN = 8192;
    if (!x_.defined()) {
      x_ = *gpu_->allocate(DType::kF16, {kN, kN});
      w_ = *gpu_->allocate(DType::kF16, {kN, kN});
      y_ = *gpu_->allocate(DType::kF16, {kN, kN});
    }
    for (int i = 0; i < 10; ++i) gpu_->linear(x_, w_, nullptr, y_);
  }

  std::unique_ptr<compute::Backend> gpu_;
  Tensor x_, w_, y_;
};

void fill_random(void* p, size_t bytes, uint32_t seed) {
  std::mt19937 gen(seed);
  auto* b = static_cast<uint8_t*>(p);
  size_t i = 0;
  for (; i + 4 <= bytes; i += 4) {
    const uint32_t v = gen();
    std::memcpy(b + i, &v, 4);
  }
  for (; i < bytes; ++i) b[i] = static_cast<uint8_t>(gen());
}

TEST_F(LanesTest, CopiesRoundTripBytesExactly) {
  auto lanes = make(false);
  constexpr int64_t kN = (int64_t{64} << 20) / 4 + 3;  // 64 MiB of I32 and a bit
  Tensor src = pinned(*lanes, DType::kI32, kN, "source");
  Tensor back = pinned(*lanes, DType::kI32, kN, "result");
  EXPECT_EQ(src.memory(), MemoryKind::kPinned);
  fill_random(src.raw(), src.bytes(), 1);
  std::memset(back.raw(), 0xab, back.bytes());
  Tensor d1 = device(*lanes, DType::kI32, {kN}, "buffer 1");
  Tensor d2 = device(*lanes, DType::kI32, {kN}, "buffer 2");
  EXPECT_EQ(d1.memory(), MemoryKind::kGpu);

  // host -> d1 (h2d), d1 -> d2 (compute), d2 -> host (d2h): each lane waits for the one before.
  lanes->copy(Lane::kH2d, d1.raw(), src.raw(), src.bytes());
  lanes->wait(Lane::kCompute, lanes->record(Lane::kH2d));
  lanes->copy_device(d2.raw(), d1.raw(), d1.bytes());
  lanes->wait(Lane::kD2h, lanes->record(Lane::kCompute));
  lanes->copy(Lane::kD2h, back.raw(), d2.raw(), d2.bytes());
  Event done = lanes->record(Lane::kD2h);
  ASSERT_TRUE(lanes->host_wait(done).is_ok());
  EXPECT_TRUE(lanes->done(done));
  EXPECT_EQ(std::memcmp(back.raw(), src.raw(), src.bytes()), 0);

  // Pageable host memory works too (synchronously).
  Tensor host = Tensor::host(DType::kI32, {1000});
  Tensor host_back = Tensor::host(DType::kI32, {1000});
  fill_random(host.raw(), host.bytes(), 2);
  lanes->copy(Lane::kH2d, d1.raw(), host.raw(), host.bytes());
  lanes->wait(Lane::kD2h, lanes->record(Lane::kH2d));
  lanes->copy(Lane::kD2h, host_back.raw(), d1.raw(), host.bytes());
  ASSERT_TRUE(lanes->synchronize().is_ok());
  EXPECT_EQ(std::memcmp(host_back.raw(), host.raw(), host.bytes()), 0);
}

// read_host: the compute lane's kernel reads pinned host memory (aligned: 16 bytes at a time;
// odd sizes and offsets: byte by byte) in order with the compute lane's other work.
TEST_F(LanesTest, ReadHostCopiesPinnedBytesExactlyInComputeOrder) {
  auto lanes = make(false);
  constexpr int64_t kN = (int64_t{4} << 20) / 4 + 5;
  Tensor src = pinned(*lanes, DType::kI32, kN, "source");
  Tensor back = pinned(*lanes, DType::kI32, kN, "result");
  Tensor d = device(*lanes, DType::kI32, {kN}, "buffer");
  for (size_t offset : {size_t{0}, size_t{3}}) {
    SCOPED_TRACE(offset);
    fill_random(src.raw(), src.bytes(), 7 + static_cast<uint32_t>(offset));
    std::memset(back.raw(), 0xab, back.bytes());
    const size_t bytes = src.bytes() - offset;
    busy_compute();  // the read waits for the compute lane's earlier work
    lanes->read_host(static_cast<std::byte*>(d.raw()) + offset, static_cast<const std::byte*>(src.raw()) + offset, bytes);
    lanes->wait(Lane::kD2h, lanes->record(Lane::kCompute));
    lanes->copy(Lane::kD2h, back.raw(), d.raw(), d.bytes());
    ASSERT_TRUE(lanes->synchronize().is_ok());
    EXPECT_EQ(std::memcmp(static_cast<const std::byte*>(back.raw()) + offset,
                          static_cast<const std::byte*>(src.raw()) + offset, bytes), 0);
  }
}

TEST_F(LanesTest, StridedCopiesMoveRowsAndLeaveThePaddingAlone) {
  auto lanes = make(false);
  constexpr size_t kRows = 37, kRow = 600, kSrcPitch = 1000, kDevPitch = 1024, kDstPitch = 640;
  Tensor src = pinned(*lanes, DType::kI32, kRows * kSrcPitch / 4, "rows");
  Tensor dst = pinned(*lanes, DType::kI32, kRows * kDstPitch / 4, "rows back");
  Tensor dev = device(*lanes, DType::kI32, {int64_t{kRows * kDevPitch / 4}}, "pitched rows");
  fill_random(src.raw(), src.bytes(), 3);
  std::memset(dst.raw(), 0xcd, dst.bytes());
  lanes->copy_2d(Lane::kH2d, dev.raw(), kDevPitch, src.raw(), kSrcPitch, kRow, kRows);
  lanes->wait(Lane::kD2h, lanes->record(Lane::kH2d));
  lanes->copy_2d(Lane::kD2h, dst.raw(), kDstPitch, dev.raw(), kDevPitch, kRow, kRows);
  ASSERT_TRUE(lanes->host_wait(lanes->record(Lane::kD2h)).is_ok());
  const auto* s = static_cast<const uint8_t*>(src.raw());
  const auto* d = static_cast<const uint8_t*>(dst.raw());
  for (size_t r = 0; r < kRows; ++r) {
    ASSERT_EQ(std::memcmp(d + r * kDstPitch, s + r * kSrcPitch, kRow), 0) << "row " << r;
    for (size_t c = kRow; c < kDstPitch; ++c)
      ASSERT_EQ(d[r * kDstPitch + c], 0xcd) << "padding of row " << r << " at byte " << c;
  }
}

TEST_F(LanesTest, CopyLanesWaitForComputeAndComputeWaitsForCopies) {
  auto lanes = make(false);
  constexpr int64_t kN = int64_t{64} << 20;  // 128 MiB of F16

  // Compute -> d2h: the fill runs behind ~15 ms of GEMMs; a d2h copy that did not wait would
  // read the zeros the tensor starts with.
  Tensor t = *gpu_->allocate(DType::kF16, {kN});
  busy_compute();
  ASSERT_TRUE(fill_uniform(*gpu_, t, 11, 0.0f, 1.0f).is_ok());
  lanes->wait(Lane::kD2h, lanes->record(Lane::kCompute));
  Tensor host = pinned(*lanes, DType::kF16, kN, "download");
  lanes->copy(Lane::kD2h, host.raw(), t.raw(), t.bytes());
  Event copied = lanes->record(Lane::kD2h);
  EXPECT_FALSE(lanes->done(copied));  // still behind the GEMMs
  ASSERT_TRUE(lanes->host_wait(copied).is_ok());
  EXPECT_TRUE(lanes->done(copied));
  const Tensor want = gpu_->to_host_f32(t);  // the backend's own view, after its stream drained
  int64_t bad = 0, zeros = 0;
  for (int64_t i = 0; i < kN; ++i) {
    const float got = f16_to_f32(host.data<uint16_t>()[i]);
    bad += got != want.data<float>()[i];
    zeros += got == 0.0f;
  }
  EXPECT_EQ(bad, 0);
  EXPECT_LT(zeros, kN / 1000);  // values are uniform in [-1, 1)

  // h2d -> compute: the backend reads a buffer right after a 128 MiB copy into it (~3 ms).
  Tensor src = pinned(*lanes, DType::kF16, kN, "upload");
  for (int64_t i = 0; i < kN; ++i)
    src.data<uint16_t>()[i] = f32_to_f16(static_cast<float>(i % 2047 - 1023));
  Tensor dev = device(*lanes, DType::kF16, {kN}, "uploaded");
  ASSERT_EQ(cudaMemset(dev.raw(), 0, dev.bytes()), cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  lanes->copy(Lane::kH2d, dev.raw(), src.raw(), src.bytes());
  lanes->wait(Lane::kCompute, lanes->record(Lane::kH2d));
  const Tensor seen = gpu_->to_host_f32(dev);
  bad = 0;
  for (int64_t i = 0; i < kN; ++i)
    bad += seen.data<float>()[i] != static_cast<float>(i % 2047 - 1023);
  EXPECT_EQ(bad, 0);
}

TEST_F(LanesTest, DefaultEventIsComplete) {
  auto lanes = make(false);
  Event e;
  EXPECT_FALSE(e.valid());
  EXPECT_TRUE(lanes->done(e));
  EXPECT_TRUE(lanes->host_wait(e).is_ok());
  lanes->wait(Lane::kH2d, e);  // a no-op
  Event r = lanes->record(Lane::kH2d);
  EXPECT_TRUE(r.valid());
  EXPECT_TRUE(lanes->synchronize().is_ok());
  EXPECT_TRUE(lanes->done(r));
}

TEST_F(LanesTest, SpansFollowTheWorkOnTheHostClock) {
  auto lanes = make(true);
  constexpr int64_t kN = int64_t{128} << 20;  // 256 MiB of F16
  const uint64_t bytes = uint64_t{kN} * 2;
  Tensor src = pinned(*lanes, DType::kF16, kN, "upload");
  Tensor dst = pinned(*lanes, DType::kF16, kN, "download");
  Tensor dev = device(*lanes, DType::kF16, {kN}, "buffer");
  busy_compute();  // allocate the GEMM operands before the clock starts
  ASSERT_TRUE(lanes->synchronize().is_ok());

  const double t0 = lanes->now_s();
  lanes->begin(Lane::kH2d, "upload", bytes);
  lanes->copy(Lane::kH2d, dev.raw(), src.raw(), bytes);
  lanes->end(Lane::kH2d);
  lanes->wait(Lane::kCompute, lanes->record(Lane::kH2d));
  lanes->begin(Lane::kCompute, "gemms");
  busy_compute();
  lanes->end(Lane::kCompute);
  lanes->wait(Lane::kD2h, lanes->record(Lane::kCompute));
  lanes->begin(Lane::kD2h, "download", bytes);
  lanes->copy(Lane::kD2h, dst.raw(), dev.raw(), bytes);
  lanes->end(Lane::kD2h);
  Event last = lanes->record(Lane::kD2h);
  // The download waits for ~20 ms of work: it cannot have finished yet.
  std::vector<LaneSpan> early = lanes->take_spans();
  for (const LaneSpan& s : early) EXPECT_NE(s.lane, Lane::kD2h) << s.name;
  ASSERT_TRUE(lanes->host_wait(last).is_ok());
  const double t1 = lanes->now_s();

  std::vector<LaneSpan> spans = early;
  for (LaneSpan& s : lanes->take_spans()) spans.push_back(std::move(s));
  EXPECT_TRUE(lanes->take_spans().empty());  // each span comes back once
  ASSERT_EQ(spans.size(), 3u);
  std::sort(spans.begin(), spans.end(),
            [](const LaneSpan& a, const LaneSpan& b) { return a.start_s < b.start_s; });
  const LaneSpan &up = spans[0], &gemm = spans[1], &down = spans[2];
  EXPECT_EQ(up.lane, Lane::kH2d);
  EXPECT_EQ(up.name, "upload");
  EXPECT_EQ(up.bytes, bytes);
  EXPECT_EQ(gemm.lane, Lane::kCompute);
  EXPECT_EQ(gemm.name, "gemms");
  EXPECT_EQ(gemm.bytes, 0u);
  EXPECT_EQ(down.lane, Lane::kD2h);
  EXPECT_EQ(down.bytes, bytes);

  // On the host clock: nothing starts before it was issued or ends after the host saw it end
  // (50 us for the epoch's alignment).
  constexpr double kTol = 50e-6;
  for (const LaneSpan& s : spans) {
    EXPECT_GE(s.start_s, t0 - kTol) << s.name;
    EXPECT_LE(s.end_s, t1 + kTol) << s.name;
    EXPECT_LT(s.start_s, s.end_s) << s.name;
  }
  // Cross-lane order, as the waits demand (event timestamps, a few us apart at most).
  EXPECT_GE(gemm.start_s, up.end_s - 10e-6);
  EXPECT_GE(down.start_s, gemm.end_s - 10e-6);
  // No PCIe link moves 256 MiB faster than 100 GB/s; ten 8192^3 GEMMs (11 PFLOP) take > 5 ms
  // on any GPU strata targets.
  EXPECT_GT(up.end_s - up.start_s, static_cast<double>(bytes) / 100e9);
  EXPECT_GT(down.end_s - down.start_s, static_cast<double>(bytes) / 100e9);
  EXPECT_GT(gemm.end_s - gemm.start_s, 5e-3);
  std::printf("h2d %.1f GB/s, d2h %.1f GB/s, 10 GEMMs of 8192^3 in %.2f ms\n",
              bytes / (up.end_s - up.start_s) / 1e9, bytes / (down.end_s - down.start_s) / 1e9,
              (gemm.end_s - gemm.start_s) * 1e3);
}

TEST_F(LanesTest, SpansComeBackInLaneOrderAndStayUntilComplete) {
  auto lanes = make(true);
  busy_compute();
  ASSERT_TRUE(lanes->synchronize().is_ok());
  Tensor dev = device(*lanes, DType::kI32, {1024}, "scratch");
  Tensor host = pinned(*lanes, DType::kI32, 1024, "scratch");
  lanes->begin(Lane::kD2h, "d");
  lanes->copy(Lane::kD2h, host.raw(), dev.raw(), 4096);
  lanes->end(Lane::kD2h);
  lanes->begin(Lane::kCompute, "outer");
  lanes->begin(Lane::kCompute, "inner");  // nested: ends first
  busy_compute();
  lanes->end(Lane::kCompute);
  lanes->end(Lane::kCompute);
  lanes->begin(Lane::kH2d, "h", 4096);
  lanes->copy(Lane::kH2d, dev.raw(), host.raw(), 4096);
  lanes->end(Lane::kH2d);
  for (const LaneSpan& s : lanes->take_spans()) EXPECT_NE(s.lane, Lane::kCompute) << s.name;
  // Whatever came back early is already gone; the rest follows once the lanes are idle.
  ASSERT_TRUE(lanes->synchronize().is_ok());
  std::vector<LaneSpan> rest = lanes->take_spans();
  ASSERT_GE(rest.size(), 2u);
  EXPECT_EQ(rest[0].name, "outer");  // compute lane first, by start time
  EXPECT_EQ(rest[1].name, "inner");
  EXPECT_LE(rest[0].start_s, rest[1].start_s);
  EXPECT_GE(rest[0].end_s, rest[1].end_s);
  for (size_t i = 1; i < rest.size(); ++i)
    EXPECT_LE(static_cast<int>(rest[i - 1].lane), static_cast<int>(rest[i].lane));
}

TEST_F(LanesTest, SpansStayAlignedAcrossEpochs) {
  auto lanes = make(true);
  Tensor dev = device(*lanes, DType::kI32, {int64_t{16} << 20}, "buffer");
  Tensor host = pinned(*lanes, DType::kI32, int64_t{16} << 20, "buffer");
  std::vector<std::pair<double, double>> issued;  // host times around each span
  for (int i = 0; i < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2300));  // past the epoch interval
    const double a = lanes->now_s();
    lanes->begin(Lane::kH2d, "copy " + std::to_string(i), host.bytes());
    lanes->copy(Lane::kH2d, dev.raw(), host.raw(), host.bytes());
    lanes->end(Lane::kH2d);
    ASSERT_TRUE(lanes->synchronize().is_ok());
    issued.emplace_back(a, lanes->now_s());
  }
  std::vector<LaneSpan> spans = lanes->take_spans();
  ASSERT_EQ(spans.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_GE(spans[i].start_s, issued[i].first - 50e-6) << i;
    EXPECT_LE(spans[i].end_s, issued[i].second + 50e-6) << i;
  }
}

TEST_F(LanesTest, NoSpansWithoutTiming) {
  auto lanes = make(false);
  lanes->begin(Lane::kCompute, "gemms");
  busy_compute();
  lanes->end(Lane::kCompute);
  lanes->end(Lane::kH2d);  // unmatched ends are ignored too without timing
  ASSERT_TRUE(lanes->synchronize().is_ok());
  EXPECT_TRUE(lanes->take_spans().empty());
}

TEST_F(LanesTest, AbsurdDeviceAllocationIsOutOfMemoryNamingIt) {
  auto lanes = make(false);
  auto r = lanes->allocate_device(DType::kF32, {int64_t{1} << 40}, "the KV cache of layer 7");
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kOutOfMemory) << r.status().to_string();
  const std::string& m = r.status().message();
  EXPECT_NE(m.find("the KV cache of layer 7"), std::string::npos) << m;
  EXPECT_NE(m.find(format_bytes(uint64_t{4} << 40)), std::string::npos) << m;
  EXPECT_NE(m.find("free of"), std::string::npos) << m;
  // The failure left no error behind: the lanes still work.
  EXPECT_TRUE(lanes->allocate_device(DType::kF32, {256}, "small").is_ok());
  EXPECT_TRUE(lanes->synchronize().is_ok());
}

TEST_F(LanesTest, PinnedMemoryIsPinned) {
  auto lanes = make(false);
  Tensor t = pinned(*lanes, DType::kF32, 1 << 20, "staging");
  EXPECT_EQ(t.memory(), MemoryKind::kPinned);
  EXPECT_EQ(t.bytes(), size_t{4} << 20);
  cudaPointerAttributes attr{};
  ASSERT_EQ(cudaPointerGetAttributes(&attr, t.raw()), cudaSuccess);
  EXPECT_EQ(attr.type, cudaMemoryTypeHost);
  // Small ones too come 4 KiB aligned (O_DIRECT reads land in them).
  for (int64_t n : {1, 17, 1000, 5000}) {
    Tensor small = pinned(*lanes, DType::kI32, n, "small staging");
    EXPECT_EQ(reinterpret_cast<uintptr_t>(small.raw()) % 4096, 0u) << n;
    ASSERT_EQ(cudaPointerGetAttributes(&attr, small.raw()), cudaSuccess);
    EXPECT_EQ(attr.type, cudaMemoryTypeHost);
  }
}

TEST_F(LanesTest, PeakMemoryGrowsWithAnAllocationAndStays) {
  auto lanes = make(false);
  lanes->sample_memory();
  const uint64_t before = lanes->device_bytes_in_use();
  EXPECT_GE(lanes->peak_device_bytes(), before / 2);  // sampled a moment ago: same ballpark
  {
    Tensor big = device(*lanes, DType::kF32, {int64_t{256} << 20}, "1 GiB slab");
    const uint64_t during = lanes->device_bytes_in_use();
    EXPECT_GE(during, before + kGiB);
    lanes->sample_memory();
    EXPECT_GE(lanes->peak_device_bytes(), before + kGiB);
  }
  EXPECT_LT(lanes->device_bytes_in_use(), before + kGiB / 2);  // freed
  EXPECT_GE(lanes->peak_device_bytes(), before + kGiB);        // the peak stays
}

#endif  // STRATA_HAVE_CUDA

}  // namespace
}  // namespace strata::cuda
