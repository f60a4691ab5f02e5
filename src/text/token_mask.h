// TokenMasker: the tokens a constraint allows next over one TokenTrie, with the trie walks shared
// between states. States that differ only in a count (a bounded string's length so far, an
// array's items, a number's digits) mostly allow the same tokens below a trie node: what a state
// can do with the next d bytes is summed up by writing its positions in level-d classes (below),
// and the result of walking trie node n's subtree, whose tokens add at most height(n) bytes, is
// kept by (n, the state in level-height(n) classes) and reused by every state with that key.
// A Grammar position's level-d class: positions p and q share it when a stack holding p and one
// holding q in its place (its other positions level-d equal) accept the same strings of up to d
// bytes, through the same expansions (edges, calls and rule ends). Classes are computed once per
// masker, up to a level bounded by the grammar's size (a grammar whose classes stop splitting is
// covered at every height). Exact while no feed cuts stacks (GrammarState::kMaxStacks): the key is
// used only for states of at most kMaxKeyedStacks stacks. JSON mode (no grammar) walks the trie.
// The trie and the constraint must outlive the masker. Thread safe: allowed() may run on several
// threads at once (the kept results are shared under a lock).
#pragma once

#include <atomic>
#include <cstdint>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "text/constraint.h"
#include "text/token_trie.h"

namespace strata::text {

class TokenMasker {
 public:
  static constexpr uint32_t kMaxKeyedStacks = 16;
  struct Options {
    // Results are kept for trie nodes with at least this many tokens below (smaller subtrees are
    // walked again: on a 128K vocabulary 256 was faster than 4-96 and than 1024).
    int32_t min_tokens = 256;
    size_t max_bytes = size_t{256} << 20;  // results kept at most; past that, no more are kept
    size_t max_class_entries = size_t{1} << 22;  // positions x levels of the class tables
  };
  TokenMasker(const TokenTrie& trie, const Constraint& constraint) : TokenMasker(trie, constraint, Options()) {}
  TokenMasker(const TokenTrie& trie, const Constraint& constraint, Options options);

  // Sets allowed[t] = 1 for every token whose bytes `state` (a state of the constraint) accepts in
  // full, as TokenTrie::allowed does (allowed is resized to the vocabulary and cleared first).
  void allowed(const ConstraintState& state, std::vector<uint8_t>& allowed) const;

  // The state's stacks in level-`level` classes: equal for two states of the constraint only when
  // they accept the same strings of up to `level` bytes. Empty in JSON mode.
  std::string class_key(const ConstraintState& state, int level) const;
  // Equal for two states of the constraint only when allowed() gives them the same set and both
  // are complete or neither: the class key at the trie's height and completeness. Empty when no
  // class table covers that height or the state has too many stacks (key the state itself then).
  std::string mask_key(const ConstraintState& state) const;
  // Levels with class tables; every level above the last is the last's when `stable()`.
  int levels() const { return static_cast<int>(classes_.size()); }
  bool stable() const { return stable_; }
  size_t kept_bytes() const { return kept_bytes_.load(std::memory_order_relaxed); }

 private:
  using Words = std::vector<uint64_t>;
  // The classes for trie nodes of `height`, or null when no table covers it.
  const std::vector<uint32_t>* table(int height) const;
  // Appends the state's stacks in `cls` classes to `key`; false when it has too many stacks.
  bool key_into(const GrammarState& s, const std::vector<uint32_t>& cls, std::string& key) const;
  void subtree(int32_t node, const GrammarState& s, Words& bits) const;

  const TokenTrie& trie_;
  const Grammar* grammar_;
  Options options_;
  std::vector<std::vector<uint32_t>> classes_;  // by level, then by position
  bool stable_ = false;

  mutable std::shared_mutex mu_;  // guards kept_
  // (node, state in classes) -> the subtree's accepted tokens: the words of the depth-first bits
  // from the node's first token's word on, bits outside the node's range cleared.
  mutable std::unordered_map<std::string, Words> kept_;
  mutable std::atomic<size_t> kept_bytes_{0};
};

}  // namespace strata::text
