#include "text/bpe.h"

#include <cstdio>
#include <functional>
#include <queue>

#include <nlohmann/json.hpp>

#include "text/json_util.h"
#include "text/utf8.h"

namespace strata::text {

namespace {
constexpr size_t kMaxCachedWords = 1 << 16;
constexpr size_t kMaxCachedWordBytes = 256;
uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}
}  // namespace

BpeModel::BpeModel(BpeModel&& o) noexcept { *this = std::move(o); }
BpeModel& BpeModel::operator=(BpeModel&& o) noexcept {
  vocab_ = std::move(o.vocab_);
  id_to_token_ = std::move(o.id_to_token_);
  has_id_ = std::move(o.has_id_);
  merges_ = std::move(o.merges_);
  unk_ = o.unk_;
  fuse_unk_ = o.fuse_unk_;
  byte_fallback_ = o.byte_fallback_;
  ignore_merges_ = o.ignore_merges_;
  continuing_subword_prefix_ = std::move(o.continuing_subword_prefix_);
  end_of_word_suffix_ = std::move(o.end_of_word_suffix_);
  std::copy(std::begin(o.byte_ids_), std::end(o.byte_ids_), std::begin(byte_ids_));
  have_byte_ids_ = o.have_byte_ids_;
  return *this;
}
BpeModel::~BpeModel() = default;

Result<BpeModel> BpeModel::parse(const nlohmann::json& j, const std::string& where) {
  BpeModel m;
  if (j.contains("dropout") && j["dropout"].is_number() && j["dropout"].get<double>() > 0)
    return unsupported(where + ": BPE dropout is a training-time option; strata tokenizes without it (set it to null)");
  if (!j.contains("vocab") || !j["vocab"].is_object()) return invalid_argument(where + ": 'vocab' must be an object");
  int64_t max_id = -1;
  std::string max_token;
  for (auto it = j["vocab"].begin(); it != j["vocab"].end(); ++it) {
    const std::optional<int64_t> v = it.value().is_number_integer() ? json_to_int64(it.value()) : std::nullopt;
    if (!v || *v < 0 || *v > INT32_MAX)
      return invalid_argument(where + ": vocab entry '" + it.key() + "' must map to a non-negative integer id");
    const auto id = static_cast<int32_t>(*v);
    m.vocab_.emplace(it.key(), id);
    if (id > max_id) {
      max_id = id;
      max_token = it.key();
    }
  }
  // The id table is sized by the largest id: it must be one the vocabulary can use (ids are
  // dense in real files; a few holes are tolerated).
  const int64_t id_limit = max_vocab_id(static_cast<int64_t>(m.vocab_.size()));
  if (max_id >= id_limit)
    return invalid_argument(where + ": vocab id " + std::to_string(max_id) + " of '" + max_token +
                            "' is far beyond the " + std::to_string(m.vocab_.size()) +
                            " entries of the vocabulary (ids must be below " + std::to_string(id_limit) +
                            "); the file is corrupt");
  m.id_to_token_.resize(max_id + 1);
  m.has_id_.assign(max_id + 1, false);
  for (const auto& [tok, id] : m.vocab_) {
    m.id_to_token_[id] = tok;
    m.has_id_[id] = true;
  }
  if (!j.contains("merges") || !j["merges"].is_array()) return invalid_argument(where + ": 'merges' must be an array");
  const auto& merges = j["merges"];
  for (size_t r = 0; r < merges.size(); ++r) {
    std::string a, b;
    const auto& e = merges[r];
    if (e.is_string()) {
      const auto s = e.get<std::string>();
      const size_t sp = s.find(' ', 1);
      if (sp == std::string::npos) return invalid_argument(where + ": merge " + std::to_string(r) + " ('" + s + "') is not 'left right'");
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
      a = e[0].get<std::string>();
      b = e[1].get<std::string>();
    } else {
      return invalid_argument(where + ": merge " + std::to_string(r) + " must be \"left right\" or [left, right]");
    }
    auto ia = m.vocab_.find(a), ib = m.vocab_.find(b), im = m.vocab_.find(a + b);
    if (ia == m.vocab_.end() || ib == m.vocab_.end() || im == m.vocab_.end())
      return invalid_argument(where + ": merge " + std::to_string(r) + " ('" + a + "' + '" + b +
                              "') uses a token that is not in the vocabulary");
    m.merges_.emplace(pair_key(ia->second, ib->second), std::make_pair(static_cast<int32_t>(r), im->second));
  }
  STRATA_ASSIGN_OR_RETURN(std::string unk, json_string_or(j, "unk_token", "", where));
  if (!unk.empty()) {
    auto it = m.vocab_.find(unk);
    if (it == m.vocab_.end()) return invalid_argument(where + ": unk_token '" + unk + "' is not in the vocabulary");
    m.unk_ = it->second;
  }
  STRATA_ASSIGN_OR_RETURN(m.fuse_unk_, json_bool_or(j, "fuse_unk", false, where));
  STRATA_ASSIGN_OR_RETURN(m.byte_fallback_, json_bool_or(j, "byte_fallback", false, where));
  STRATA_ASSIGN_OR_RETURN(m.ignore_merges_, json_bool_or(j, "ignore_merges", false, where));
  STRATA_ASSIGN_OR_RETURN(m.continuing_subword_prefix_, json_string_or(j, "continuing_subword_prefix", "", where));
  STRATA_ASSIGN_OR_RETURN(m.end_of_word_suffix_, json_string_or(j, "end_of_word_suffix", "", where));
  if (m.byte_fallback_) {
    m.have_byte_ids_ = true;
    for (int b = 0; b < 256; ++b) {
      char name[8];
      std::snprintf(name, sizeof(name), "<0x%02X>", b);
      auto it = m.vocab_.find(name);
      if (it == m.vocab_.end()) {
        m.have_byte_ids_ = false;
        break;
      }
      m.byte_ids_[b] = it->second;
    }
  }
  return m;
}

