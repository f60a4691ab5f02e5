#include "model/weight_source.h"

#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <nlohmann/json.hpp>

#include "model/model_dir.h"
#include "model/safetensors_writer.h"
#include "model/shapes.h"
#include "testing/test_data.h"

namespace strata::model {
namespace {

using strata::testing::f32_blob;
using strata::testing::TensorBlob;
using strata::testing::write_safetensors;

// A tiny OPT (2 layers, hidden 8) whose checkpoint the tests write by hand.
nlohmann::json tiny_opt_json() {
  return nlohmann::json::parse(R"({"model_type": "opt", "vocab_size": 32, "hidden_size": 8,
      "ffn_dim": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
      "max_position_embeddings": 16, "torch_dtype": "float32"})");
}

ModelConfig tiny_opt() {
  Result<ModelConfig> c = parse_config(tiny_opt_json(), "tiny");
  EXPECT_TRUE(c.is_ok()) << c.status().to_string();
  return c.value();
}

// One blob per weight, stored under hf_names[hf_index] (or a name with `prefix` replaced).
std::vector<TensorBlob> blobs_for(const ModelConfig& c, size_t hf_index = 0) {
  std::vector<TensorBlob> out;
  float base = 0;
  for (const WeightSpec& s : model_weights(c)) {
    out.push_back(f32_blob(s.hf_names[std::min(hf_index, s.hf_names.size() - 1)], s.shape, base));
    base += 1000;
  }
  return out;
}

class WeightSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = strata::testing::make_temp_dir("strata-weights");
    std::ofstream(dir_ / "config.json") << tiny_opt_json().dump(2);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::filesystem::path dir_;
};

TEST_F(WeightSourceTest, SingleFileCheckpoint) {
  ModelConfig c = tiny_opt();
  write_safetensors(dir_ / "model.safetensors", blobs_for(c));
  Result<ModelFiles> m = open_model_dir(dir_);
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  EXPECT_EQ(m->config.hidden_size, 8);
  std::vector<WeightSpec> specs = model_weights(m->config);
  Result<Tensor> t = m->weights->load(specs[1]);  // embed.positions, base 1000
  ASSERT_TRUE(t.is_ok()) << t.status().to_string();
  EXPECT_EQ(t->shape(), (Shape{18, 8}));
  EXPECT_EQ(t->data<float>()[5], 1005.0f);
}

TEST_F(WeightSourceTest, OlderDecoderPrefix) {
  write_safetensors(dir_ / "model.safetensors", blobs_for(tiny_opt(), 1));  // "decoder.*"
  Result<ModelFiles> m = open_model_dir(dir_);
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  EXPECT_TRUE(m->weights->load(model_weights(m->config)[0]).is_ok());
}

TEST_F(WeightSourceTest, MissingTensor) {
  ModelConfig c = tiny_opt();
  std::vector<TensorBlob> blobs = blobs_for(c);
  blobs.erase(blobs.begin() + 5);
  write_safetensors(dir_ / "model.safetensors", blobs);
  const WeightSpec missing = model_weights(c)[5];
  auto source = open_safetensors_source(dir_);
  ASSERT_TRUE(source.is_ok()) << source.status().to_string();
  for (Status s : {(*source)->check(model_weights(c)), (*source)->load(missing).status()}) {
    EXPECT_EQ(s.code(), StatusCode::kNotFound);
    EXPECT_NE(s.message().find("'" + missing.name + "'"), std::string::npos) << s.message();
    EXPECT_NE(s.message().find(missing.hf_names[0]), std::string::npos) << s.message();
    EXPECT_NE(s.message().find(missing.hf_names[1]), std::string::npos) << s.message();
    EXPECT_NE(s.message().find(dir_.string()), std::string::npos) << s.message();
  }
  Result<ModelFiles> m = open_model_dir(dir_);
  ASSERT_FALSE(m.is_ok());
  EXPECT_NE(m.status().message().find(missing.name), std::string::npos) << m.status().message();
}

