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
  levels_kept_ = trie_.height_ + 1;
  with_text_.assign((static_cast<size_t>(trie_.vocab()) + 63) / 64, 0);
  for (int32_t t : trie_.order_) with_text_[static_cast<size_t>(t) / 64] |= uint64_t{1} << (t % 64);
  const size_t blocks = (options_.max_states + kBlock - 1) / kBlock;
  next_.resize(blocks);
  cls_.resize(blocks);
  // Byte classes: a grammar's edges cut the bytes into ranges that every position treats alike.
  // JSON mode's automaton is not a grammar: every byte is its own class.
  for (int b = 0; b < 256; ++b) byte_class_[static_cast<size_t>(b)] = static_cast<uint8_t>(b);
  if (!grammar_) return;
  std::array<bool, 257> cut{};
  cut[0] = true;
  for (size_t p = 0; p < grammar_->positions(); ++p)
    for (const Grammar::Edge& e : grammar_->at(static_cast<uint32_t>(p)).edges) {
      cut[e.lo] = true;
      cut[static_cast<size_t>(e.hi) + 1] = true;
    }
  int c = -1;
  for (int b = 0; b < 256; ++b) {
    if (cut[static_cast<size_t>(b)]) ++c;
    byte_class_[static_cast<size_t>(b)] = static_cast<uint8_t>(c);
  }
  byte_classes_ = c + 1;

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
  const std::vector<uint32_t>* cls = table(trie_.height_);
  std::string key(1, state.complete() ? '\1' : '\0');
  if (!gs || !cls || !key_into(*gs, *cls, key)) return {};
  return key;
}

size_t TokenMasker::states() const {
  std::lock_guard lock(dfa_mu_);
  return states_.size();
}

int32_t TokenMasker::intern_locked(const ConstraintState& s) const {
  std::string key = s.key();
  if (auto it = ids_.find(key); it != ids_.end()) return it->second;
  if (states_.size() >= options_.max_states) return kFull;
  const auto id = static_cast<int32_t>(states_.size());
  if (id % kBlock == 0) {
    auto make = [](size_t n) {
      Table t = std::make_unique<std::atomic<int32_t>[]>(n);
      for (size_t i = 0; i < n; ++i) t[i].store(kUnknown, std::memory_order_relaxed);
      return t;
    };
    next_[static_cast<size_t>(id / kBlock)] = make(static_cast<size_t>(kBlock * byte_classes_));
    cls_[static_cast<size_t>(id / kBlock)] = make(static_cast<size_t>(kBlock * levels_kept_));
  }
  states_.push_back(s);
  ids_.emplace(std::move(key), id);
  return id;
}

int32_t TokenMasker::step_slow(int32_t q, unsigned char byte) const {
  std::atomic<int32_t>& m = move(q, byte_class_[byte]);
  std::lock_guard lock(dfa_mu_);
  int32_t r = m.load(std::memory_order_relaxed);
  if (r != kUnknown) return r;
  ConstraintState next = states_[static_cast<size_t>(q)];
  r = next.feed(byte) ? intern_locked(next) : kRefused;
  m.store(r, std::memory_order_release);  // kFull too: the DFA never shrinks
  return r;
}

int32_t TokenMasker::class_of(int32_t q, int height) const {
  std::atomic<int32_t>& at = cls_[static_cast<size_t>(q / kBlock)][static_cast<size_t>(q % kBlock * levels_kept_ + height)];
  int32_t c = at.load(std::memory_order_relaxed);
  if (c != kUnknown) return c;
  std::lock_guard lock(dfa_mu_);
  c = at.load(std::memory_order_relaxed);
  if (c != kUnknown) return c;
  c = -1;
  const GrammarState* gs = states_[static_cast<size_t>(q)].grammar_state();
  if (const std::vector<uint32_t>* cls = table(height); gs && cls) {
    std::string key(reinterpret_cast<const char*>(&height), sizeof height);
    if (key_into(*gs, *cls, key)) c = class_ids_.try_emplace(std::move(key), static_cast<int32_t>(class_ids_.size())).first->second;
  }
  at.store(c, std::memory_order_relaxed);
  return c;
}

