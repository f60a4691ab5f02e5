#include "text/tokenizer.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "text/bpe.h"
#include "text/decoder.h"
#include "text/json_util.h"
#include "text/normalizer.h"
#include "text/pre_tokenizer.h"
#include "text/utf8.h"

namespace strata::text {

namespace fs = std::filesystem;

namespace {
// chat_template.jinja is text for people to read; a MiB is plenty.
constexpr uint64_t kMaxTemplateBytes = 1 << 20;
}  // namespace

Tokenizer::Tokenizer() = default;
Tokenizer::~Tokenizer() = default;

namespace {

// A token in tokenizer_config.json: "text" or {"content": "text", ...}.
std::string config_token(const nlohmann::json& config, const char* key) {
  if (!config.is_object() || !config.contains(key)) return "";
  const auto& v = config[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return "";
}

bool is_word_char(char32_t c) {
  return (c < 0x80 && (std::isalnum(static_cast<int>(c)) || c == '_')) || (c >= 0x80 && !is_python_space(c));
}

// A token id: an integer in [0, 2^31).
Result<int32_t> token_id(const nlohmann::json& v, const std::string& what) {
  const std::optional<int64_t> id = v.is_number_integer() ? json_to_int64(v) : std::nullopt;
  if (!id || *id < 0 || *id > INT32_MAX) return invalid_argument(what + " must be token ids (integers in [0, 2^31))");
  return static_cast<int32_t>(*id);
}

// The ids a post-processor puts before and after a single sequence.
Status parse_post_processor(const nlohmann::json& j, const std::string& where, std::vector<int32_t>& prefix,
                            std::vector<int32_t>& suffix) {
  if (j.is_null()) return Status::ok();
  STRATA_ASSIGN_OR_RETURN(std::string type, json_string(j, "type", where));
  const std::string at = where + " (" + type + ")";
  if (type == "ByteLevel") return Status::ok();  // only adjusts offsets
  if (type == "Sequence") {
    if (!j.contains("processors") || !j["processors"].is_array()) return invalid_argument(at + ": 'processors' must be an array");
    for (size_t i = 0; i < j["processors"].size(); ++i)
      STRATA_RETURN_IF_ERROR(parse_post_processor(j["processors"][i], where + ".processors[" + std::to_string(i) + "]",
                                                  prefix, suffix));
    return Status::ok();
  }
  if (type == "TemplateProcessing") {
    if (!j.contains("single") || !j["single"].is_array()) return invalid_argument(at + ": 'single' must be an array");
    const auto& specials = j.contains("special_tokens") ? j["special_tokens"] : nlohmann::json::object();
    bool seen_sequence = false;
    for (const auto& item : j["single"]) {
      if (item.contains("Sequence")) {
        seen_sequence = true;
        continue;
      }
      if (!item.contains("SpecialToken") || !item["SpecialToken"].contains("id") || !item["SpecialToken"]["id"].is_string())
        return invalid_argument(at + ": template items must be Sequence or SpecialToken");
      const std::string name = item["SpecialToken"]["id"].get<std::string>();
      if (!specials.contains(name) || !specials[name].contains("ids") || !specials[name]["ids"].is_array())
        return invalid_argument(at + ": special token '" + name + "' has no entry in 'special_tokens'");
      for (const auto& id : specials[name]["ids"]) {
        STRATA_ASSIGN_OR_RETURN(int32_t v, token_id(id, at + ": ids of '" + name + "'"));
        (seen_sequence ? suffix : prefix).push_back(v);
      }
    }
    return Status::ok();
  }
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    for (const char* key : {"cls", "sep"}) {
      if (!j.contains(key) || !j[key].is_array() || j[key].size() != 2 || !j[key][1].is_number_integer())
        return invalid_argument(at + ": '" + key + "' must be [token, id]");
    }
    STRATA_ASSIGN_OR_RETURN(int32_t cls, token_id(j["cls"][1], at + ": 'cls'"));
    STRATA_ASSIGN_OR_RETURN(int32_t sep, token_id(j["sep"][1], at + ": 'sep'"));
    prefix.push_back(cls);
    suffix.insert(suffix.begin(), sep);
    return Status::ok();
  }
  return unsupported(where + ": post-processor type '" + type + "' is not supported (supported: TemplateProcessing, "
                     "ByteLevel, RobertaProcessing, BertProcessing, Sequence)");
}

}  // namespace

Result<std::unique_ptr<Tokenizer>> Tokenizer::load_dir(const fs::path& dir) {
  const fs::path tok_path = dir / "tokenizer.json";
  std::error_code ec;
  if (!fs::exists(tok_path, ec))
    return not_found(tok_path.string() + " does not exist: strata reads the Hugging Face tokenizer.json of the model "
                     "(a 'fast' tokenizer); convert a SentencePiece tokenizer.model with transformers first");
  STRATA_ASSIGN_OR_RETURN(nlohmann::json tok, read_json_file(tok_path.string()));
  nlohmann::json config = nlohmann::json::object();
  const fs::path config_path = dir / "tokenizer_config.json";
  if (fs::exists(config_path)) {
    STRATA_ASSIGN_OR_RETURN(config, read_json_file(config_path.string()));
  }
  STRATA_ASSIGN_OR_RETURN(auto t, from_json(tok, config, tok_path.string()));
  if (!t->chat_template_.empty()) t->chat_template_source_ = config_path.string();
  if (fs::exists(dir / "chat_template.jinja", ec)) {
    STRATA_ASSIGN_OR_RETURN(t->chat_template_, read_regular_file(dir / "chat_template.jinja", kMaxTemplateBytes));
    t->chat_template_source_ = (dir / "chat_template.jinja").string();
  }
  const fs::path gen_path = dir / "generation_config.json";
  if (fs::exists(gen_path)) {
    STRATA_ASSIGN_OR_RETURN(nlohmann::json gen, read_json_file(gen_path.string()));
    const std::string at = gen_path.string();
    if (gen.contains("bos_token_id") && gen["bos_token_id"].is_number_integer()) {
      STRATA_ASSIGN_OR_RETURN(t->bos_id_, token_id(gen["bos_token_id"], at + ": field 'bos_token_id'"));
    }
    if (gen.contains("eos_token_id")) {
      const auto& e = gen["eos_token_id"];
      std::vector<int32_t> ids;
      if (e.is_number_integer()) {
        STRATA_ASSIGN_OR_RETURN(int32_t id, token_id(e, at + ": field 'eos_token_id'"));
        ids.push_back(id);
      } else if (e.is_array()) {
        for (const auto& v : e) {
          if (!v.is_number_integer()) continue;
          STRATA_ASSIGN_OR_RETURN(int32_t id, token_id(v, at + ": field 'eos_token_id'"));
          ids.push_back(id);
        }
      }
      if (!ids.empty()) t->eos_ids_ = ids;
    }
  }
  return t;
}

Result<std::unique_ptr<Tokenizer>> Tokenizer::from_json(const nlohmann::json& j, const nlohmann::json& config,
                                                        const std::string& source) {
  if (!j.is_object()) return invalid_argument(source + ": expected a JSON object");
  std::unique_ptr<Tokenizer> t(new Tokenizer());
  const auto field = [&](const char* k) -> const nlohmann::json& {
    static const nlohmann::json kNull;
    return j.contains(k) ? j[k] : kNull;
  };
  // Model.
  const auto& model = field("model");
  if (!model.is_object()) return invalid_argument(source + ": missing 'model'");
  STRATA_ASSIGN_OR_RETURN(std::string mtype, json_string_or(model, "type", "BPE", source + ": model"));
  if (mtype != "BPE")
    return unsupported(source + ": model type '" + mtype + "' is not supported (strata implements BPE tokenizers: "
                       "GPT-2/OPT, Llama, Mistral, Qwen2)");
  STRATA_ASSIGN_OR_RETURN(BpeModel bpe, BpeModel::parse(model, source + ": model"));
  t->model_ = std::make_unique<BpeModel>(std::move(bpe));
  // Pipeline.
  STRATA_ASSIGN_OR_RETURN(t->normalizer_, parse_normalizer(field("normalizer"), source + ": normalizer"));
  STRATA_ASSIGN_OR_RETURN(t->pre_tokenizer_, parse_pre_tokenizer(field("pre_tokenizer"), source + ": pre_tokenizer"));
  STRATA_ASSIGN_OR_RETURN(t->decoder_, parse_decoder(field("decoder"), source + ": decoder"));
  STRATA_RETURN_IF_ERROR(parse_post_processor(field("post_processor"), source + ": post_processor", t->prefix_ids_,
                                              t->suffix_ids_));
  // Added tokens.
  const auto& added = field("added_tokens");
  if (!added.is_null() && !added.is_array()) return invalid_argument(source + ": 'added_tokens' must be an array");
  for (size_t i = 0; added.is_array() && i < added.size(); ++i) {
    const auto& a = added[i];
    const std::string at = source + ": added_tokens[" + std::to_string(i) + "]";
    AddedToken tok;
    STRATA_ASSIGN_OR_RETURN(int64_t id, json_int_or(a, "id", -1, at));
    const int64_t id_limit = max_vocab_id(t->model_->size() + static_cast<int64_t>(added.size()));
    if (id < 0 || id >= id_limit)
      return invalid_argument(at + ": 'id' must be a non-negative integer below " + std::to_string(id_limit) +
                              " (the vocabulary has " + std::to_string(t->model_->size()) + " ids and " +
                              std::to_string(added.size()) + " added tokens)");
    tok.id = static_cast<int32_t>(id);
    STRATA_ASSIGN_OR_RETURN(tok.content, json_string(a, "content", at));
    if (tok.content.empty()) return invalid_argument(at + ": 'content' must not be empty");
    STRATA_ASSIGN_OR_RETURN(tok.special, json_bool_or(a, "special", false, at));
    STRATA_ASSIGN_OR_RETURN(tok.normalized, json_bool_or(a, "normalized", !tok.special, at));
    STRATA_ASSIGN_OR_RETURN(tok.lstrip, json_bool_or(a, "lstrip", false, at));
    STRATA_ASSIGN_OR_RETURN(tok.rstrip, json_bool_or(a, "rstrip", false, at));
    STRATA_ASSIGN_OR_RETURN(tok.single_word, json_bool_or(a, "single_word", false, at));
    t->added_by_id_[tok.id] = t->added_.size();
    t->added_by_content_[tok.content] = tok.id;
    t->added_.push_back(std::move(tok));
  }
  // Longest first, so the first match at a position is the longest.
  std::stable_sort(t->added_.begin(), t->added_.end(),
                   [](const AddedToken& a, const AddedToken& b) { return a.content.size() > b.content.size(); });
  t->added_by_id_.clear();
  for (size_t i = 0; i < t->added_.size(); ++i) t->added_by_id_[t->added_[i].id] = i;
  // What the post-processor adds must be tokens the tokenizer knows (and decodes).
  for (const auto* ids : {&t->prefix_ids_, &t->suffix_ids_})
    for (int32_t id : *ids)
      if (!t->id_to_token(id))
        return invalid_argument(source + ": post_processor: token id " + std::to_string(id) +
                                " is neither in the vocabulary nor an added token");
  STRATA_RETURN_IF_ERROR(t->finish_config(config, source));
  return t;
}

Status Tokenizer::finish_config(const nlohmann::json& config, const std::string& source) {
  (void)source;
  bos_token_ = config_token(config, "bos_token");
  eos_token_ = config_token(config, "eos_token");
  if (!bos_token_.empty()) bos_id_ = token_to_id(bos_token_);
  if (!eos_token_.empty())
    if (auto id = token_to_id(eos_token_)) eos_ids_ = {*id};
  if (config.is_object() && config.contains("chat_template")) {
    const auto& ct = config["chat_template"];
    if (ct.is_string()) {
      chat_template_ = ct.get<std::string>();
    } else if (ct.is_array()) {  // [{"name": "default", "template": "..."}, {"name": "tool_use",
                                 // ...}]
      for (const auto& e : ct) {
        if (!e.is_object() || !e.contains("name") || !e["name"].is_string() ||
            !e.contains("template") || !e["template"].is_string())
          continue;
        const std::string name = e["name"].get<std::string>();
        if (name == "default")
          chat_template_ = e["template"].get<std::string>();
        else if (name == "tool_use")
          tool_use_chat_template_ = e["template"].get<std::string>();
      }
    }
  }
  for (const char* key : {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token",
                          "cls_token", "mask_token"}) {
    const std::string v = config_token(config, key);
    if (!v.empty()) special_tokens_map_.emplace_back(key, v);
  }
  if (config.is_object() && config.contains("additional_special_tokens") &&
      config["additional_special_tokens"].is_array())
    for (const auto& e : config["additional_special_tokens"]) {
      if (e.is_string())
        additional_special_tokens_.push_back(e.get<std::string>());
      else if (e.is_object() && e.contains("content") && e["content"].is_string())
        additional_special_tokens_.push_back(e["content"].get<std::string>());
    }
  // Llama-style tokenizer classes say whether BOS/EOS are added; that overrides the template.
  if (config.is_object() && config.contains("add_bos_token") && config["add_bos_token"].is_boolean() && bos_id_) {
    std::erase(prefix_ids_, *bos_id_);
    if (config["add_bos_token"].get<bool>()) prefix_ids_.insert(prefix_ids_.begin(), *bos_id_);
  }
  if (config.is_object() && config.contains("add_eos_token") && config["add_eos_token"].is_boolean() &&
      !eos_ids_.empty()) {
    std::erase(suffix_ids_, eos_ids_[0]);
    if (config["add_eos_token"].get<bool>()) suffix_ids_.push_back(eos_ids_[0]);
  }
  return Status::ok();
}

void Tokenizer::split_added(std::string_view text, bool normalized_pass, bool at_start,
                            std::vector<Segment>& out) const {
  size_t plain_begin = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    const AddedToken* hit = nullptr;
    for (const auto& a : added_) {
      if (a.normalized != normalized_pass) continue;
      if (text.compare(pos, a.content.size(), a.content) != 0) continue;
      if (a.single_word) {
        if (pos > 0) {
          size_t k = pos - 1;
          while (k > 0 && (static_cast<uint8_t>(text[k]) & 0xC0) == 0x80) --k;
          if (is_word_char(next_code_point(text, k))) continue;
        }
        size_t e = pos + a.content.size();
        if (e < text.size() && is_word_char(next_code_point(text, e))) continue;
      }
      hit = &a;
      break;
    }
    if (!hit) {
      next_code_point(text, pos);
      continue;
    }
    size_t b = pos, e = pos + hit->content.size();
    if (hit->lstrip) {
      while (b > plain_begin) {
        size_t k = b - 1;
        while (k > plain_begin && (static_cast<uint8_t>(text[k]) & 0xC0) == 0x80) --k;
        size_t i = k;
        if (!is_python_space(next_code_point(text, i))) break;
        b = k;
      }
    }
    if (hit->rstrip) {
      while (e < text.size()) {
        size_t i = e;
        if (!is_python_space(next_code_point(text, i))) break;
        e = i;
      }
    }
    if (b > plain_begin)
      out.push_back({std::string(text.substr(plain_begin, b - plain_begin)), -1, at_start && plain_begin == 0});
    out.push_back({hit->content, hit->id, false});
    plain_begin = pos = e;
  }
  if (plain_begin < text.size())
    out.push_back({std::string(text.substr(plain_begin)), -1, at_start && plain_begin == 0});
}

