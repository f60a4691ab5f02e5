#include "offload/kv_file.h"

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <numeric>
#include <vector>

#include "storage/aligned_buffer.h"
#include "testing/test_data.h"

namespace strata::offload {
namespace {

using Ranges = std::vector<std::pair<uint64_t, uint64_t>>;

TEST(KvRowPages, Fp16RowsRoundOutToPagesAndMerge) {
  // E = 8 x 128 = 1024 fp16 = 2 KiB a row, 10 positions a slot.
  const compute::HostKvShape shape{3, 10, 8, 128, false};
  const KvRows rows[] = {{1, 9, 10}, {0, 0, 3}, {2, 0, 1}};
  // slot 0 [0, 3): bytes [0, 6144) -> [0, 8192); slot 1 position 9 is row 19: [38912, 40960);
  // slot 2 position 0 is row 20: [40960, 43008) -> [40960, 45056), merged with the one before.
  EXPECT_EQ(kv_row_pages(shape, rows), (Ranges{{0, 8192}, {36864, 45056}}));
  const KvRows none[] = {{1, 4, 4}};
  EXPECT_TRUE(kv_row_pages(shape, none).empty());
}

TEST(KvRowPages, ASequenceRunsOnOverTheSlotsAfterItsOwn) {
  // Pages of paged KV: 3 slots of 10 positions, a sequence at slot 0 holding 25 positions is rows
  // [0, 25): bytes [0, 51200) -> [0, 53248).
  const compute::HostKvShape shape{3, 10, 8, 128, false};
  const KvRows rows[] = {{0, 0, 25}};
  EXPECT_EQ(kv_row_pages(shape, rows), (Ranges{{0, 53248}}));
}

TEST(KvRowPages, Int4RowsCoverCodesScalesAndMins) {
  // E = 2 x 64 = 128: a row is 64 bytes of codes and 2 groups (4 bytes) of scales and of mins;
  // 4 slots x 64 positions = 256 rows: codes [0, 16384), scales [16384, 17408), mins [17408, 18432).
  const compute::HostKvShape shape{4, 64, 2, 64, true};
  const KvRows rows[] = {{2, 5, 6}};  // row 133
  EXPECT_EQ(kv_row_pages(shape, rows),
            (Ranges{{8192, 12288}, {16384, 20480}}));  // codes [8512, 8576); scales 16916, mins 17940
}

class KvFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    io_ = storage::make_thread_io_backend(4);
    dir_ = testing::make_temp_dir("kv_file");
  }
  std::unique_ptr<storage::IoBackend> io_;
  std::filesystem::path dir_;
  Logger log_{LogLevel::kError};
};

