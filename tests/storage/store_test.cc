// The weight store: layout, atomic commit, and every read fault (EIO, short reads, truncation,
// checksum mismatch, another format version), none of which may hand out bad bytes.
#include <cerrno>
#include <cstring>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "storage/checksum.h"
#include "storage/fault_injection.h"
#include "storage/store_writer.h"
#include "storage/weight_store.h"
#include "storage_test_util.h"
#include "testing/test_data.h"

namespace strata::storage {
namespace {

struct Item {
  StoreTensor meta;
  std::vector<std::byte> bytes;
};

Item make_item(const std::string& name, DType dtype, Shape shape, uint32_t seed) {
  Item it;
  it.meta.name = name;
  it.meta.file = store_file_for(name);
  it.meta.dtype = dtype;
  it.meta.shape = std::move(shape);
  it.meta.bytes = *stored_bytes(it.meta.shape, dtype, Compression::kNone);
  it.bytes.resize(it.meta.bytes);
  test::fill_pattern(it.bytes.data(), it.bytes.size(), seed);
  return it;
}

class Store : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = testing::make_temp_dir("strata-store");
    dir_ = root_ / "store";
    items_.push_back(make_item("embed.tokens", DType::kF16, {100, 64}, 1));
    items_.push_back(make_item("layers.0.attn_norm.weight", DType::kF32, {64}, 2));
    items_.push_back(make_item("layers.0.q.weight", DType::kF16, {64, 64}, 3));
    items_.push_back(make_item("layers.0.k.weight", DType::kF16, {300, 64}, 4));  // 37.5 KiB
    items_.push_back(make_item("layers.1.q.weight", DType::kBF16, {64, 64}, 5));
    items_.push_back(make_item("lm_head.weight", DType::kF16, {100, 64}, 6));
    io_ = std::make_unique<FaultInjectingBackend>(make_thread_io_backend(4));
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  Status write_store() {
    STRATA_ASSIGN_OR_RETURN(auto w, StoreWriter::create(*io_, dir_, log_.logger()));
    for (const Item& it : items_) STRATA_RETURN_IF_ERROR(w->add(it.meta, it.bytes));
    StoreManifest info;
    info.source = "test";
    return w->commit(info);
  }
  std::unique_ptr<WeightStore> open_store() {
    auto s = WeightStore::open(dir_, *io_, log_.logger());
    EXPECT_TRUE(s.is_ok()) << s.status().to_string();
    return s.is_ok() ? std::move(s).value() : nullptr;
  }

