#include "model/config.h"

#include <algorithm>
#include <cmath>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/json_read.h"

namespace strata::model {
namespace {

using nlohmann::json;

// Dimensions above this are surely a typo, and keeping them small keeps every product of two
// dimensions (and a dtype size) inside int64.
constexpr int64_t kMaxDim = int64_t{1} << 31;
// The deepest models have a few hundred layers; a count past this is a typo or an attack, and
// planning for it would take hours before anything could check it against the weights.
constexpr int64_t kMaxLayers = 4096;
// Published mixtures of experts have up to a few hundred experts a layer; a count past this, or
// past kMaxExpertMatrices over all layers, is a typo or an attack (each expert is three weights
// the loader lists).
constexpr int64_t kMaxExperts = 1024;
constexpr int64_t kMaxExpertLayers = int64_t{1} << 20;  // layers x experts
// A config.json is a few KiB; anything past this is not one.
constexpr uint64_t kMaxConfigBytes = 16 << 20;

std::string show(const json& v) {
  std::string s = v.dump();
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

// Reads typed fields of one JSON object. Absent and null fields count as "not given"; every error
// names the source and the field (with its path, e.g. 'rope_scaling.factor').
class Fields {
 public:
  Fields(const json& obj, const std::string& source, std::string prefix = "")
      : obj_(obj), source_(source), prefix_(std::move(prefix)) {}

  bool present(const char* f) const { return obj_.contains(f); }
  bool given(const char* f) const {
    auto it = obj_.find(f);
    return it != obj_.end() && !it->is_null();
  }
  const json& at(const char* f) const { return obj_.at(f); }
  std::string path(const char* f) const { return prefix_ + f; }

  Status bad(const char* f, const std::string& expected) const {
    return invalid_argument(source_ + ": field '" + path(f) + "' must be " + expected + " (got " +
                            show(obj_.at(f)) + ")");
  }
  Status missing(const char* f, const std::string& expected) const {
    return invalid_argument(source_ + ": missing field '" + path(f) + "' (expected " + expected +
                            ")");
  }

  // Any integer-valued number (7 or 7.0) in [lo, kMaxDim].
  Result<int64_t> int_in_range(const char* f, int64_t lo, const std::string& expected) const {
    const json& v = obj_.at(f);
    int64_t out = 0;
    if (v.is_number_unsigned()) {
      if (v.get<uint64_t>() > uint64_t(kMaxDim)) return bad(f, expected);
      out = int64_t(v.get<uint64_t>());
    } else if (v.is_number_integer()) {
      out = v.get<int64_t>();
    } else if (v.is_number_float()) {
      double d = v.get<double>();
      if (!std::isfinite(d) || d != std::floor(d) || std::fabs(d) > double(kMaxDim))
        return bad(f, expected);
      out = int64_t(d);
    } else {
      return bad(f, expected);
    }
    if (out < lo || out > kMaxDim) return bad(f, expected);
    return out;
  }

  Result<int64_t> layer_count(const char* f) const {
    if (!given(f)) return missing(f, "a positive integer");
    STRATA_ASSIGN_OR_RETURN(int64_t n, int_in_range(f, 1, "a positive integer"));
    if (n > kMaxLayers) return bad(f, "a layer count of at most " + std::to_string(kMaxLayers));
    return n;
  }
  Result<int64_t> positive_int(const char* f) const {
    if (!given(f)) return missing(f, "a positive integer");
    return int_in_range(f, 1, "a positive integer");
  }
  Result<int64_t> positive_int_or(const char* f, int64_t def) const {
    if (!given(f)) return def;
    return int_in_range(f, 1, "a positive integer");
  }
  Result<int64_t> non_negative_int_or(const char* f, int64_t def) const {
    if (!given(f)) return def;
    return int_in_range(f, 0, "a non-negative integer");
  }
  Result<std::optional<int64_t>> optional_positive_int(const char* f) const {
    if (!given(f)) return std::optional<int64_t>();
    STRATA_ASSIGN_OR_RETURN(int64_t v, int_in_range(f, 1, "a positive integer or null"));
    return std::optional<int64_t>(v);
  }

  Result<bool> boolean_or(const char* f, bool def) const {
    if (!given(f)) return def;
    if (!obj_.at(f).is_boolean()) return bad(f, "true or false");
    return obj_.at(f).get<bool>();
  }

  Result<double> positive_number(const char* f) const {
    if (!given(f)) return missing(f, "a positive number");
    const json& v = obj_.at(f);
    if (!v.is_number() || !(v.get<double>() > 0) || !std::isfinite(v.get<double>())) {
      return bad(f, "a positive number");
    }
    return v.get<double>();
  }
  Result<double> positive_number_or(const char* f, double def) const {
    if (!given(f)) return def;
    return positive_number(f);
  }

  Result<std::optional<std::string>> optional_string(const char* f) const {
    if (!given(f)) return std::optional<std::string>();
    if (!obj_.at(f).is_string()) return bad(f, "a string");
    return std::optional<std::string>(obj_.at(f).get<std::string>());
  }

  // A token id: absent gives `def`; null gives none. Ids are non-negative, except that a negative
  // pad id (old LLaMA conversions write -1) means "no pad token" when `negative_is_none`.
  Result<std::optional<int64_t>> token_id(const char* f, std::optional<int64_t> def,
                                          bool negative_is_none = false) const {
    auto it = obj_.find(f);
    if (it == obj_.end()) return def;
    if (it->is_null()) return std::optional<int64_t>();
    if (negative_is_none && it->is_number_integer() && !it->is_number_unsigned() && it->get<int64_t>() < 0) {
      return std::optional<int64_t>();
    }
    STRATA_ASSIGN_OR_RETURN(int64_t v, int_in_range(f, 0, "a non-negative token id or null"));
    return std::optional<int64_t>(v);
  }

  const std::string& source() const { return source_; }

 private:
  const json& obj_;
  const std::string& source_;
  std::string prefix_;
};

Status unsupported_value(const Fields& fs, const char* f, const std::string& value,
                         const std::string& supported) {
  return unsupported(fs.source() + ": field '" + fs.path(f) + "' is \"" + value +
                     "\", which strata does not support (supported: " + supported + ")");
}

// eos_token_id: an int, a list of ints, or null. Absent gives `def`.
Result<std::vector<int64_t>> parse_eos(const Fields& fs, std::optional<int64_t> def) {
  const char* f = "eos_token_id";
  std::vector<int64_t> out;
  if (!fs.given(f)) {
    // Absent means the architecture's default; null means "none".
    if (!fs.present(f) && def) out.push_back(*def);
    return out;
  }
  const json& v = fs.at(f);
  if (v.is_array()) {
    for (const json& e : v) {
      const std::optional<int64_t> id = json_to_int64(e);
      if (!e.is_number_integer() || !id || *id < 0) {
        return fs.bad(f, "a token id, a list of token ids, or null");
      }
      out.push_back(*id);
    }
    return out;
  }
  STRATA_ASSIGN_OR_RETURN(std::optional<int64_t> id, fs.token_id(f, std::nullopt));
  if (id) out.push_back(*id);
  return out;
}

Result<DType> parse_dtype(const Fields& fs) {
  // transformers 5 writes "dtype"; older versions "torch_dtype".
  const char* f = fs.given("dtype") ? "dtype" : "torch_dtype";
  STRATA_ASSIGN_OR_RETURN(std::optional<std::string> s, fs.optional_string(f));
  if (!s) return DType::kF32;
  if (*s == "float32") return DType::kF32;
  if (*s == "float16") return DType::kF16;
  if (*s == "bfloat16") return DType::kBF16;
  return unsupported_value(fs, f, *s, "float32, float16, bfloat16");
}

// One RoPE parameter object: either the classic `rope_scaling` or transformers 5's
// `rope_parameters` (which also holds rope_theta).
Status parse_rope_object(const json& obj, const std::string& source, const std::string& name,
                         bool type_required, RopeConfig& rope) {
  Fields fs(obj, source, name + ".");
  std::optional<std::string> type;
  const char* type_field = fs.given("rope_type") ? "rope_type" : "type";
  STRATA_ASSIGN_OR_RETURN(type, fs.optional_string(type_field));
  if (!type) {
    if (type_required) {
      return invalid_argument(source + ": missing field '" + name +
                              ".rope_type' (expected default, linear or llama3)");
    }
    type = "default";
  }
  if (fs.given("rope_theta")) {
    STRATA_ASSIGN_OR_RETURN(rope.theta, fs.positive_number("rope_theta"));
  }
  if (*type == "default") {
    rope.type = RopeType::kDefault;
  } else if (*type == "linear") {
    rope.type = RopeType::kLinear;
    STRATA_ASSIGN_OR_RETURN(rope.factor, fs.positive_number("factor"));
  } else if (*type == "llama3") {
    rope.type = RopeType::kLlama3;
    STRATA_ASSIGN_OR_RETURN(rope.factor, fs.positive_number("factor"));
    STRATA_ASSIGN_OR_RETURN(rope.low_freq_factor, fs.positive_number("low_freq_factor"));
    STRATA_ASSIGN_OR_RETURN(rope.high_freq_factor, fs.positive_number("high_freq_factor"));
    if (!fs.given("original_max_position_embeddings")) {
      return fs.missing("original_max_position_embeddings", "a positive integer");
    }
    STRATA_ASSIGN_OR_RETURN(rope.original_max_position_embeddings,
                            fs.positive_int("original_max_position_embeddings"));
    if (!(rope.high_freq_factor > rope.low_freq_factor)) {
      return invalid_argument(source + ": field '" + name +
                              ".high_freq_factor' must be greater than low_freq_factor (got " +
                              std::to_string(rope.high_freq_factor) +
                              " <= " + std::to_string(rope.low_freq_factor) + ")");
    }
  } else {
    return unsupported_value(fs, type_field, *type, "default, linear, llama3");
  }
  return Status::ok();
}

Result<RopeConfig> parse_rope(const Fields& fs, const json& j) {
  RopeConfig rope;
  STRATA_ASSIGN_OR_RETURN(rope.theta, fs.positive_number_or("rope_theta", 10000.0));
  if (fs.given("rope_parameters")) {
    const json& p = j.at("rope_parameters");
    if (!p.is_object()) return fs.bad("rope_parameters", "an object");
    STRATA_RETURN_IF_ERROR(parse_rope_object(p, fs.source(), "rope_parameters", false, rope));
  } else if (fs.given("rope_scaling")) {
    const json& p = j.at("rope_scaling");
    if (!p.is_object()) return fs.bad("rope_scaling", "an object or null");
    STRATA_RETURN_IF_ERROR(parse_rope_object(p, fs.source(), "rope_scaling", true, rope));
  }
  return rope;
}

Status check_activation(const Fields& fs, const char* f, const char* want) {
  STRATA_ASSIGN_OR_RETURN(std::optional<std::string> act, fs.optional_string(f));
  if (act && *act != want) return unsupported_value(fs, f, *act, want);
  return Status::ok();
}

Status parse_opt(const Fields& fs, ModelConfig& c) {
  c.family = Family::kOpt;
  STRATA_ASSIGN_OR_RETURN(c.vocab_size, fs.positive_int("vocab_size"));
  STRATA_ASSIGN_OR_RETURN(c.hidden_size, fs.positive_int("hidden_size"));
  STRATA_ASSIGN_OR_RETURN(c.intermediate_size, fs.positive_int("ffn_dim"));
  STRATA_ASSIGN_OR_RETURN(c.num_layers, fs.layer_count("num_hidden_layers"));
  STRATA_ASSIGN_OR_RETURN(c.num_heads, fs.positive_int("num_attention_heads"));
  STRATA_ASSIGN_OR_RETURN(c.max_position_embeddings, fs.positive_int("max_position_embeddings"));
  STRATA_ASSIGN_OR_RETURN(c.word_embed_proj_dim,
                          fs.positive_int_or("word_embed_proj_dim", c.hidden_size));
  STRATA_ASSIGN_OR_RETURN(c.do_layer_norm_before, fs.boolean_or("do_layer_norm_before", true));
  STRATA_ASSIGN_OR_RETURN(bool removed, fs.boolean_or("_remove_final_layer_norm", false));
  c.final_layer_norm = c.do_layer_norm_before && !removed;
  STRATA_ASSIGN_OR_RETURN(c.enable_bias, fs.boolean_or("enable_bias", true));
  STRATA_ASSIGN_OR_RETURN(c.layer_norm_elementwise_affine,
                          fs.boolean_or("layer_norm_elementwise_affine", true));
  STRATA_RETURN_IF_ERROR(check_activation(fs, "activation_function", "relu"));
  if (c.hidden_size % c.num_heads != 0) {
    return invalid_argument(
        fs.source() + ": field 'hidden_size' (" + std::to_string(c.hidden_size) +
        ") must be divisible by 'num_attention_heads' (" + std::to_string(c.num_heads) + ")");
  }
  c.num_kv_heads = c.num_heads;
  c.head_dim = c.hidden_size / c.num_heads;
  c.norm_eps = 1e-5;
  STRATA_ASSIGN_OR_RETURN(c.tie_word_embeddings, fs.boolean_or("tie_word_embeddings", true));
  // OPTConfig's defaults: pad 1, bos 2, eos 2.
  STRATA_ASSIGN_OR_RETURN(c.bos_token_id, fs.token_id("bos_token_id", 2));
  STRATA_ASSIGN_OR_RETURN(c.pad_token_id, fs.token_id("pad_token_id", 1, true));
  STRATA_ASSIGN_OR_RETURN(c.eos_token_ids, parse_eos(fs, 2));
  return Status::ok();
}

// The experts of mixtral (num_local_experts, intermediate_size per expert, always renormalised)
// and qwen3_moe (num_experts, moe_intermediate_size, norm_topk_prob, and which layers are sparse).
Status parse_experts(const Fields& fs, const json& j, ModelConfig& c) {
  const bool mixtral = c.model_type == "mixtral";
  // Published checkpoints write mixtral's num_local_experts and qwen3_moe's num_experts;
  // transformers 5 writes num_local_experts for both.
  const char* count = mixtral ? "num_local_experts" : "num_experts";
  if (!fs.given(count)) count = mixtral ? "num_experts" : "num_local_experts";
  STRATA_ASSIGN_OR_RETURN(c.num_experts, fs.positive_int_or(count, mixtral ? 8 : 128));
  if (c.num_experts > kMaxExperts || c.num_experts * c.num_layers > kMaxExpertLayers)
    return fs.bad(count, "at most " + std::to_string(kMaxExperts) + " experts, and at most " +
                             std::to_string(kMaxExpertLayers) + " over all layers");
  STRATA_ASSIGN_OR_RETURN(c.experts_per_token, fs.positive_int_or("num_experts_per_tok", mixtral ? 2 : 8));
  if (c.experts_per_token > c.num_experts) {
    return invalid_argument(fs.source() + ": field 'num_experts_per_tok' (" + std::to_string(c.experts_per_token) +
                            ") must be at most '" + count + "' (" + std::to_string(c.num_experts) + ")");
  }
  if (mixtral) {
    c.expert_intermediate_size = c.intermediate_size;
    c.norm_topk_prob = true;
    return Status::ok();
  }
  STRATA_ASSIGN_OR_RETURN(c.expert_intermediate_size, fs.positive_int_or("moe_intermediate_size", 768));
  STRATA_ASSIGN_OR_RETURN(c.norm_topk_prob, fs.boolean_or("norm_topk_prob", false));
  STRATA_ASSIGN_OR_RETURN(c.sparse_step, fs.positive_int_or("decoder_sparse_step", 1));
  if (fs.given("mlp_only_layers")) {
    const json& v = j.at("mlp_only_layers");
    if (!v.is_array()) return fs.bad("mlp_only_layers", "a list of layer indices");
    for (const json& e : v) {
      const std::optional<int64_t> i = json_to_int64(e);
      if (!e.is_number_integer() || !i || *i < 0 || *i >= c.num_layers)
        return fs.bad("mlp_only_layers", "a list of layer indices below num_hidden_layers (" +
                                             std::to_string(c.num_layers) + ")");
      c.dense_layers.push_back(*i);
    }
  }
  return Status::ok();
}

Status parse_llama_family(const Fields& fs, const json& j, ModelConfig& c) {
  c.family = Family::kLlama;
  STRATA_ASSIGN_OR_RETURN(c.vocab_size, fs.positive_int("vocab_size"));
  STRATA_ASSIGN_OR_RETURN(c.hidden_size, fs.positive_int("hidden_size"));
  STRATA_ASSIGN_OR_RETURN(c.intermediate_size, fs.positive_int("intermediate_size"));
  STRATA_ASSIGN_OR_RETURN(c.num_layers, fs.layer_count("num_hidden_layers"));
  STRATA_ASSIGN_OR_RETURN(c.num_heads, fs.positive_int("num_attention_heads"));
  STRATA_ASSIGN_OR_RETURN(c.max_position_embeddings, fs.positive_int("max_position_embeddings"));
  if (c.model_type == "mixtral" || c.model_type == "qwen3_moe") STRATA_RETURN_IF_ERROR(parse_experts(fs, j, c));
  STRATA_ASSIGN_OR_RETURN(c.num_kv_heads, fs.positive_int_or("num_key_value_heads", c.num_heads));
  STRATA_ASSIGN_OR_RETURN(std::optional<int64_t> head_dim, fs.optional_positive_int("head_dim"));
  if (head_dim) {
    c.head_dim = *head_dim;
  } else if (c.hidden_size % c.num_heads != 0) {
    return invalid_argument(fs.source() + ": field 'hidden_size' (" +
                            std::to_string(c.hidden_size) +
                            ") must be divisible by 'num_attention_heads' (" +
                            std::to_string(c.num_heads) + ") when 'head_dim' is not given");
  } else {
    c.head_dim = c.hidden_size / c.num_heads;
  }
  if (c.num_heads % c.num_kv_heads != 0) {
    return invalid_argument(
        fs.source() + ": field 'num_attention_heads' (" + std::to_string(c.num_heads) +
        ") must be divisible by 'num_key_value_heads' (" + std::to_string(c.num_kv_heads) + ")");
  }
  STRATA_ASSIGN_OR_RETURN(c.norm_eps, fs.positive_number_or("rms_norm_eps", 1e-6));
  STRATA_RETURN_IF_ERROR(check_activation(fs, "hidden_act", "silu"));
  STRATA_ASSIGN_OR_RETURN(c.tie_word_embeddings, fs.boolean_or("tie_word_embeddings", false));
  STRATA_ASSIGN_OR_RETURN(c.rope, parse_rope(fs, j));
  c.word_embed_proj_dim = c.hidden_size;
  c.final_layer_norm = true;

  std::optional<int64_t> default_bos, default_eos;
  if (c.model_type == "llama") {
    STRATA_ASSIGN_OR_RETURN(bool bias, fs.boolean_or("attention_bias", false));
    c.attention_qkv_bias = c.attention_out_bias = bias;
    STRATA_ASSIGN_OR_RETURN(c.mlp_bias, fs.boolean_or("mlp_bias", false));
    default_bos = 1;
    default_eos = 2;
  } else if (c.model_type == "mistral") {
    // MistralConfig's default window is 4096; an explicit null turns it off.
    if (!j.contains("sliding_window")) {
      c.sliding_window = 4096;
    } else {
      STRATA_ASSIGN_OR_RETURN(c.sliding_window, fs.optional_positive_int("sliding_window"));
    }
    default_bos = 1;
    default_eos = 2;
  } else if (c.model_type == "mixtral") {
    // MixtralConfig's window is off unless given.
    STRATA_ASSIGN_OR_RETURN(c.sliding_window, fs.optional_positive_int("sliding_window"));
    default_bos = 1;
    default_eos = 2;
  } else {
    if (c.model_type == "qwen2") {  // q/k/v always carry a bias, o never does
      c.attention_qkv_bias = true;
    } else {  // qwen3, qwen3_moe: one switch for all four projections, and q/k norms
      STRATA_ASSIGN_OR_RETURN(bool bias, fs.boolean_or("attention_bias", false));
      c.attention_qkv_bias = c.attention_out_bias = bias;
      c.qk_norm = true;
    }
    STRATA_ASSIGN_OR_RETURN(bool use_window, fs.boolean_or("use_sliding_window", false));
    if (use_window) {
      if (!j.contains("sliding_window")) {
        c.sliding_window = 4096;
      } else {
        STRATA_ASSIGN_OR_RETURN(c.sliding_window, fs.optional_positive_int("sliding_window"));
      }
      STRATA_ASSIGN_OR_RETURN(int64_t first, fs.non_negative_int_or("max_window_layers", 28));
      c.first_sliding_layer = first;
    }
  }
  STRATA_ASSIGN_OR_RETURN(c.bos_token_id, fs.token_id("bos_token_id", default_bos));
  STRATA_ASSIGN_OR_RETURN(c.pad_token_id, fs.token_id("pad_token_id", std::nullopt, true));
  STRATA_ASSIGN_OR_RETURN(c.eos_token_ids, parse_eos(fs, default_eos));
  return Status::ok();
}

// The ids the engine feeds or stops on must be rows of the embedding and the head.
Status check_special_ids(const ModelConfig& c, const std::string& source) {
  auto outside = [&](const char* field, int64_t id) {
    return invalid_argument(source + ": field '" + field + "' is " + std::to_string(id) +
                            ", outside the vocabulary (vocab_size " + std::to_string(c.vocab_size) +
                            "); fix config.json");
  };
  for (int64_t id : c.eos_token_ids)
    if (id >= c.vocab_size) return outside("eos_token_id", id);
  if (c.bos_token_id && *c.bos_token_id >= c.vocab_size) return outside("bos_token_id", *c.bos_token_id);
  return Status::ok();
}

}  // namespace

bool ModelConfig::is_eos(int64_t token) const {
  return std::find(eos_token_ids.begin(), eos_token_ids.end(), token) != eos_token_ids.end();
}

bool ModelConfig::is_sparse_layer(int64_t layer) const {
  if (num_experts == 0) return false;
  if (std::find(dense_layers.begin(), dense_layers.end(), layer) != dense_layers.end()) return false;
  return (layer + 1) % sparse_step == 0;
}

bool ModelConfig::uniform_layers() const {
  for (int64_t i = 1; i < num_layers; ++i)
    if (is_sparse_layer(i) != is_sparse_layer(0)) return false;
  return true;
}

std::optional<int64_t> ModelConfig::window_of_layer(int64_t layer) const {
  if (!sliding_window || layer < first_sliding_layer) return std::nullopt;
  return sliding_window;
}

Result<ModelConfig> parse_config(const nlohmann::json& j, const std::string& source) {
  if (!j.is_object()) {
    return invalid_argument(source + ": expected a JSON object, got " + std::string(j.type_name()));
  }
  try {
    Fields fs(j, source);
    ModelConfig c;
    static const char* kSupported = "opt, llama, mistral, qwen2, qwen3, mixtral, qwen3_moe";
    STRATA_ASSIGN_OR_RETURN(std::optional<std::string> type, fs.optional_string("model_type"));
    if (!type) return fs.missing("model_type", std::string("one of ") + kSupported);
    c.model_type = *type;
    if (c.model_type == "opt") {
      STRATA_RETURN_IF_ERROR(parse_opt(fs, c));
    } else if (c.model_type == "llama" || c.model_type == "mistral" || c.model_type == "qwen2" ||
               c.model_type == "qwen3" || c.model_type == "mixtral" || c.model_type == "qwen3_moe") {
      STRATA_RETURN_IF_ERROR(parse_llama_family(fs, j, c));
    } else {
      return unsupported(source + ": model_type \"" + c.model_type +
                         "\" is not supported (supported: " + kSupported + ")");
    }
    STRATA_ASSIGN_OR_RETURN(c.torch_dtype, parse_dtype(fs));
    STRATA_RETURN_IF_ERROR(check_special_ids(c, source));
    return c;
  } catch (const json::exception& e) {
    // Only reachable through a bug in the checks above; keep it an error, not a crash.
    return internal_error(source + ": unexpected JSON error: " + e.what());
  }
}

Result<ModelConfig> load_config(const std::filesystem::path& file) {
  Result<nlohmann::json> j = read_json_file(file, JsonLimits{.max_bytes = kMaxConfigBytes});
  if (!j.is_ok()) {
    if (j.status().code() == StatusCode::kNotFound)
      return not_found(file.string() + ": no such file (expected a Hugging Face config.json)");
    std::string m = j.status().message();
    if (const size_t at = m.find(": not valid JSON"); at != std::string::npos) m.replace(at, 16, ": invalid JSON");
    return invalid_argument(m);
  }
  return parse_config(*j, file.string());
}

}  // namespace strata::model