TEST_F(KvFileTest, WritesOnlyTheNewRowsAndKeepsTheRestOfTheirPages) {
  // fp16 rows of 192 bytes: pages hold parts of two slots' rows.
  const compute::HostKvShape shape{3, 7, 3, 32, false};
  auto created = KvFile::create(*io_, dir_, shape, 2, log_);
  ASSERT_TRUE(created.is_ok()) << created.status().to_string();
  KvFile& f = *created.value();
  EXPECT_EQ(f.file_bytes(), 2 * f.region_bytes());
  EXPECT_EQ(f.v_offset() % storage::kIoAlignment, 0u);
  EXPECT_TRUE(std::filesystem::exists(f.path()));

  auto a = storage::AlignedBuffer::allocate(f.region_bytes()).value();
  auto b = storage::AlignedBuffer::allocate(f.region_bytes()).value();
  auto* pa = a.data();
  auto* pb = b.data();
  for (size_t i = 0; i < f.region_bytes(); ++i) pa[i] = static_cast<std::byte>(i * 7 + 1);
  // A prompt step writes every slot's first 4 positions of unit 1.
  const std::vector<KvRows> prompt = {{0, 0, 4}, {1, 0, 4}, {2, 0, 4}};
  ASSERT_TRUE(f.write(1, prompt, {}, pa).is_ok());
  // A decode step of slot 1 alone: read its positions [0, 5), change position 4 only, write it.
  std::memset(pb, 0, f.region_bytes());
  const std::vector<KvRows> read_rows = {{1, 0, 5}};
  auto n = f.read(1, read_rows, pb);
  ASSERT_TRUE(n.is_ok()) << n.status().to_string();
  EXPECT_GT(n.value(), 0u);
  const size_t row = 96 * 2, new_row = (1 * 7 + 4) * row;
  for (size_t off : {size_t{0}, f.v_offset()})
    for (size_t i = 0; i < row; ++i) pb[off + new_row + i] = std::byte{0xAB};
  const std::vector<KvRows> new_rows = {{1, 4, 5}};
  ASSERT_TRUE(f.write(1, new_rows, read_rows, pb).is_ok());
  // Every slot's first 4 positions are intact, and slot 1 position 4 is new.
  std::memset(pb, 0, f.region_bytes());
  const std::vector<KvRows> all = {{0, 0, 5}, {1, 0, 5}, {2, 0, 5}};
  ASSERT_TRUE(f.read(1, all, pb).is_ok());
  for (size_t off : {size_t{0}, f.v_offset()})
    for (int64_t slot = 0; slot < 3; ++slot)
      for (int64_t pos = 0; pos < 4; ++pos) {
        const size_t at = off + static_cast<size_t>(slot * 7 + pos) * row;
        ASSERT_EQ(std::memcmp(pa + at, pb + at, row), 0) << "slot " << slot << " position " << pos;
      }
  for (size_t off : {size_t{0}, f.v_offset()})
    for (size_t i = 0; i < row; ++i) ASSERT_EQ(pb[off + new_row + i], std::byte{0xAB});
  // Unit 0 is untouched by unit 1's traffic (its pages read back as zeros).
  std::memset(pb, 1, f.region_bytes());
  ASSERT_TRUE(f.read(0, all, pb).is_ok());
  EXPECT_EQ(pb[0], std::byte{0});

  const auto path = f.path();
  created.value().reset();
  EXPECT_FALSE(std::filesystem::exists(path)) << "the KV file outlives its KvFile";
}

// The bytes of k (or v) holding positions [begin, end) of `slot`.
Ranges row_bytes(const compute::HostKvShape& shape, int64_t slot, int64_t begin, int64_t end) {
  const int64_t r0 = slot * shape.max_len + begin, r1 = slot * shape.max_len + end;
  if (!shape.int4) {
    const uint64_t row = static_cast<uint64_t>(shape.row_elems()) * 2;
    return {{r0 * row, r1 * row}};
  }
  return {{shape.code_offset(r0), shape.code_offset(r1)},
          {shape.scale_offset(r0), shape.scale_offset(r1)},
          {shape.min_offset(r0), shape.min_offset(r1)}};
}

// A request joining a running block: a prompt step writes only its slot, with nothing read into
// staging first (the rest of staging is another unit's bytes). The running sequences on either
// side, whose rows share the written pages (fp16 rows across slot boundaries; int4 scales and
// mins of many slots a page), keep theirs.
TEST_F(KvFileTest, APromptStepForOneSlotKeepsTheOtherSlotsRows) {
  for (const compute::HostKvShape shape :
       {compute::HostKvShape{4, 7, 3, 32, false}, compute::HostKvShape{4, 40, 2, 64, true}}) {
    const std::string what = shape.int4 ? "int4" : "fp16";
    auto created = KvFile::create(*io_, dir_, shape, 2, log_);
    ASSERT_TRUE(created.is_ok()) << created.status().to_string();
    KvFile& f = *created.value();
    auto a = storage::AlignedBuffer::allocate(f.region_bytes()).value();
    auto b = storage::AlignedBuffer::allocate(f.region_bytes()).value();
    for (size_t i = 0; i < f.region_bytes(); ++i) a.data()[i] = static_cast<std::byte>(i * 7 + 1);
    const std::vector<KvRows> block = {{0, 0, shape.max_len}, {1, 0, shape.max_len}, {2, 0, shape.max_len},
                                       {3, 0, shape.max_len}};
    ASSERT_TRUE(f.write(1, block, {}, a.data()).is_ok()) << what;

    // Slot 2 takes a new 5-token prompt; staging holds only those rows.
    std::memset(b.data(), 0xEE, f.region_bytes());
    const Ranges joined = row_bytes(shape, 2, 0, 5);
    for (size_t off : {size_t{0}, f.v_offset()})
      for (const auto& [s, e] : joined)
        for (uint64_t i = s; i < e; ++i) b.data()[off + i] = static_cast<std::byte>(0x40 + i % 13);
    const auto expected_joined = std::vector<std::byte>(b.data(), b.data() + f.region_bytes());
    const std::vector<KvRows> prompt = {{2, 0, 5}};
    ASSERT_TRUE(f.write(1, prompt, {}, b.data()).is_ok()) << what;

    std::memset(b.data(), 0, f.region_bytes());
    ASSERT_TRUE(f.read(1, block, b.data()).is_ok()) << what;
    for (size_t off : {size_t{0}, f.v_offset()}) {
      for (int64_t slot : {0, 1, 3})
        for (const auto& [s, e] : row_bytes(shape, slot, 0, shape.max_len))
          ASSERT_EQ(std::memcmp(a.data() + off + s, b.data() + off + s, e - s), 0)
              << what << ": slot " << slot << " lost its rows to slot 2's prompt";
      for (const auto& [s, e] : joined)
        ASSERT_EQ(std::memcmp(expected_joined.data() + off + s, b.data() + off + s, e - s), 0)
            << what << ": slot 2's prompt";
    }
  }
}