  std::filesystem::path root_, dir_;
  std::vector<Item> items_;
  test::CapturedLog log_;
  std::unique_ptr<FaultInjectingBackend> io_;
};

TEST_F(Store, LaysTensorsOutAlignedPerLayerWithChecksums) {
  ASSERT_TRUE(write_store().is_ok());
  for (const char* f : {"embed.bin", "layer.000.bin", "layer.001.bin", "head.bin", "manifest.json"})
    EXPECT_TRUE(std::filesystem::exists(dir_ / f)) << f;
  auto store = open_store();
  ASSERT_TRUE(store);
  // layer.000.bin: norm (256 B) at 0, q (8 KiB) at 4096, k (37.5 KiB) at 12288; 53248 bytes.
  EXPECT_EQ(store->find("layers.0.attn_norm.weight")->offset, 0u);
  EXPECT_EQ(store->find("layers.0.q.weight")->offset, 4096u);
  EXPECT_EQ(store->find("layers.0.k.weight")->offset, 12288u);
  EXPECT_EQ(std::filesystem::file_size(dir_ / "layer.000.bin"), 53248u);
  const std::string disk = test::read_whole_file(dir_ / "layer.000.bin");
  for (const Item& it : items_) {
    const StoreTensor* t = store->find(it.meta.name);
    ASSERT_NE(t, nullptr) << it.meta.name;
    EXPECT_EQ(t->offset % 4096, 0u);
    EXPECT_EQ(t->xxhash64, xxhash64(it.bytes)) << it.meta.name;
    auto buf = store->read(*t);
    ASSERT_TRUE(buf.is_ok()) << buf.status().to_string();
    ASSERT_EQ(buf->size(), it.bytes.size());
    EXPECT_EQ(std::memcmp(buf->data(), it.bytes.data(), it.bytes.size()), 0) << it.meta.name;
    // On disk, at the manifest's offset (read without strata's I/O path).
    if (t->file == "layer.000.bin") {
      EXPECT_EQ(std::memcmp(disk.data() + t->offset, it.bytes.data(), it.bytes.size()), 0);
    }
  }
  EXPECT_EQ(store->find("nope"), nullptr);
}

TEST_F(Store, ReadsSeveralTensorsInOneBatch) {
  ASSERT_TRUE(write_store().is_ok());
  auto store = open_store();
  std::vector<const StoreTensor*> ts;
  for (const Item& it : items_) ts.push_back(store->find(it.meta.name));
  auto bufs = store->read(ts);
  ASSERT_TRUE(bufs.is_ok()) << bufs.status().to_string();
  for (size_t i = 0; i < items_.size(); ++i)
    EXPECT_EQ(std::memcmp((*bufs)[i].data(), items_[i].bytes.data(), items_[i].bytes.size()), 0);
}

TEST_F(Store, CommitIsAtomic) {
  {
    auto w = StoreWriter::create(*io_, dir_, log_.logger());
    ASSERT_TRUE(w.is_ok());
    ASSERT_TRUE((*w)->add(items_[0].meta, items_[0].bytes).is_ok());
    ASSERT_TRUE((*w)->add(items_[1].meta, items_[1].bytes).is_ok());
    // Mid-conversion: nothing at the output path, and the partial directory is no store.
    EXPECT_FALSE(std::filesystem::exists(dir_));
    EXPECT_FALSE(is_weight_store((*w)->partial_dir()));
    // Destroyed without commit, as after a failure: the partial directory goes too.
  }
  EXPECT_FALSE(std::filesystem::exists(dir_));
  EXPECT_TRUE(std::filesystem::is_empty(root_));
  ASSERT_TRUE(write_store().is_ok());
  EXPECT_TRUE(is_weight_store(dir_));
  // A second conversion to the same place is refused.
  EXPECT_EQ(StoreWriter::create(*io_, dir_, log_.logger()).status().code(),
            StatusCode::kInvalidArgument);
}

TEST_F(Store, WriteErrorsLeaveNoStore) {
  for (int err : {ENOSPC, EIO}) {
    io_->clear_rules();
    io_->add_rule({FaultKind::kError, IoOpKind::kWrite, err, "layer.001.bin", 0, UINT64_MAX, 1});
    Status s = write_store();
    EXPECT_EQ(s.code(), StatusCode::kIoError);
    EXPECT_EQ(s.error_number(), err);
    EXPECT_NE(s.message().find("layers.1.q.weight"), std::string::npos) << s.message();
    EXPECT_FALSE(std::filesystem::exists(dir_));
    EXPECT_TRUE(std::filesystem::is_empty(root_));
  }
}

TEST_F(Store, EioOnReadIsAnErrorNamingTheTensor) {
  ASSERT_TRUE(write_store().is_ok());
  auto store = open_store();
  io_->add_rule({FaultKind::kError, IoOpKind::kRead, EIO, "layer.000.bin", 12288, 12289, 1});
  auto r = store->read(*store->find("layers.0.k.weight"));
  EXPECT_EQ(r.status().code(), StatusCode::kIoError);
  EXPECT_NE(r.status().message().find("tensor 'layers.0.k.weight' at offset 12288"),
            std::string::npos)
      << r.status().message();
  // The fault was transient: the next read succeeds with the right bytes.
  auto again = store->read(*store->find("layers.0.k.weight"));
  ASSERT_TRUE(again.is_ok());
  EXPECT_EQ(std::memcmp(again->data(), items_[3].bytes.data(), items_[3].bytes.size()), 0);
}

TEST_F(Store, ShortReadsStillDeliverTheRightBytes) {
  ASSERT_TRUE(write_store().is_ok());
  auto store = open_store();
  io_->add_rule({FaultKind::kShort, IoOpKind::kRead, 0, "", 0, UINT64_MAX, 3});
  auto r = store->read(*store->find("layers.0.k.weight"));
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(std::memcmp(r->data(), items_[3].bytes.data(), items_[3].bytes.size()), 0);
  EXPECT_EQ(store->stats().short_resubmits, 3u);
}

TEST_F(Store, FlippedBitIsAChecksumError) {
  ASSERT_TRUE(write_store().is_ok());
  auto store = open_store();
  io_->add_rule({FaultKind::kFlipBit, IoOpKind::kRead, 0, "layer.000.bin", 0, UINT64_MAX, 1});
  auto r = store->read(*store->find("layers.0.q.weight"));
  ASSERT_EQ(r.status().code(), StatusCode::kCorrupt);
  const std::string& m = r.status().message();
  EXPECT_NE(m.find((dir_ / "layer.000.bin").string()), std::string::npos) << m;
  EXPECT_NE(m.find("tensor 'layers.0.q.weight' at offset 4096"), std::string::npos) << m;
  EXPECT_NE(m.find("checksum"), std::string::npos) << m;
}

TEST_F(Store, DamagedFileOnDiskIsAChecksumError) {
  ASSERT_TRUE(write_store().is_ok());
  std::string disk = test::read_whole_file(dir_ / "head.bin");
  disk[100] ^= 0x40;
  test::write_whole_file(dir_ / "head.bin", disk);
  auto store = open_store();
  auto r = store->read(*store->find("lm_head.weight"));
  EXPECT_EQ(r.status().code(), StatusCode::kCorrupt);
  EXPECT_NE(r.status().message().find("lm_head.weight"), std::string::npos);
}

TEST_F(Store, TruncatedStoreIsRefusedAtOpen) {
  ASSERT_TRUE(write_store().is_ok());
  std::filesystem::resize_file(dir_ / "layer.000.bin", 8192);
  auto s = WeightStore::open(dir_, *io_, log_.logger());
  EXPECT_EQ(s.status().code(), StatusCode::kCorrupt);
  EXPECT_NE(s.status().message().find("layer.000.bin"), std::string::npos);
  EXPECT_NE(s.status().message().find("truncated"), std::string::npos);
}

TEST_F(Store, TruncatedAfterOpenIsAReadPastEndOfFile) {
  ASSERT_TRUE(write_store().is_ok());
  auto store = open_store();
  std::filesystem::resize_file(dir_ / "layer.000.bin", 16384);
  auto r = store->read(*store->find("layers.0.k.weight"));
  EXPECT_EQ(r.status().code(), StatusCode::kCorrupt);
  EXPECT_NE(r.status().message().find("truncated"), std::string::npos) << r.status().message();
  io_->add_rule({FaultKind::kEndOfFile, IoOpKind::kRead, 0, "head.bin", 0, UINT64_MAX, 1});
  EXPECT_EQ(store->read(*store->find("lm_head.weight")).status().code(), StatusCode::kCorrupt);
}

TEST_F(Store, AnotherFormatVersionIsRefused) {
  ASSERT_TRUE(write_store().is_ok());
  auto j = nlohmann::json::parse(test::read_whole_file(dir_ / "manifest.json"));
  j["format_version"] = kStoreFormatVersion + 1;
  test::write_whole_file(dir_ / "manifest.json", j.dump());
  auto s = WeightStore::open(dir_, *io_, log_.logger());
  EXPECT_EQ(s.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(s.status().message().find("format version 2"), std::string::npos);
  EXPECT_NE(s.status().message().find("strata convert"), std::string::npos);
}

TEST(StoreFormat, FilesPerLayer) {
  EXPECT_EQ(store_file_for("embed.tokens"), "embed.bin");
  EXPECT_EQ(store_file_for("embed.positions"), "embed.bin");
  EXPECT_EQ(store_file_for("layers.12.fc1.bias"), "layer.012.bin");
  EXPECT_EQ(store_file_for("layers.0.q.weight"), "layer.000.bin");
  EXPECT_EQ(store_file_for("final_norm.weight"), "head.bin");
  EXPECT_EQ(store_file_for("embed.project_out"), "head.bin");
  EXPECT_EQ(store_file_for("lm_head.weight"), "head.bin");
}

TEST(StoreFormat, StoredBytes) {
  EXPECT_EQ(stored_bytes({3, 5}, DType::kF16, Compression::kNone), 30u);
  // [2, 128] int4-g64: 128 code bytes + 4 groups x 4 bytes.
  EXPECT_EQ(stored_bytes({2, 128}, DType::kF16, Compression::kInt4G64), 144u);
  EXPECT_FALSE(stored_bytes({2, 100}, DType::kF16, Compression::kInt4G64).has_value());
}

// A valid one-tensor manifest with one field replaced.
std::string manifest_with(const std::string& key, const nlohmann::json& value) {
  nlohmann::json t = {{"name", "w"},     {"file", "a.bin"},    {"dtype", "F16"},
                      {"shape", {2, 4}}, {"offset", 0},        {"bytes", 16},
                      {"compression", "none"}, {"xxhash64", "0000000000000000"}};
  if (t.contains(key)) t[key] = value;
  nlohmann::json m = {{"format", "strata-weight-store"}, {"format_version", 1},
                      {"alignment", 4096}, {"files", {{{"name", "a.bin"}, {"bytes", 4096}}}},
                      {"tensors", {t}}};
  return m.dump();
}

TEST(StoreFormat, RejectsBadManifests) {
  EXPECT_TRUE(parse_manifest(manifest_with("", 0), "m").is_ok());
  struct Case {
    std::string key;
    nlohmann::json value;
    const char* says;
  } cases[] = {
      {"offset", 100, "not a multiple of 4096"},
      {"bytes", 15, "takes 16"},
      {"offset", 4096, "ends at byte"},
      {"dtype", "I64", "unsupported dtype"},
      {"compression", "zstd", "unknown compression"},
      {"xxhash64", "xyz", "malformed xxhash64"},
      {"file", "b.bin", "unlisted file"},
  };
  for (const Case& c : cases) {
    auto m = parse_manifest(manifest_with(c.key, c.value), "dir/manifest.json");
    ASSERT_FALSE(m.is_ok()) << c.key;
    EXPECT_EQ(m.status().code(), StatusCode::kCorrupt) << c.key;
    EXPECT_NE(m.status().message().find("dir/manifest.json: tensor 'w'"), std::string::npos)
        << m.status().message();
    EXPECT_NE(m.status().message().find(c.says), std::string::npos) << m.status().message();
  }
  EXPECT_EQ(parse_manifest("{\"format\": \"other\"}", "m").status().code(), StatusCode::kCorrupt);
  EXPECT_EQ(parse_manifest("not json", "m").status().code(), StatusCode::kCorrupt);
}

TEST(StoreFormat, HostileNumbersAreErrorsNotAborts) {
  struct Case {
    std::string key;
    nlohmann::json value;
    const char* says;
  } cases[] = {
      {"offset", 18446744073709547520.0, "'offset'"},        // 2^64 - 4096 would wrap offset + bytes
      {"offset", uint64_t{18446744073709547520u}, "'offset'"},
      {"bytes", -16, "'bytes'"},
      {"shape", {1e30, 4}, "'shape'"},                       // converting it to int64 is undefined
      {"shape", {2147483648LL, 2147483648LL, 2147483648LL, 2147483648LL}, "takes an impossible size"},
      {"shape", "2x4", "'shape'"},
      {"name", 7, "'name'"},
      {"dtype", nullptr, "'dtype'"},
  };
  for (const Case& c : cases) {
    auto m = parse_manifest(manifest_with(c.key, c.value), "dir/manifest.json");
    ASSERT_FALSE(m.is_ok()) << c.key << " " << c.value.dump();
    EXPECT_EQ(m.status().code(), StatusCode::kCorrupt) << c.key;
    EXPECT_NE(m.status().message().find("dir/manifest.json"), std::string::npos) << m.status().message();
    EXPECT_NE(m.status().message().find(c.says), std::string::npos) << m.status().message();
  }
  // A number past a double anywhere: the error names the field.
  std::string text = manifest_with("", 0);
  text.replace(text.find("\"offset\":0"), 10, "\"offset\":1e400");
  auto m = parse_manifest(text, "dir/manifest.json");
  ASSERT_FALSE(m.is_ok());
  EXPECT_NE(m.status().message().find("'tensors[0].offset'"), std::string::npos) << m.status().message();
  EXPECT_NE(m.status().message().find("1e400"), std::string::npos) << m.status().message();
  // Structure of the wrong type.
  for (const char* bad : {R"({"format": "strata-weight-store", "format_version": 1, "alignment": 4096,
                              "files": {}, "tensors": []})",
                          R"({"format": "strata-weight-store", "format_version": 1e300, "alignment": 4096})",
                          R"({"format": "strata-weight-store", "format_version": 1, "alignment": 4096,
                              "files": [7], "tensors": []})",
                          R"({"format": "strata-weight-store", "format_version": 1, "alignment": 4096,
                              "files": [], "tensors": [null]})"}) {
    auto r = parse_manifest(bad, "dir/manifest.json");
    ASSERT_FALSE(r.is_ok()) << bad;
    EXPECT_NE(r.status().message().find("dir/manifest.json"), std::string::npos) << r.status().message();
  }
}

}  // namespace
}  // namespace strata::storage