std::vector<int32_t> Tokenizer::encode(std::string_view input, bool add_special_tokens) const {
  std::string lossy;
  if (utf8_lossy(input) != input) {
    lossy = utf8_lossy(input);
    input = lossy;
  }
  std::vector<int32_t> ids;
  if (add_special_tokens) ids = prefix_ids_;
  std::vector<Segment> raw;
  split_added(input, /*normalized_pass=*/false, /*at_start=*/true, raw);
  std::vector<Segment> segs;
  std::vector<Piece> pieces;
  for (auto& seg : raw) {
    if (seg.added_id >= 0) {
      ids.push_back(seg.added_id);
      continue;
    }
    std::string norm = normalizer_ ? normalizer_->normalize(std::move(seg.text)) : std::move(seg.text);
    segs.clear();
    split_added(norm, /*normalized_pass=*/true, seg.at_start, segs);
    for (auto& s : segs) {
      if (s.added_id >= 0) {
        ids.push_back(s.added_id);
        continue;
      }
      pieces.clear();
      pieces.push_back({std::move(s.text), s.at_start});
      if (pre_tokenizer_) pre_tokenizer_->split(pieces);
      for (const auto& p : pieces) model_->tokenize(p.text, ids);
    }
  }
  if (add_special_tokens) ids.insert(ids.end(), suffix_ids_.begin(), suffix_ids_.end());
  return ids;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    if (auto it = added_by_id_.find(id); it != added_by_id_.end()) {
      if (skip_special_tokens && added_[it->second].special) continue;
      tokens.push_back(added_[it->second].content);
    } else if (const std::string* t = model_->id_to_token(id)) {
      tokens.push_back(*t);
    }
  }
  if (!decoder_) {
    std::string out;
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i) out += ' ';
      out += tokens[i];
    }
    return out;
  }
  decoder_->decode_chain(tokens);
  std::string out;
  for (const auto& t : tokens) out += t;
  return out;
}

int64_t Tokenizer::vocab_size() const {
  int64_t n = model_->size();
  for (const auto& a : added_) n = std::max<int64_t>(n, a.id + 1);
  return n;
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  if (auto it = added_by_content_.find(std::string(token)); it != added_by_content_.end()) return it->second;
  return model_->token_to_id(token);
}

std::optional<std::string> Tokenizer::id_to_token(int32_t id) const {
  if (auto it = added_by_id_.find(id); it != added_by_id_.end()) return added_[it->second].content;
  if (const std::string* t = model_->id_to_token(id)) return *t;
  return std::nullopt;
}

bool Tokenizer::is_special(int32_t id) const {
  auto it = added_by_id_.find(id);
  return it != added_by_id_.end() && added_[it->second].special;
}

}  // namespace strata::text