TEST_F(WeightSourceTest, WrongShape) {
  ModelConfig c = tiny_opt();
  std::vector<TensorBlob> blobs = blobs_for(c);
  blobs[3] = f32_blob(blobs[3].name, {8, 7});  // layers.0.attn_norm.bias should be [8]
  write_safetensors(dir_ / "model.safetensors", blobs);
  const WeightSpec spec = model_weights(c)[3];
  auto source = open_safetensors_source(dir_);
  ASSERT_TRUE(source.is_ok());
  Status s = (*source)->load(spec).status();
  EXPECT_EQ(s.code(), StatusCode::kCorrupt);
  for (const std::string& frag :
       {spec.hf_names[0], spec.name, (dir_ / "model.safetensors").string(), std::string("[8, 7]"),
        shape_string(spec.shape)}) {
    EXPECT_NE(s.message().find(frag), std::string::npos) << s.message() << " / " << frag;
  }
  EXPECT_EQ((*source)->check(model_weights(c)).code(), StatusCode::kCorrupt);
}

// A Mixtral layer's experts fused as transformers 5 may write them: experts.gate_up_proj
// [experts, 2 * ffn, hidden] (gate rows first) and experts.down_proj [experts, hidden, ffn].
TEST_F(WeightSourceTest, FusedExpertsAreReadAsSlices) {
  ModelConfig c;
  c.model_type = "mixtral";
  c.family = Family::kLlama;
  c.vocab_size = 8;
  c.hidden_size = 4;
  c.num_layers = 1;
  c.num_heads = 1;
  c.num_kv_heads = 1;
  c.head_dim = 4;
  c.num_experts = 3;
  c.experts_per_token = 2;
  c.expert_intermediate_size = c.intermediate_size = 2;
  const int64_t E = 3, F = 2, H = 4;
  write_safetensors(dir_ / "model.safetensors",
                    {f32_blob("model.layers.0.mlp.experts.gate_up_proj", {E, 2 * F, H}),
                     f32_blob("model.layers.0.mlp.experts.down_proj", {E, H, F}, 1000)});
  auto source = open_safetensors_source(dir_);
  ASSERT_TRUE(source.is_ok()) << source.status().to_string();
  const std::vector<WeightSpec> layer = layer_weights(c, 0);
  auto spec = [&](const std::string& name) {
    for (const WeightSpec& w : layer)
      if (w.name == name) return w;
    ADD_FAILURE() << name;
    return WeightSpec{};
  };
  for (int64_t e = 0; e < E; ++e) {
    const std::string p = "layers.0.experts." + std::to_string(e) + ".";
    auto gate = (*source)->load(spec(p + "gate.weight"));
    auto up = (*source)->load(spec(p + "up.weight"));
    auto down = (*source)->load(spec(p + "down.weight"));
    ASSERT_TRUE(gate.is_ok() && up.is_ok() && down.is_ok()) << gate.status().to_string();
    ASSERT_EQ(gate->shape(), (Shape{F, H}));
    ASSERT_EQ(down->shape(), (Shape{H, F}));
    for (int64_t r = 0; r < F; ++r)
      for (int64_t k = 0; k < H; ++k) {
        EXPECT_EQ(gate->data<float>()[r * H + k], float((e * 2 * F + r) * H + k));
        EXPECT_EQ(up->data<float>()[r * H + k], float((e * 2 * F + F + r) * H + k));
      }
    for (int64_t i = 0; i < H * F; ++i) EXPECT_EQ(down->data<float>()[i], float(1000 + e * H * F + i));
  }
  // A fused tensor of the wrong shape names the tensor and both shapes.
  c.num_experts = 4;
  Status s = (*source)->check(layer_weights(c, 0));
  EXPECT_EQ(s.code(), StatusCode::kNotFound);  // the router comes first and is absent
  WeightSpec gate = layer_weights(c, 0)[7];
  ASSERT_EQ(gate.name, "layers.0.experts.0.gate.weight");
  s = (*source)->load(gate).status();
  EXPECT_EQ(s.code(), StatusCode::kCorrupt);
  for (const char* frag : {"mlp.experts.gate_up_proj", "[3, 4, 4]", "[4, 4, 4]"})
    EXPECT_NE(s.message().find(frag), std::string::npos) << s.message();
}