std::optional<int32_t> BpeModel::token_to_id(std::string_view token) const {
  auto it = vocab_.find(std::string(token));
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::id_to_token(int32_t id) const {
  if (id < 0 || id >= static_cast<int32_t>(id_to_token_.size()) || !has_id_[id]) return nullptr;
  return &id_to_token_[id];
}

void BpeModel::tokenize(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    if (auto it = vocab_.find(std::string(word)); it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  const bool cacheable = word.size() <= kMaxCachedWordBytes;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    if (auto it = cache_.find(std::string(word)); it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids;
  merge_word(word, ids);
  out.insert(out.end(), ids.begin(), ids.end());
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    if (cache_.size() >= kMaxCachedWords) cache_.clear();
    cache_.emplace(std::string(word), std::move(ids));
  }
}

void BpeModel::merge_word(std::string_view word, std::vector<int32_t>& out) const {
  // Initial symbols: one per character (with the subword prefix / word suffix where declared),
  // falling back to byte tokens or the unk token for characters outside the vocabulary.
  std::vector<int32_t> syms;
  bool last_was_unk = false;
  size_t i = 0;
  while (i < word.size()) {
    const size_t start = i;
    next_code_point(word, i);
    std::string ch(word.substr(start, i - start));
    if (start > 0 && !continuing_subword_prefix_.empty()) ch = continuing_subword_prefix_ + ch;
    if (i == word.size() && !end_of_word_suffix_.empty()) ch += end_of_word_suffix_;
    if (auto it = vocab_.find(ch); it != vocab_.end()) {
      syms.push_back(it->second);
      last_was_unk = false;
      continue;
    }
    if (byte_fallback_ && have_byte_ids_) {
      for (size_t k = start; k < i; ++k) syms.push_back(byte_ids_[static_cast<uint8_t>(word[k])]);
      last_was_unk = false;
      continue;
    }
    if (unk_) {
      if (!(fuse_unk_ && last_was_unk)) syms.push_back(*unk_);
      last_was_unk = true;
    }
    // Without byte fallback or an unk token the character is dropped, as tokenizers does.
  }
  // Merge the lowest-ranked adjacent pair (leftmost on ties) until no pair has a merge. Symbols
  // form a linked list; a min-heap holds candidate merges, stale entries are skipped.
  const int n = static_cast<int>(syms.size());
  std::vector<int> next(n), prev(n);
  std::vector<bool> alive(n, true);
  for (int k = 0; k < n; ++k) {
    next[k] = k + 1 < n ? k + 1 : -1;
    prev[k] = k - 1;
  }
  struct Cand {
    int32_t rank;
    int pos;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  auto push = [&](int k) {
    if (k < 0 || next[k] < 0) return;
    auto it = merges_.find(pair_key(syms[k], syms[next[k]]));
    if (it != merges_.end()) heap.push({it->second.first, k});
  };
  for (int k = 0; k + 1 < n; ++k) push(k);
  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    if (!alive[c.pos] || next[c.pos] < 0) continue;
    auto it = merges_.find(pair_key(syms[c.pos], syms[next[c.pos]]));
    if (it == merges_.end() || it->second.first != c.rank) continue;  // stale
    const int right = next[c.pos];
    syms[c.pos] = it->second.second;
    alive[right] = false;
    next[c.pos] = next[right];
    if (next[right] >= 0) prev[next[right]] = c.pos;
    push(prev[c.pos]);
    push(c.pos);
  }
  for (int k = 0; k < n; ++k)
    if (alive[k]) out.push_back(syms[k]);
}


}  // namespace strata::text