void TokenMasker::walk(int32_t node, int32_t q, Words& bits) const {
  const std::vector<TokenTrie::Flat>& flat = trie_.flat_;
  const TokenTrie::Flat& at = flat[static_cast<size_t>(node)];
  uint64_t key = 0;
  bool keyed = false;
  if (at.height > 0 && at.end - at.first >= options_.min_tokens) {
    if (const int32_t c = class_of(q, at.height); c >= 0) {
      key = (static_cast<uint64_t>(node) << 32) | static_cast<uint32_t>(c);
      keyed = true;
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
  const auto own_end = static_cast<size_t>(at.first + at.own);
  for (size_t i = static_cast<size_t>(at.first); i < own_end; ++i) bits[i / 64] |= uint64_t{1} << (i % 64);
  for (int32_t child = at.kids; child < at.kids_end; ++child) {
    const uint8_t byte = flat[static_cast<size_t>(child)].byte;
    const int32_t r = step(q, byte);
    if (r == kRefused) continue;
    if (r == kFull) {
      ConstraintState next;
      {
        std::lock_guard lock(dfa_mu_);
        next = states_[static_cast<size_t>(q)];
      }
      if (next.feed(byte)) walk_copying(child, next, bits);
      continue;
    }
    walk(child, r, bits);
  }
  if (!keyed || at.end == at.first || kept_bytes_.load(std::memory_order_relaxed) >= options_.max_bytes) return;
  const size_t w1 = (static_cast<size_t>(at.end) - 1) / 64;
  Words w(bits.begin() + static_cast<long>(w0), bits.begin() + static_cast<long>(w1) + 1);
  w.front() &= ~uint64_t{0} << (static_cast<size_t>(at.first) % 64);
  if (at.end % 64 != 0) w.back() &= (uint64_t{1} << (static_cast<size_t>(at.end) % 64)) - 1;
  const size_t bytes = w.size() * sizeof(uint64_t) + sizeof key + 64;
  std::unique_lock lock(mu_);
  if (kept_.try_emplace(key, std::move(w)).second) kept_bytes_.fetch_add(bytes, std::memory_order_relaxed);
}

void TokenMasker::walk_copying(int32_t node, const ConstraintState& s, Words& bits) const {
  const std::vector<TokenTrie::Flat>& flat = trie_.flat_;
  const TokenTrie::Flat& at = flat[static_cast<size_t>(node)];
  const auto own_end = static_cast<size_t>(at.first + at.own);
  for (size_t i = static_cast<size_t>(at.first); i < own_end; ++i) bits[i / 64] |= uint64_t{1} << (i % 64);
  for (int32_t child = at.kids; child < at.kids_end; ++child) {
    ConstraintState next = s;
    if (next.feed(flat[static_cast<size_t>(child)].byte)) walk_copying(child, next, bits);
  }
}

void TokenMasker::allowed_bits(const ConstraintState& state, std::vector<uint64_t>& words) const {
  Words bits((trie_.order_.size() + 63) / 64, 0);
  int32_t q = kFull;
  {
    std::lock_guard lock(dfa_mu_);
    q = intern_locked(state);
  }
  // The root's children, the bands' roots, add no byte: each is walked from the state itself.
  const TokenTrie::Flat& root = trie_.flat_[0];
  for (int32_t band = root.kids; band < root.kids_end; ++band) {
    if (q == kFull) {
      walk_copying(band, state, bits);
    } else {
      walk(band, q, bits);
    }
  }
  // The depth-first bits to token ids: the set bits, or, when most are set, the clear ones taken
  // from the tokens with text.
  const size_t n = trie_.order_.size();
  size_t set = 0;
  for (uint64_t x : bits) set += static_cast<size_t>(std::popcount(x));
  auto flip = [&words](int32_t t) { words[static_cast<size_t>(t) / 64] ^= uint64_t{1} << (t % 64); };
  if (set * 2 <= n) {
    words.assign(with_text_.size(), 0);
    for (size_t w = 0; w < bits.size(); ++w)
      for (uint64_t x = bits[w]; x != 0; x &= x - 1) flip(trie_.order_[w * 64 + static_cast<size_t>(std::countr_zero(x))]);
    return;
  }
  words = with_text_;
  for (size_t w = 0; w < bits.size(); ++w) {
    uint64_t x = ~bits[w];
    if (w + 1 == bits.size() && n % 64 != 0) x &= (uint64_t{1} << (n % 64)) - 1;  // past the last token
    for (; x != 0; x &= x - 1) flip(trie_.order_[w * 64 + static_cast<size_t>(std::countr_zero(x))]);
  }
}

void TokenMasker::allowed(const ConstraintState& state, std::vector<uint8_t>& allowed) const {
  std::vector<uint64_t> words;
  allowed_bits(state, words);
  allowed.assign(static_cast<size_t>(trie_.vocab()), 0);
  for (size_t t = 0; t < allowed.size(); ++t) allowed[t] = static_cast<uint8_t>((words[t / 64] >> (t % 64)) & 1);
}

}  // namespace strata::text
