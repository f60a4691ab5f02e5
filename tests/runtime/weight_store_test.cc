// strata convert's stores loaded into the CPU engine: stored as-is they give logits bitwise equal
// to loading the safetensors directly; int4-g64 gives logits bitwise equal to running the model
// on reference_dequantise(quantise(w)); a damaged store never produces logits.
#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "model/model_dir.h"
#include "model/weight_names.h"
#include "runtime/context.h"
#include "runtime/convert.h"
#include "runtime/load_model.h"
#include "storage/fault_injection.h"
#include "storage/store_format.h"
#include "testing/test_data.h"

namespace strata::runtime {
namespace {

const char* kFixtures[] = {"opt_pre_ln",           "opt_post_ln_proj",        "llama_gqa_llama3",
                           "qwen2_bias_tied",      "mistral_window_head_dim", "llama_bf16",
                           "mixtral_window_fused", "qwen3_moe_sparse_step"};

// Logits [T, vocab] at every position of two prompts, laid end to end.
std::vector<float> all_logits(compute::Transformer& m) {
  const std::vector<std::vector<int32_t>> prompts = {{1, 5, 9, 13, 2, 7, 100, 199},
                                                     {3, 4, 150, 6}};
  std::vector<float> out;
  for (const auto& p : prompts) {
    auto cache = m.make_kv_cache(1, static_cast<int32_t>(p.size()));
    STRATA_CHECK(cache.is_ok());
    compute::TokenBatch batch;
    batch.add_sequence(0, 0, p);
    std::vector<int32_t> rows(p.size());
    for (size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<int32_t>(i);
    auto logits = m.forward(batch, *cache, rows);
    STRATA_CHECK(logits.is_ok(), logits.status().to_string());
    out.insert(out.end(), logits->data<float>(), logits->data<float>() + logits->numel());
  }
  return out;
}

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

class Converted : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    hf_ = testing::test_data_dir() / "fixtures" / GetParam();
    tmp_ = testing::make_temp_dir("strata-convert");
    auto ctx = make_context({});
    ASSERT_TRUE(ctx.is_ok());
    ctx_ = std::move(ctx).value();
    ctx_->logger.set_level(LogLevel::kWarn);
    auto io = storage::make_io_backend({}, ctx_->logger);
    ASSERT_TRUE(io.is_ok());
    io_ = std::move(io).value();
  }
  void TearDown() override { std::filesystem::remove_all(tmp_); }

  std::filesystem::path convert(const std::string& compress) {
    const auto out = tmp_ / compress;
    auto r = convert_model(hf_, out, {compress}, *io_, ctx_->logger);
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    return out;
  }
  std::vector<float> logits_of(const std::filesystem::path& dir) {
    auto m = load_model_dir(*ctx_, dir);
    STRATA_CHECK(m.is_ok(), m.status().to_string());
    return all_logits(**m);
  }

