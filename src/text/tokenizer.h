// Tokenizer: a Hugging Face tokenizer.json (plus tokenizer_config.json and
// generation_config.json when present) implemented as declared: added/special tokens matched
// first, then normalizer, pre-tokenizer, BPE model and post-processor; decoding through the
// declared decoder. Immutable after loading (the BPE word cache is internally locked), so one
// Tokenizer may be shared by threads. Ids are int32 token ids; text is UTF-8.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/status.h"

namespace strata::text {

class BpeModel;
class Normalizer;
class PreTokenizer;
class Decoder;

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool special = false;
  bool normalized = false;   // matched on normalized text rather than raw input
  bool lstrip = false;       // swallows whitespace on its left
  bool rstrip = false;       // swallows whitespace on its right
  bool single_word = false;  // only matches as a whole word
};

class Tokenizer {
 public:
  // Loads DIR/tokenizer.json, and DIR/tokenizer_config.json, DIR/generation_config.json and
  // DIR/chat_template.jinja when present. Errors name the file and the component.
  static Result<std::unique_ptr<Tokenizer>> load_dir(const std::filesystem::path& dir);
  // Builds from parsed files; `config` (tokenizer_config.json) may be null. `source` prefixes errors.
  static Result<std::unique_ptr<Tokenizer>> from_json(const nlohmann::json& tokenizer,
                                                      const nlohmann::json& config,
                                                      const std::string& source);
  ~Tokenizer();

  // Token ids of `text`; with add_special_tokens the post-processor adds BOS/EOS as declared.
  // Invalid UTF-8 in `text` is read as U+FFFD.
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = true) const;
  // Text of `ids`; unknown ids are skipped, special tokens too when skip_special_tokens.
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const;

  // One more than the largest id (model vocabulary and added tokens).
  int64_t vocab_size() const;
  std::optional<int32_t> token_to_id(std::string_view token) const;
  std::optional<std::string> id_to_token(int32_t id) const;
  bool is_special(int32_t id) const;

  // From tokenizer_config.json (bos_token/eos_token), overridden by generation_config.json ids.
  std::optional<int32_t> bos_id() const { return bos_id_; }
  const std::vector<int32_t>& eos_ids() const { return eos_ids_; }
  const std::string& bos_token() const { return bos_token_; }
  const std::string& eos_token() const { return eos_token_; }
  // The chat template text (tokenizer_config.json "chat_template" or chat_template.jinja), or "".
  const std::string& chat_template() const { return chat_template_; }
  // The "tool_use" template when tokenizer_config.json lists named templates, or "".
  const std::string& tool_use_chat_template() const { return tool_use_chat_template_; }
  // The file the chat template came from (for messages), or "".
  const std::string& chat_template_source() const { return chat_template_source_; }
  // transformers' special_tokens_map: bos/eos/unk/sep/pad/cls/mask tokens that
  // tokenizer_config.json sets, and its additional_special_tokens. Chat templates see them as
  // variables.
  const std::vector<std::pair<std::string, std::string>>& special_tokens_map() const {
    return special_tokens_map_;
  }
  const std::vector<std::string>& additional_special_tokens() const {
    return additional_special_tokens_;
  }

 private:
  Tokenizer();
  struct Segment {
    std::string text;
    int32_t added_id = -1;  // >= 0: an added token
    bool at_start = false;
  };
  void split_added(std::string_view text, bool normalized_pass, bool at_start, std::vector<Segment>& out) const;
  Status finish_config(const nlohmann::json& config, const std::string& source);

  std::unique_ptr<BpeModel> model_;
  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<Decoder> decoder_;
  std::vector<AddedToken> added_;
  std::unordered_map<int32_t, size_t> added_by_id_;
  std::unordered_map<std::string, int32_t> added_by_content_;
  std::vector<int32_t> prefix_ids_;  // added before the sequence by the post-processor
  std::vector<int32_t> suffix_ids_;  // added after it
  std::optional<int32_t> bos_id_;
  std::vector<int32_t> eos_ids_;
  std::string bos_token_, eos_token_;
  std::string chat_template_, tool_use_chat_template_, chat_template_source_;
  std::vector<std::pair<std::string, std::string>> special_tokens_map_;
  std::vector<std::string> additional_special_tokens_;
};

}  // namespace strata::text
