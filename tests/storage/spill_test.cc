// KV-cache spill through the I/O path: round trips, verify-mode read-back checks, and write
// faults that must never let a later read return stale or damaged bytes.
#include <cerrno>
#include <cstring>

#include <gtest/gtest.h>

#include "storage/fault_injection.h"
#include "storage/spill_file.h"
#include "storage_test_util.h"
#include "testing/test_data.h"

namespace strata::storage {
namespace {

class Spill : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::make_temp_dir("strata-spill");
    io_ = std::make_unique<FaultInjectingBackend>(make_thread_io_backend(4));
    auto f = SpillFile::create(*io_, dir_ / "kv.spill", /*verify=*/true, log_.logger());
    ASSERT_TRUE(f.is_ok()) << f.status().to_string();
    file_ = std::move(f).value();
  }
  void TearDown() override {
    file_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::filesystem::path dir_;
  test::CapturedLog log_;
  std::unique_ptr<FaultInjectingBackend> io_;
  std::unique_ptr<SpillFile> file_;
};

TEST_F(Spill, BlocksRoundTrip) {
  AlignedBuffer a = test::pattern_buffer(64 << 10, 1), b = test::pattern_buffer(128 << 10, 2);
  ASSERT_TRUE(file_->write(0, a.span()).is_ok());
  ASSERT_TRUE(file_->write(1 << 20, b.span()).is_ok());
  AlignedBuffer ra = *AlignedBuffer::allocate(a.size()), rb = *AlignedBuffer::allocate(b.size());
  ASSERT_TRUE(file_->read(1 << 20, rb.span()).is_ok());
  ASSERT_TRUE(file_->read(0, ra.span()).is_ok());
  EXPECT_EQ(std::memcmp(ra.data(), a.data(), a.size()), 0);
  EXPECT_EQ(std::memcmp(rb.data(), b.data(), b.size()), 0);
}

TEST_F(Spill, DamagedReadBackIsCaughtInVerifyMode) {
  AlignedBuffer a = test::pattern_buffer(64 << 10, 3), r = *AlignedBuffer::allocate(64 << 10);
  ASSERT_TRUE(file_->write(8192, a.span()).is_ok());
  io_->add_rule({FaultKind::kFlipBit, IoOpKind::kRead, 0, "kv.spill", 0, UINT64_MAX, 1});
  Status s = file_->read(8192, r.span());
  EXPECT_EQ(s.code(), StatusCode::kCorrupt);
  EXPECT_NE(s.message().find("kv.spill: spilled block at offset 8192"), std::string::npos)
      << s.message();
}

TEST_F(Spill, FailedWriteIsNeverReadBackAsData) {
  AlignedBuffer old_bytes = test::pattern_buffer(32 << 10, 4);
  AlignedBuffer new_bytes = test::pattern_buffer(32 << 10, 5);
  AlignedBuffer r = *AlignedBuffer::allocate(32 << 10);
  ASSERT_TRUE(file_->write(0, old_bytes.span()).is_ok());
  for (int err : {ENOSPC, EIO}) {
    io_->clear_rules();
    io_->add_rule({FaultKind::kError, IoOpKind::kWrite, err, "kv.spill", 0, UINT64_MAX, 1});
    Status s = file_->write(0, new_bytes.span());
    EXPECT_EQ(s.code(), StatusCode::kIoError);
    EXPECT_EQ(s.error_number(), err);
    // The block now holds neither version for sure: reading it is an error, not old bytes.
    EXPECT_FALSE(file_->read(0, r.span()).is_ok());
  }
  io_->clear_rules();
  ASSERT_TRUE(file_->write(0, new_bytes.span()).is_ok());
  ASSERT_TRUE(file_->read(0, r.span()).is_ok());
  EXPECT_EQ(std::memcmp(r.data(), new_bytes.data(), r.size()), 0);
}

TEST_F(Spill, FileIsRemovedWithTheObject) {
  const auto p = file_->path();
  EXPECT_TRUE(std::filesystem::exists(p));
  file_.reset();
  EXPECT_FALSE(std::filesystem::exists(p));
}

}  // namespace
}  // namespace strata::storage