TEST_F(WeightSourceTest, NonFloatWeightIsRejected) {
  ModelConfig c = tiny_opt();
  std::vector<TensorBlob> blobs = blobs_for(c);
  blobs[0].dtype = "I32";
  write_safetensors(dir_ / "model.safetensors", blobs);
  auto source = open_safetensors_source(dir_);
  ASSERT_TRUE(source.is_ok());
  Status s = (*source)->check(model_weights(c));
  EXPECT_EQ(s.code(), StatusCode::kUnsupported);
  EXPECT_NE(s.message().find("I32"), std::string::npos);
}

TEST_F(WeightSourceTest, ShardedCheckpoint) {
  ModelConfig c = tiny_opt();
  std::vector<TensorBlob> blobs = blobs_for(c);
  std::vector<TensorBlob> first(blobs.begin(), blobs.begin() + 10),
      second(blobs.begin() + 10, blobs.end());
  write_safetensors(dir_ / "model-00001-of-00002.safetensors", first);
  write_safetensors(dir_ / "model-00002-of-00002.safetensors", second);
  nlohmann::json index = {{"metadata", {{"total_size", 0}}},
                          {"weight_map", nlohmann::json::object()}};
  for (const auto& b : first) index["weight_map"][b.name] = "model-00001-of-00002.safetensors";
  for (const auto& b : second) index["weight_map"][b.name] = "model-00002-of-00002.safetensors";
  std::ofstream(dir_ / "model.safetensors.index.json") << index.dump(2);

  Result<ModelFiles> m = open_model_dir(dir_);
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  std::vector<WeightSpec> specs = model_weights(c);
  Result<Tensor> t = m->weights->load(specs.back());  // in the second shard
  ASSERT_TRUE(t.is_ok()) << t.status().to_string();
  EXPECT_EQ(t->data<float>()[0], 1000.0f * float(specs.size() - 1));

  // The index names a tensor its shard does not hold.
  index["weight_map"][first[0].name] = "model-00002-of-00002.safetensors";
  std::ofstream(dir_ / "model.safetensors.index.json") << index.dump(2);
  Result<std::unique_ptr<WeightSource>> bad = open_safetensors_source(dir_);
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find(first[0].name), std::string::npos)
      << bad.status().message();
  EXPECT_NE(bad.status().message().find("model-00002-of-00002.safetensors"), std::string::npos);

  // The index names a shard that does not exist.
  index["weight_map"][first[0].name] = "model-00003-of-00002.safetensors";
  std::ofstream(dir_ / "model.safetensors.index.json") << index.dump(2);
  bad = open_safetensors_source(dir_);
  ASSERT_FALSE(bad.is_ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kNotFound);
  EXPECT_NE(bad.status().message().find("model-00003-of-00002.safetensors"), std::string::npos);

  // A shard outside the directory is refused.
  index["weight_map"][first[0].name] = "../elsewhere.safetensors";
  std::ofstream(dir_ / "model.safetensors.index.json") << index.dump(2);
  EXPECT_FALSE(open_safetensors_source(dir_).is_ok());

  std::ofstream(dir_ / "model.safetensors.index.json") << R"({"weights": {}})";
  bad = open_safetensors_source(dir_);
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("weight_map"), std::string::npos);
}

