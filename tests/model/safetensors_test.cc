#include "model/safetensors.h"

#include <filesystem>

#include <gtest/gtest.h>

#include "model/safetensors_writer.h"
#include "testing/test_data.h"

namespace strata::model {
namespace {

using strata::testing::f32_blob;
using strata::testing::f32_bytes;
using strata::testing::TensorBlob;
using strata::testing::write_safetensors;
using strata::testing::write_safetensors_raw;

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = strata::testing::make_temp_dir("strata-safetensors"); }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Opens `file`, expects failure, and checks the message names the file and every fragment.
  // Returns the error's code.
  StatusCode open_fails(const std::filesystem::path& file,
                        std::initializer_list<const char*> fragments) {
    Result<std::unique_ptr<SafetensorsFile>> r = SafetensorsFile::open(file);
    EXPECT_FALSE(r.is_ok());
    if (r.is_ok()) return StatusCode::kOk;
    EXPECT_NE(r.status().message().find(file.string()), std::string::npos) << r.status().message();
    for (const char* f : fragments) {
      EXPECT_NE(r.status().message().find(f), std::string::npos) << r.status().message();
    }
    return r.status().code();
  }

  // A valid header (as JSON) and data section for two tensors, for tests to tamper with.
  nlohmann::json two_tensors(std::string& data) {
    return strata::testing::safetensors_header({f32_blob("a", {2, 3}), f32_blob("b", {4}, 100)},
                                               data);
  }

  std::filesystem::path dir_;
};

TEST_F(SafetensorsTest, RoundTrip) {
  uint16_t h[4] = {0x3c00, 0x4000, 0xc000, 0x0000};  // F16 1, 2, -2, 0
  uint16_t bf[2] = {0x3f80, 0x4040};                 // BF16 1, 3
  std::string f16(reinterpret_cast<const char*>(h), 8), b16(reinterpret_cast<const char*>(bf), 4);
  auto file = dir_ / "m.safetensors";
  write_safetensors(file,
                    {f32_blob("w", {2, 3}, 1),
                     {"h", "F16", {2, 2}, f16},
                     {"bf", "BF16", {2}, b16},
                     {"ids", "I64", {1}, std::string(8, '\1')},
                     {"empty", "F32", {0, 4}, ""}},
                    {{"format", "pt"}});
  Result<std::unique_ptr<SafetensorsFile>> r = SafetensorsFile::open(file);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  const SafetensorsFile& f = **r;
  EXPECT_EQ(f.entries().size(), 5u);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.data_offset() % 8, 0u);

  const SafetensorsEntry* w = f.find("w");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->dtype, DType::kF32);
  EXPECT_EQ(w->shape, (Shape{2, 3}));
  Result<Tensor> t = f.read("w");
  ASSERT_TRUE(t.is_ok()) << t.status().to_string();
  EXPECT_EQ(t->dtype(), DType::kF32);
  EXPECT_EQ(t->shape(), (Shape{2, 3}));
  for (int i = 0; i < 6; ++i) EXPECT_EQ(t->data<float>()[i], 1.0f + i);

  Result<Tensor> th = f.read("h");
  ASSERT_TRUE(th.is_ok());
  Tensor h32 = to_f32(*th);
  EXPECT_EQ(h32.data<float>()[1], 2.0f);
  EXPECT_EQ(h32.data<float>()[2], -2.0f);
  Result<Tensor> tb = f.read("bf");
  ASSERT_TRUE(tb.is_ok());
  EXPECT_EQ(to_f32(*tb).data<float>()[1], 3.0f);

  Result<Tensor> te = f.read("empty");
  ASSERT_TRUE(te.is_ok());
  EXPECT_EQ(te->numel(), 0);

  // Integer buffers open fine but cannot be loaded.
  Result<Tensor> ids = f.read("ids");
  ASSERT_FALSE(ids.is_ok());
  EXPECT_EQ(ids.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(ids.status().message().find("'ids'"), std::string::npos);
  EXPECT_NE(ids.status().message().find("I64"), std::string::npos);
  EXPECT_NE(ids.status().message().find(file.string()), std::string::npos);

  Result<Tensor> missing = f.read("nope");
  ASSERT_FALSE(missing.is_ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("'nope'"), std::string::npos);
}

TEST_F(SafetensorsTest, MissingFile) {
  EXPECT_EQ(open_fails(dir_ / "absent.safetensors", {"no such file"}), StatusCode::kNotFound);
}

TEST_F(SafetensorsTest, TooShortForHeaderLength) {
  auto file = dir_ / "short.safetensors";
  std::ofstream(file, std::ios::binary) << "abc";
  EXPECT_EQ(open_fails(file, {"too short"}), StatusCode::kCorrupt);
}

TEST_F(SafetensorsTest, TruncatedFile) {
  auto file = dir_ / "trunc.safetensors";
  write_safetensors(file, {f32_blob("a", {16, 16})});
  std::filesystem::resize_file(file, std::filesystem::file_size(file) - 10);
  open_fails(file, {"'a'", "outside the data section"});
}