  std::filesystem::path hf_, tmp_;
  std::unique_ptr<Context> ctx_;
  std::unique_ptr<storage::IoBackend> io_;
};

TEST_P(Converted, StoredAsIsGivesBitwiseIdenticalLogits) {
  const auto store = convert("none");
  EXPECT_TRUE(std::filesystem::exists(store / "config.json"));
  EXPECT_TRUE(bitwise_equal(logits_of(store), logits_of(hf_)));
}

TEST_P(Converted, Int4GivesTheLogitsOfTheReferenceDequantisedWeights) {
  const auto store = convert("int4-g64");
  // Reference: the safetensors weights passed through quantise + reference dequantise.
  auto files = model::open_model_dir(hf_);
  ASSERT_TRUE(files.is_ok());
  auto source = make_int4_roundtrip_source(std::move(files->weights));
  auto weights = compute::load_weights(files->config, *source, *ctx_->backend);
  ASSERT_TRUE(weights.is_ok()) << weights.status().to_string();
  compute::Transformer reference(files->config, *ctx_->backend, std::move(weights).value());
  const std::vector<float> want = all_logits(reference);
  const std::vector<float> got = logits_of(store);
  EXPECT_TRUE(bitwise_equal(got, want));
  // And the compression really happened (the unquantised model gives other logits).
  EXPECT_FALSE(bitwise_equal(got, logits_of(hf_)));
  // Exactly the layers' linear weights (whose rows are whole groups of 64) are int4, a router
  // excepted; everything else is stored as it was.
  std::ifstream in(store / "manifest.json");
  auto manifest = nlohmann::json::parse(in);
  int int4 = 0;
  for (const auto& t : manifest["tensors"]) {
    const std::string name = t["name"];
    const bool linear = name.starts_with("layers.") && name.ends_with(".weight") &&
                        name.find("norm") == std::string::npos && name.find("router") == std::string::npos &&
                        t["shape"][1].get<int64_t>() % 64 == 0;
    EXPECT_EQ(t["compression"], linear ? "int4-g64" : "none") << name;
    int4 += linear;
  }
  EXPECT_GE(int4, 2 * 6);  // two layers, at least q k v o + two MLP matrices each
}

INSTANTIATE_TEST_SUITE_P(Fixtures, Converted, ::testing::ValuesIn(kFixtures),
                         [](const auto& info) { return std::string(info.param); });

TEST(ConvertFaults, DamagedOrForeignStoreNeverProducesLogits) {
  const auto hf = testing::test_data_dir() / "fixtures" / "llama_gqa_llama3";
  const auto tmp = testing::make_temp_dir("strata-convert-faults");
  auto ctx = make_context({});
  ASSERT_TRUE(ctx.is_ok());
  (*ctx)->logger.set_level(LogLevel::kQuiet);
  auto io = storage::make_io_backend({}, (*ctx)->logger);
  ASSERT_TRUE(io.is_ok());
  const auto store = tmp / "store";
  ASSERT_TRUE(convert_model(hf, store, {"none"}, **io, (*ctx)->logger).is_ok());

  // A flipped bit in a layer file: loading fails with a checksum error naming the tensor.
  const auto layer = store / "layer.001.bin";
  std::string bytes;
  {
    std::ifstream in(layer, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  bytes[5000] ^= 0x01;
  {
    std::ofstream out(layer, std::ios::binary | std::ios::trunc);
    out << bytes;
  }
  auto m = load_model_dir(**ctx, store);
  ASSERT_FALSE(m.is_ok());
  EXPECT_EQ(m.status().code(), StatusCode::kCorrupt);
  EXPECT_NE(m.status().message().find("layer.001.bin: tensor 'layers.1."), std::string::npos)
      << m.status().message();
  bytes[5000] ^= 0x01;
  {
    std::ofstream out(layer, std::ios::binary | std::ios::trunc);
    out << bytes;
  }
  ASSERT_TRUE(load_model_dir(**ctx, store).is_ok());

  // A store from another format version.
  std::ifstream in(store / "manifest.json");
  auto j = nlohmann::json::parse(in);
  j["format_version"] = 7;
  std::ofstream(store / "manifest.json", std::ios::trunc) << j.dump();
  auto v = load_model_dir(**ctx, store);
  EXPECT_EQ(v.status().code(), StatusCode::kUnsupported);
  std::filesystem::remove_all(tmp);
}

TEST(ConvertFaults, FailedConversionLeavesNothingBehind) {
  const auto hf = testing::test_data_dir() / "fixtures" / "opt_pre_ln";
  const auto tmp = testing::make_temp_dir("strata-convert-enospc");
  Logger log(LogLevel::kQuiet);
  storage::FaultInjectingBackend io(storage::make_thread_io_backend(4));
  io.add_rule({storage::FaultKind::kError, storage::IoOpKind::kWrite, ENOSPC, "layer.001.bin", 0,
               UINT64_MAX, 1});
  auto r = convert_model(hf, tmp / "store", {"int4-g64"}, io, log);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().error_number(), ENOSPC);
  EXPECT_TRUE(std::filesystem::is_empty(tmp));  // no store, no partial directory
  // Bad options are refused before anything is written.
  EXPECT_EQ(convert_model(hf, tmp / "store", {"int3"}, io, log).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_TRUE(std::filesystem::is_empty(tmp));
  std::filesystem::remove_all(tmp);
}

TEST(ConvertFaults, Int4AppliesToLayerLinearWeightsOnly) {
  EXPECT_TRUE(int4_applies({"layers.3.q.weight", {}, {64, 64}}));
  EXPECT_TRUE(int4_applies({"layers.0.down.weight", {}, {64, 128}}));
  EXPECT_FALSE(int4_applies({"layers.0.down.weight", {}, {64, 96}}));  // 96 is not 64k
  EXPECT_FALSE(int4_applies({"layers.0.q.bias", {}, {64}}));
  EXPECT_FALSE(int4_applies({"embed.tokens", {}, {200, 64}}));
  EXPECT_FALSE(int4_applies({"lm_head.weight", {}, {200, 64}}));
  EXPECT_TRUE(int4_applies({"layers.1.experts.7.up.weight", {}, {32, 64}}));
  EXPECT_FALSE(int4_applies({"layers.1.router.weight", {}, {8, 64}}));
}

}  // namespace
}  // namespace strata::runtime