TEST_F(WeightSourceTest, MissingDirOrConfig) {
  Result<ModelFiles> m = open_model_dir(dir_ / "nowhere");
  ASSERT_FALSE(m.is_ok());
  EXPECT_EQ(m.status().code(), StatusCode::kNotFound);
  EXPECT_NE(m.status().message().find("nowhere"), std::string::npos);

  std::filesystem::remove(dir_ / "config.json");
  m = open_model_dir(dir_);
  ASSERT_FALSE(m.is_ok());
  EXPECT_EQ(m.status().code(), StatusCode::kNotFound);
  EXPECT_NE(m.status().message().find("config.json"), std::string::npos);

  std::ofstream(dir_ / "config.json") << tiny_opt_json().dump();
  m = open_model_dir(dir_);  // config but no weights
  ASSERT_FALSE(m.is_ok());
  EXPECT_NE(m.status().message().find("model.safetensors"), std::string::npos);
}

TEST_F(WeightSourceTest, LayerCountMustMatchTheWeights) {
  // Weights of 2 layers, a config of 1: the error names both counts.
  write_safetensors(dir_ / "model.safetensors", blobs_for(tiny_opt()));
  for (int layers : {1, 3}) {
    nlohmann::json j = tiny_opt_json();
    j["num_hidden_layers"] = layers;
    std::ofstream(dir_ / "config.json", std::ios::trunc) << j.dump();
    Result<ModelFiles> m = open_model_dir(dir_);
    ASSERT_FALSE(m.is_ok()) << layers;
    EXPECT_EQ(m.status().code(), StatusCode::kCorrupt);
    for (const std::string& f : {"num_hidden_layers is " + std::to_string(layers), std::string("hold 2 layers"),
                                 dir_.string()})
      EXPECT_NE(m.status().message().find(f), std::string::npos) << m.status().message();
  }
}

TEST_F(WeightSourceTest, AHugeLayerCountIsRefusedBeforeAnythingIsSized) {
  write_safetensors(dir_ / "model.safetensors", blobs_for(tiny_opt()));
  for (double layers : {1e7, 1e9, 2147483648.0}) {
    nlohmann::json j = tiny_opt_json();
    j["num_hidden_layers"] = layers;
    std::ofstream(dir_ / "config.json", std::ios::trunc) << j.dump();
    const auto t0 = std::chrono::steady_clock::now();
    Result<ModelFiles> m = open_model_dir(dir_);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
    ASSERT_FALSE(m.is_ok());
    EXPECT_NE(m.status().message().find("num_hidden_layers"), std::string::npos) << m.status().message();
  }
}

TEST_F(WeightSourceTest, OnlyRegularFilesAreOpenedAsWeights) {
  ASSERT_EQ(::mkfifo((dir_ / "model.safetensors").c_str(), 0644), 0);
  const auto t0 = std::chrono::steady_clock::now();
  Result<ModelFiles> m = open_model_dir(dir_);  // must not wait for a writer
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  ASSERT_FALSE(m.is_ok());
  EXPECT_NE(m.status().message().find("FIFO"), std::string::npos) << m.status().message();
  EXPECT_NE(m.status().message().find("model.safetensors"), std::string::npos) << m.status().message();
  std::filesystem::remove(dir_ / "model.safetensors");
  std::filesystem::create_directory(dir_ / "model.safetensors");
  m = open_model_dir(dir_);
  ASSERT_FALSE(m.is_ok());
  EXPECT_NE(m.status().message().find("directory"), std::string::npos) << m.status().message();
}

TEST_F(WeightSourceTest, NumbersOutOfRangeInTheIndexAreErrors) {
  ModelConfig c = tiny_opt();
  write_safetensors(dir_ / "model-00001-of-00001.safetensors", blobs_for(c));
  std::ofstream(dir_ / "model.safetensors.index.json")
      << R"({"metadata": {"total_size": 1e400}, "weight_map": {}})";
  Result<std::unique_ptr<WeightSource>> bad = open_safetensors_source(dir_);
  ASSERT_FALSE(bad.is_ok());
  for (const char* f : {"model.safetensors.index.json", "'metadata.total_size'", "1e400"})
    EXPECT_NE(bad.status().message().find(f), std::string::npos) << bad.status().message();
}

