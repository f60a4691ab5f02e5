// run_io over the io_uring and thread backends, and every I/O fault through the fault-injecting
// backend: each either recovers with the right bytes or fails with an error naming the file.
#include <cerrno>
#include <cstring>

#include <gtest/gtest.h>

#include "storage/fault_injection.h"
#include "storage/io_file.h"
#include "storage_test_util.h"
#include "testing/test_data.h"

namespace strata::storage {
namespace {

using test::CapturedLog;

std::unique_ptr<IoBackend> make_backend(const std::string& kind, int depth) {
  if (kind == "threads") return make_thread_io_backend(depth);
  auto ring = make_io_uring_backend(depth);
  return ring.is_ok() ? std::move(ring).value() : nullptr;
}

class Backends : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    io_ = make_backend(GetParam(), 8);
    if (!io_) GTEST_SKIP() << "io_uring is not available here";
    dir_ = testing::make_temp_dir("strata-io");
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<IoBackend> io_;
  std::filesystem::path dir_;
  Logger log_{LogLevel::kWarn};
};

TEST_P(Backends, WritesAndReadsBackManyRequestsSplitIntoOps) {
  // 13 requests of different sizes, each split into 64 KiB ops: more ops than the queue holds.
  const size_t total = 3 << 20;
  AlignedBuffer src = test::pattern_buffer(total, 1);
  auto f = IoFile::open(*io_, dir_ / "data", FileAccess::kReadWrite, true, log_);
  ASSERT_TRUE(f.is_ok()) << f.status().to_string();
  std::vector<IoRequest> writes;
  uint64_t off = 0;
  for (int i = 0; off < total; ++i) {
    const uint64_t len = std::min<uint64_t>(total - off, 4096 * (1 + (i * 37) % 64));
    writes.push_back({IoOpKind::kWrite, f->get(), off, src.data() + off, len, -1, "part"});
    off += len;
  }
  IoRunOptions opt;
  opt.max_op_bytes = 64 << 10;
  IoStats stats;
  ASSERT_TRUE(run_io(*io_, writes, &stats, opt).is_ok());
  EXPECT_EQ(stats.bytes, total);
  EXPECT_GE(stats.ops, total / (64 << 10));
  ASSERT_TRUE((*f)->sync().is_ok());
  // The bytes on disk, read by plain iostreams.
  std::string disk = test::read_whole_file(dir_ / "data");
  ASSERT_EQ(disk.size(), total);
  EXPECT_EQ(std::memcmp(disk.data(), src.data(), total), 0);
  // And read back through the backend in reverse-ordered requests.
  AlignedBuffer dst = *AlignedBuffer::allocate(total);
  std::vector<IoRequest> reads;
  for (auto it = writes.rbegin(); it != writes.rend(); ++it) {
    IoRequest r = *it;
    r.kind = IoOpKind::kRead;
    r.buf = dst.data() + r.offset;
    reads.push_back(r);
  }
  ASSERT_TRUE(run_io(*io_, reads, nullptr, opt).is_ok());
  EXPECT_EQ(std::memcmp(dst.data(), src.data(), total), 0);
}

INSTANTIATE_TEST_SUITE_P(Io, Backends, ::testing::Values("io_uring", "threads"));

TEST(IoBackendFactory, AutoPicksABackendThatWorks) {
  Logger log(LogLevel::kQuiet);
  auto io = make_io_backend({}, log);
  ASSERT_TRUE(io.is_ok()) << io.status().to_string();
  EXPECT_TRUE((*io)->name() == "io_uring" || (*io)->name() == "threads");
  auto threads = make_io_backend({IoBackendKind::kThreads, 4}, log);
  ASSERT_TRUE(threads.is_ok());
  EXPECT_EQ((*threads)->name(), "threads");
  EXPECT_EQ((*threads)->queue_depth(), 4);
  EXPECT_EQ(make_io_backend({IoBackendKind::kAuto, 0}, log).status().code(),
            StatusCode::kInvalidArgument);
}

// A file of known bytes read through a fault-injecting backend.
class Faults : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::make_temp_dir("strata-faults");
    io_ = std::make_unique<FaultInjectingBackend>(make_thread_io_backend(4));
    data_ = test::pattern_buffer(kBytes, 9);
    test::write_whole_file(dir_ / "data",
                           std::string(reinterpret_cast<const char*>(data_.data()), kBytes));
    auto f = IoFile::open(*io_, dir_ / "data", FileAccess::kRead, true, log_.logger());
    ASSERT_TRUE(f.is_ok()) << f.status().to_string();
    file_ = std::move(f).value();
    dst_ = *AlignedBuffer::allocate(kBytes);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  Status read_all(IoStats* stats = nullptr, int max_again = 64) {
    IoRequest r{IoOpKind::kRead, file_.get(), 0, dst_.data(), kBytes, -1, "test block"};
    IoRunOptions opt;
    opt.max_op_bytes = 64 << 10;
    opt.max_again_retries = max_again;
    return run_io(*io_, std::span<const IoRequest>(&r, 1), stats, opt);
  }
  bool intact() const { return std::memcmp(dst_.data(), data_.data(), kBytes) == 0; }

  static constexpr size_t kBytes = 1 << 20;
  std::filesystem::path dir_;
  CapturedLog log_;
  std::unique_ptr<FaultInjectingBackend> io_;
  std::unique_ptr<IoFile> file_;
  AlignedBuffer data_, dst_;
};

