// BpeModel: the "model" of tokenizer.json when its type is BPE: a vocabulary, ranked merges,
// and what to do with characters outside the vocabulary (byte_fallback to <0xXX> tokens, an unk
// token, fused or not). Immutable after parsing except for an internal word cache guarded by a
// mutex, so tokenize() is thread safe.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/status.h"

namespace strata::text {

// The ids a vocabulary of `entries` tokens may use: real files number their tokens densely from
// 0; this leaves room for holes while keeping tables sized by the largest id proportional to the
// file.
inline int64_t max_vocab_id(int64_t entries) { return 2 * entries + 1024; }

class BpeModel {
 public:
  // Parses a "model" object of type BPE. Errors name `where` and the offending entry.
  static Result<BpeModel> parse(const nlohmann::json& j, const std::string& where);

  BpeModel(BpeModel&&) noexcept;
  BpeModel& operator=(BpeModel&&) noexcept;
  ~BpeModel();

  // Appends the ids of one pre-tokenized word.
  void tokenize(std::string_view word, std::vector<int32_t>& out) const;

  std::optional<int32_t> token_to_id(std::string_view token) const;
  // Empty when `id` is not in the vocabulary.
  const std::string* id_to_token(int32_t id) const;
  // One more than the largest id in the vocabulary.
  int64_t size() const { return static_cast<int64_t>(id_to_token_.size()); }

 private:
  BpeModel() = default;
  void merge_word(std::string_view word, std::vector<int32_t>& out) const;

  std::unordered_map<std::string, int32_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::vector<bool> has_id_;
  // (left id, right id) -> (rank, merged id)
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;
  std::optional<int32_t> unk_;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  std::string continuing_subword_prefix_;
  std::string end_of_word_suffix_;
  int32_t byte_ids_[256] = {};
  bool have_byte_ids_ = false;

  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace strata::text