TEST(SyntheticSource, DeterministicAndVaried) {
  Result<ModelConfig> c = named_shape("opt-125m");
  ASSERT_TRUE(c.is_ok());
  std::vector<WeightSpec> specs = layer_weights(*c, 0);
  const WeightSpec& q = specs[2];  // layers.0.q.weight [768, 768]
  ASSERT_EQ(q.name, "layers.0.q.weight");
  auto a = make_synthetic_source(7, DType::kF32);
  auto b = make_synthetic_source(7, DType::kF32);
  auto other_seed = make_synthetic_source(8, DType::kF32);
  EXPECT_TRUE(a->check(model_weights(*c)).is_ok());

  Tensor t1 = a->load(q).value(), t2 = b->load(q).value();
  ASSERT_EQ(t1.shape(), q.shape);
  EXPECT_EQ(std::memcmp(t1.raw(), t2.raw(), t1.bytes()), 0);
  Tensor t3 = other_seed->load(q).value();
  EXPECT_NE(std::memcmp(t1.raw(), t3.raw(), t1.bytes()), 0);
  WeightSpec k = specs[4];
  ASSERT_EQ(k.name, "layers.0.k.weight");
  EXPECT_NE(std::memcmp(t1.raw(), a->load(k).value().raw(), t1.bytes()), 0);

  // Linear weights lie in U(-1/sqrt(in), 1/sqrt(in)) and are not constant.
  const float bound = 1.0f / std::sqrt(768.0f);
  const float* p = t1.data<float>();
  float lo = p[0], hi = p[0];
  double sum = 0;
  for (int64_t i = 0; i < t1.numel(); ++i) {
    lo = std::min(lo, p[i]);
    hi = std::max(hi, p[i]);
    sum += p[i];
  }
  EXPECT_GE(lo, -bound);
  EXPECT_LE(hi, bound);
  EXPECT_LT(lo, -0.9f * bound);
  EXPECT_GT(hi, 0.9f * bound);
  EXPECT_NEAR(sum / double(t1.numel()), 0.0, 0.01 * bound);

  // Norm weights are near one but not all ones; biases are small.
  Tensor norm = a->load(specs[0]).value();
  ASSERT_EQ(specs[0].name, "layers.0.attn_norm.weight");
  bool all_ones = true;
  for (int64_t i = 0; i < norm.numel(); ++i) {
    EXPECT_NEAR(norm.data<float>()[i], 1.0f, 0.11f);
    all_ones = all_ones && norm.data<float>()[i] == 1.0f;
  }
  EXPECT_FALSE(all_ones);
  Tensor bias = a->load(specs[3]).value();
  ASSERT_EQ(specs[3].name, "layers.0.q.bias");
  for (int64_t i = 0; i < bias.numel(); ++i) EXPECT_LE(std::fabs(bias.data<float>()[i]), 0.05f);
}

TEST(SyntheticSource, OtherDtypesMatchF32) {
  WeightSpec spec{"layers.0.fc1.weight", {"x"}, {64, 32}, {}};
  Tensor f32 = make_synthetic_source(1, DType::kF32)->load(spec).value();
  for (DType d : {DType::kF16, DType::kBF16}) {
    Tensor t = make_synthetic_source(1, d)->load(spec).value();
    EXPECT_EQ(t.dtype(), d);
    Tensor back = to_f32(t);
    for (int64_t i = 0; i < t.numel(); ++i) {
      EXPECT_NEAR(back.data<float>()[i], f32.data<float>()[i], 0.01f);
    }
  }
  EXPECT_FALSE(make_synthetic_source(1, DType::kF32)->load({"bad", {}, {0, 3}, {}}).is_ok());
}

}  // namespace
}  // namespace strata::model