TEST_F(Faults, EioOnReadFailsNamingFileAndOffset) {
  io_->add_rule({FaultKind::kError, IoOpKind::kRead, EIO, "data", 300000, 300001, 1});
  Status s = read_all();
  EXPECT_EQ(s.code(), StatusCode::kIoError);
  EXPECT_EQ(s.error_number(), EIO);
  EXPECT_NE(s.message().find((dir_ / "data").string()), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("test block at offset 262144"), std::string::npos) << s.message();
  EXPECT_EQ(io_->injected(), 1);
}

TEST_F(Faults, ShortReadsAreResubmitted) {
  io_->add_rule({FaultKind::kShort, IoOpKind::kRead, 0, "", 0, UINT64_MAX, 5});
  IoStats stats;
  ASSERT_TRUE(read_all(&stats).is_ok());
  EXPECT_EQ(stats.short_resubmits, 5u);
  EXPECT_EQ(stats.bytes, kBytes);
  EXPECT_TRUE(intact());
}

TEST_F(Faults, EagainIsRetried) {
  io_->add_rule({FaultKind::kAgain, IoOpKind::kRead, 0, "", 0, UINT64_MAX, 3});
  IoStats stats;
  ASSERT_TRUE(read_all(&stats).is_ok());
  EXPECT_EQ(stats.again_retries, 3u);
  EXPECT_TRUE(intact());
}

TEST_F(Faults, EagainForeverGivesUp) {
  io_->add_rule({FaultKind::kAgain, IoOpKind::kRead, 0, "", 0, 4096, -1});
  Status s = read_all(nullptr, 6);
  EXPECT_EQ(s.code(), StatusCode::kIoError);
  EXPECT_EQ(s.error_number(), EAGAIN);
}

TEST_F(Faults, ReadPastEndOfFileIsATruncation) {
  io_->add_rule({FaultKind::kEndOfFile, IoOpKind::kRead, 0, "", 512 << 10, UINT64_MAX, 1});
  Status s = read_all();
  EXPECT_EQ(s.code(), StatusCode::kCorrupt);
  EXPECT_NE(s.message().find("truncated"), std::string::npos) << s.message();
}

TEST_F(Faults, RealTruncatedFileIsATruncation) {
  std::filesystem::resize_file(dir_ / "data", kBytes / 2);
  Status s = read_all();
  EXPECT_EQ(s.code(), StatusCode::kCorrupt);
  EXPECT_NE(s.message().find("at offset 524288"), std::string::npos) << s.message();
}

TEST_F(Faults, WriteErrorsNameTheFileAndSayWhatToDo) {
  auto out = IoFile::open(*io_, dir_ / "out", FileAccess::kCreate, true, log_.logger());
  ASSERT_TRUE(out.is_ok());
  for (int err : {ENOSPC, EIO}) {
    io_->clear_rules();
    io_->add_rule({FaultKind::kError, IoOpKind::kWrite, err, "out", 0, UINT64_MAX, 1});
    IoRequest w{IoOpKind::kWrite, out->get(), 0, data_.data(), kBytes, -1, "spill"};
    Status s = run_io(*io_, std::span<const IoRequest>(&w, 1));
    EXPECT_EQ(s.code(), StatusCode::kIoError);
    EXPECT_EQ(s.error_number(), err);
    EXPECT_NE(s.message().find((dir_ / "out").string()), std::string::npos);
    if (err == ENOSPC) {
      EXPECT_NE(s.message().find("disk is full"), std::string::npos);
    }
  }
}

TEST_F(Faults, FilesystemWithoutODirectFallsBackWithAWarning) {
  io_->add_rule({FaultKind::kRefuseDirect, IoOpKind::kRead, 0, "nodirect", 0, UINT64_MAX, -1});
  test::write_whole_file(dir_ / "nodirect",
                         std::string(reinterpret_cast<const char*>(data_.data()), kBytes));
  auto f = IoFile::open(*io_, dir_ / "nodirect", FileAccess::kRead, true, log_.logger());
  ASSERT_TRUE(f.is_ok()) << f.status().to_string();
  EXPECT_FALSE((*f)->direct());
  EXPECT_NE(log_.text().find("refuses O_DIRECT"), std::string::npos) << log_.text();
  file_ = std::move(f).value();
  ASSERT_TRUE(read_all().is_ok());
  EXPECT_TRUE(intact());
}

TEST(Tmpfs, OffloadOnDevShmWorksWithOrWithoutODirect) {
  if (!std::filesystem::is_directory("/dev/shm")) GTEST_SKIP() << "no /dev/shm";
  CapturedLog log;
  auto io = make_thread_io_backend(2);
  const auto path = std::filesystem::path("/dev/shm") /
                    ("strata-tmpfs-test-" + std::to_string(::getpid()));
  auto f = IoFile::open(*io, path, FileAccess::kReadWrite, true, log.logger());
  ASSERT_TRUE(f.is_ok()) << f.status().to_string();
  // Kernels before 6.6 refuse O_DIRECT on tmpfs: then there must be a warning.
  if (!(*f)->direct()) {
    EXPECT_NE(log.text().find("refuses O_DIRECT"), std::string::npos);
  }
  AlignedBuffer src = test::pattern_buffer(256 << 10, 4), dst = *AlignedBuffer::allocate(256 << 10);
  IoRequest w{IoOpKind::kWrite, f->get(), 0, src.data(), src.size(), -1, "block"};
  IoRequest r{IoOpKind::kRead, f->get(), 0, dst.data(), dst.size(), -1, "block"};
  EXPECT_TRUE(run_io(*io, std::span<const IoRequest>(&w, 1)).is_ok());
  EXPECT_TRUE(run_io(*io, std::span<const IoRequest>(&r, 1)).is_ok());
  EXPECT_EQ(std::memcmp(src.data(), dst.data(), src.size()), 0);
  f->reset();
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace strata::storage