// Paged KV: a prompt of 11 positions written at page 2 (pages 2-4 of 4 positions) keeps the rows
// of the sequences holding pages 0-1 and 5-7, whose bytes share its first and last file pages.
TEST_F(KvFileTest, APromptOverSeveralPagesKeepsItsNeighboursRows) {
  for (const compute::HostKvShape shape :
       {compute::HostKvShape{8, 4, 3, 32, false}, compute::HostKvShape{8, 4, 2, 64, true}}) {
    const std::string what = shape.int4 ? "int4" : "fp16";
    auto created = KvFile::create(*io_, dir_, shape, 1, log_);
    ASSERT_TRUE(created.is_ok()) << created.status().to_string();
    KvFile& f = *created.value();
    auto a = storage::AlignedBuffer::allocate(f.region_bytes()).value();
    auto b = storage::AlignedBuffer::allocate(f.region_bytes()).value();
    for (size_t i = 0; i < f.region_bytes(); ++i) a.data()[i] = static_cast<std::byte>(i * 5 + 3);
    const std::vector<KvRows> running = {{0, 0, 8}, {5, 0, 12}};
    ASSERT_TRUE(f.write(0, running, {}, a.data()).is_ok()) << what;

    std::memset(b.data(), 0xEE, f.region_bytes());
    const Ranges prompt_bytes = row_bytes(shape, 2, 0, 11);
    for (size_t off : {size_t{0}, f.v_offset()})
      for (const auto& [s, e] : prompt_bytes)
        for (uint64_t i = s; i < e; ++i) b.data()[off + i] = static_cast<std::byte>(0x30 + i % 11);
    const auto expected = std::vector<std::byte>(b.data(), b.data() + f.region_bytes());
    const std::vector<KvRows> prompt = {{2, 0, 11}};
    ASSERT_TRUE(f.write(0, prompt, {}, b.data()).is_ok()) << what;

    std::memset(b.data(), 0, f.region_bytes());
    const std::vector<KvRows> all = {{0, 0, 8}, {2, 0, 11}, {5, 0, 12}};
    ASSERT_TRUE(f.read(0, all, b.data()).is_ok()) << what;
    for (size_t off : {size_t{0}, f.v_offset()}) {
      for (const KvRows& r : running)
        for (const auto& [s, e] : row_bytes(shape, r.slot, r.begin, r.end))
          ASSERT_EQ(std::memcmp(a.data() + off + s, b.data() + off + s, e - s), 0)
              << what << ": the sequence at page " << r.slot << " lost its rows to the prompt";
      for (const auto& [s, e] : prompt_bytes)
        ASSERT_EQ(std::memcmp(expected.data() + off + s, b.data() + off + s, e - s), 0) << what << ": the prompt";
    }
  }
}

TEST_F(KvFileTest, AnUnusableDirectoryIsNamed) {
  const auto not_a_dir = dir_ / "a-file";
  std::ofstream(not_a_dir) << "x";
  auto f = KvFile::create(*io_, not_a_dir / "kv", {2, 8, 2, 64, false}, 4, log_);
  ASSERT_FALSE(f.is_ok());
  EXPECT_NE(f.status().message().find((not_a_dir / "kv").string()), std::string::npos) << f.status().to_string();
  EXPECT_NE(f.status().message().find("--offload-dir"), std::string::npos) << f.status().to_string();
}

}  // namespace
}  // namespace strata::offload
