#include "text/token_mask.h"

#include <bit>
#include <cstring>
#include <mutex>

namespace strata::text {

namespace {

struct WordsHash {
  size_t operator()(const std::vector<uint32_t>& v) const {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ v.size();
    for (uint32_t x : v) h = (h ^ x) * 0x100000001B3ull;
    return static_cast<size_t>(h ^ (h >> 29));
  }
};

// Splits the partition `cls` (class ids 0..count-1 by position) until no class splits further:
// positions stay together while their own class, whether their rule may end, their edges (byte
// ranges, and each target's class in `edge_cls`; null: whether there are any) and their calls
// (rule, and the return position's class in `cls` itself) agree. Returns the number of classes.
uint32_t refine(const Grammar& g, const std::vector<uint32_t>* edge_cls, std::vector<uint32_t>& cls, uint32_t count) {
  const size_t n = g.positions();
  std::vector<uint32_t> sig, next(n);
  for (;;) {
    std::unordered_map<std::vector<uint32_t>, uint32_t, WordsHash> ids;
    for (size_t p = 0; p < n; ++p) {
      const Grammar::Position& at = g.at(static_cast<uint32_t>(p));
      sig.clear();
      sig.push_back(cls[p]);
      sig.push_back(at.final ? 1 : 0);
      sig.push_back(edge_cls ? static_cast<uint32_t>(at.edges.size()) : at.edges.empty() ? 0 : 1);
      if (edge_cls)
        for (const Grammar::Edge& e : at.edges) {
          sig.push_back(e.lo);
          sig.push_back(e.hi);
          sig.push_back((*edge_cls)[e.to]);
        }
      sig.push_back(static_cast<uint32_t>(at.calls.size()));
      for (const Grammar::Call& c : at.calls) {
        sig.push_back(c.rule);
        sig.push_back(cls[c.ret]);
      }
      next[p] = ids.try_emplace(sig, static_cast<uint32_t>(ids.size())).first->second;
    }
    const auto found = static_cast<uint32_t>(ids.size());
    cls.swap(next);
    if (found == count) return found;
    count = found;
  }
}

}  // namespace

TokenMasker::TokenMasker(const TokenTrie& trie, const Constraint& constraint, Options options)
    : trie_(trie), grammar_(constraint.grammar()), options_(options) {
  if (!grammar_) return;
  const size_t n = grammar_->positions();
  if (n == 0 || n > options_.max_class_entries) return;
  // Level 0: what expanding a position can reach (edges, rule ends, calls), before any byte.
  std::vector<uint32_t> cls(n, 0);
  uint32_t count = refine(*grammar_, nullptr, cls, 1);
  classes_.push_back(cls);
  // Level d: level d-1's classes split by the level-(d-1) classes of the edges' targets.
  while ((classes_.size() + 1) * n <= options_.max_class_entries) {
    const uint32_t before = count;
    count = refine(*grammar_, &classes_.back(), cls, count);
    if (count == before) {
      stable_ = true;  // no split: every higher level is the same
      break;
    }
    classes_.push_back(cls);
  }
}

const std::vector<uint32_t>* TokenMasker::table(int height) const {
  if (height < levels()) return &classes_[static_cast<size_t>(height)];
  if (stable_ && !classes_.empty()) return &classes_.back();
  return nullptr;
}

bool TokenMasker::key_into(const GrammarState& s, const std::vector<uint32_t>& cls, std::string& key) const {
  const uint32_t* st = s.stacks();
  const uint32_t size = s.stacks_size();
  uint32_t stacks = 0;
  for (uint32_t i = 0; i < size; i += st[i] + 1)
    if (++stacks > kMaxKeyedStacks) return false;
  const size_t at = key.size();
  key.resize(at + size * sizeof(uint32_t));
  char* out = key.data() + at;
  for (uint32_t i = 0; i < size; i += st[i] + 1) {
    // The stack's size, then its positions' classes, in the state's order (the order in which a
    // feed expands them).
    std::memcpy(out, &st[i], sizeof(uint32_t));
    out += sizeof(uint32_t);
    for (uint32_t j = 1; j <= st[i]; ++j) {
      std::memcpy(out, &cls[st[i + j]], sizeof(uint32_t));
      out += sizeof(uint32_t);
    }
  }
  return true;
}

std::string TokenMasker::class_key(const ConstraintState& state, int level) const {
  const GrammarState* gs = state.grammar_state();
  const std::vector<uint32_t>* cls = table(level);
  std::string key;
  if (gs && cls && !key_into(*gs, *cls, key)) key.clear();
  return key;
}

std::string TokenMasker::mask_key(const ConstraintState& state) const {
  const GrammarState* gs = state.grammar_state();
  const std::vector<uint32_t>* cls = table(trie_.nodes_[0].height);
  std::string key(1, state.complete() ? '\1' : '\0');
  if (!gs || !cls || !key_into(*gs, *cls, key)) return {};
  return key;
}

// Sets bits[i] for each token order_[i] of `node`'s subtree that `s` (the state after the node's
// bytes) accepts: the node's own tokens and those below.
void TokenMasker::subtree(int32_t node, const GrammarState& s, Words& bits) const {
  const TokenTrie::Node& at = trie_.nodes_[static_cast<size_t>(node)];
  std::string key;
  bool keyed = false;
  if (at.height > 0 && at.end - at.first >= options_.min_tokens) {
    if (const std::vector<uint32_t>* cls = table(at.height)) {
      key.assign(reinterpret_cast<const char*>(&node), sizeof node);
      keyed = key_into(s, *cls, key);
    }
  }
  const size_t w0 = static_cast<size_t>(at.first) / 64;
  if (keyed) {
    std::shared_lock lock(mu_);
    if (auto it = kept_.find(key); it != kept_.end()) {
      const Words& w = it->second;
      for (size_t i = 0; i < w.size(); ++i) bits[w0 + i] |= w[i];
      return;
    }
  }
  const auto own_end = static_cast<size_t>(at.first) + at.tokens.size();
  for (size_t i = static_cast<size_t>(at.first); i < own_end; ++i) bits[i / 64] |= uint64_t{1} << (i % 64);
  for (const auto& [byte, child] : at.children) {
    GrammarState next = s;
    if (!next.feed(byte)) continue;
    subtree(child, next, bits);
  }
  if (!keyed || at.end == at.first || kept_bytes_.load(std::memory_order_relaxed) >= options_.max_bytes) return;
  const size_t w1 = (static_cast<size_t>(at.end) - 1) / 64;
  Words w(bits.begin() + static_cast<long>(w0), bits.begin() + static_cast<long>(w1) + 1);
  w.front() &= ~uint64_t{0} << (static_cast<size_t>(at.first) % 64);
  if (at.end % 64 != 0) w.back() &= (uint64_t{1} << (static_cast<size_t>(at.end) % 64)) - 1;
  const size_t bytes = w.size() * sizeof(uint64_t) + key.size() + 64;
  std::unique_lock lock(mu_);
  if (kept_.try_emplace(std::move(key), std::move(w)).second) kept_bytes_.fetch_add(bytes, std::memory_order_relaxed);
}

void TokenMasker::allowed(const ConstraintState& state, std::vector<uint8_t>& allowed) const {
  const GrammarState* gs = state.grammar_state();
  if (!gs || classes_.empty()) {
    trie_.allowed(state, allowed);
    return;
  }
  Words bits((trie_.order_.size() + 63) / 64, 0);
  subtree(0, *gs, bits);
  allowed.assign(static_cast<size_t>(trie_.vocab()), 0);
  for (size_t w = 0; w < bits.size(); ++w)
    for (uint64_t x = bits[w]; x != 0; x &= x - 1)
      allowed[static_cast<size_t>(trie_.order_[w * 64 + static_cast<size_t>(std::countr_zero(x))])] = 1;
}

}  // namespace strata::text