TEST_F(SafetensorsTest, HeaderLengthBeyondFile) {
  auto file = dir_ / "len.safetensors";
  std::string data;
  write_safetensors_raw(file, two_tensors(data).dump(), data, 4096);
  open_fails(file, {"header length 4096", "past the end"});
  write_safetensors_raw(file, two_tensors(data).dump(), data, uint64_t{1} << 40);
  open_fails(file, {"exceeds the limit"});
}

TEST_F(SafetensorsTest, InvalidJson) {
  auto file = dir_ / "json.safetensors";
  write_safetensors_raw(file, "{\"a\": {\"dtype\": ", "");
  open_fails(file, {"not valid JSON"});
  write_safetensors_raw(file, "[1, 2]", "");
  open_fails(file, {"JSON object"});
  write_safetensors_raw(file, R"({"a": {"shape": [1], "data_offsets": [0, 4]}})",
                        std::string(4, '\0'));
  open_fails(file, {"'a'", "dtype"});
  write_safetensors_raw(file, R"({"__metadata__": {"n": 1}})", "");
  open_fails(file, {"__metadata__"});
}

TEST_F(SafetensorsTest, OverlappingRanges) {
  auto file = dir_ / "overlap.safetensors";
  std::string data;
  nlohmann::json h = two_tensors(data);  // a: [0, 24), b: [24, 40)
  h["b"]["data_offsets"] = {8, 24};
  h["b"]["shape"] = {4};
  write_safetensors_raw(file, h.dump(), data);
  EXPECT_EQ(open_fails(file, {"'a'", "'b'", "overlap"}), StatusCode::kCorrupt);
}

TEST_F(SafetensorsTest, RangeOutsideFile) {
  auto file = dir_ / "range.safetensors";
  std::string data;
  nlohmann::json h = two_tensors(data);
  h["b"]["data_offsets"] = {40, 56};
  write_safetensors_raw(file, h.dump(), data);
  open_fails(file, {"'b'", "[40, 56)", "outside the data section (40 bytes)"});
}

TEST_F(SafetensorsTest, ShapeDtypeMismatch) {
  auto file = dir_ / "mismatch.safetensors";
  std::string data;
  nlohmann::json h = two_tensors(data);
  h["a"]["shape"] = {2, 4};  // 32 bytes of F32, but the range holds 24
  write_safetensors_raw(file, h.dump(), data);
  open_fails(file, {"'a'", "[2, 4]", "needs 32 bytes", "hold 24"});
  h = two_tensors(data);
  h["a"]["dtype"] = "F16";
  write_safetensors_raw(file, h.dump(), data);
  open_fails(file, {"'a'", "F16", "needs 12 bytes"});
  h = two_tensors(data);
  h["a"]["shape"] = {2, -3};
  write_safetensors_raw(file, h.dump(), data);
  open_fails(file, {"'a'", "non-negative"});
  h = two_tensors(data);
  h["a"]["data_offsets"] = {24, 0};
  write_safetensors_raw(file, h.dump(), data);
  open_fails(file, {"'a'", "data_offsets"});
}

TEST_F(SafetensorsTest, UnknownDtype) {
  auto file = dir_ / "dtype.safetensors";
  std::string data;
  nlohmann::json h = two_tensors(data);
  h["b"]["dtype"] = "Q4_K";
  write_safetensors_raw(file, h.dump(), data);
  EXPECT_EQ(open_fails(file, {"'b'", "Q4_K"}), StatusCode::kUnsupported);
}

TEST_F(SafetensorsTest, HostileHeaderNumbers) {
  const auto file = dir_ / "h.safetensors";
  const std::string data(64, '\0');
  // A number past a double: an error naming the tensor's field, not an abort.
  write_safetensors_raw(file, R"({"a": {"dtype": "F32", "shape": [1e400], "data_offsets": [0, 4]}})", data);
  open_fails(file, {"'a.shape[0]'", "1e400", "out of range"});
  write_safetensors_raw(file, R"({"__metadata__": {"x": 1e999}})", data);
  open_fails(file, {"'__metadata__.x'"});
  // Shapes whose byte count would overflow, and offsets past 2^64.
  write_safetensors_raw(file,
                        R"({"a": {"dtype": "F64", "shape": [4611686018427387904, 4], "data_offsets": [0, 8]}})",
                        data);
  open_fails(file, {"'a'", "too large"});
  write_safetensors_raw(file, R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 18446744073709551616]}})",
                        data);
  open_fails(file, {"'a'", "data_offsets"});
  write_safetensors_raw(file, R"({"a": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 8]}})", data);
  open_fails(file, {"'a'", "non-negative integers"});
  // Deep nesting in the header.
  write_safetensors_raw(file, "{\"a\": " + std::string(100, '[') + std::string(100, ']') + "}", data);
  open_fails(file, {"deeper"});
}

TEST(SafetensorsDtype, Sizes) {
  EXPECT_EQ(safetensors_dtype_size("F16"), 2u);
  EXPECT_EQ(safetensors_dtype_size("BF16"), 2u);
  EXPECT_EQ(safetensors_dtype_size("F32"), 4u);
  EXPECT_EQ(safetensors_dtype_size("I64"), 8u);
  EXPECT_EQ(safetensors_dtype_size("F8_E4M3"), 1u);
  EXPECT_FALSE(safetensors_dtype_size("F17").has_value());
}

}  // namespace
}  // namespace strata::model
