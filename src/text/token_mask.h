// TokenMasker: the tokens a constraint allows next over one TokenTrie, with the trie walks shared
// between states. A walk moves through the constraint's states as through a DFA built as it goes:
// each state met is interned once (by ConstraintState::key) and its moves are kept in a row by
// byte class (bytes that every grammar edge treats alike), so a trie node costs a table read, not
// a copy and a feed of the state. States that differ only in a count (a bounded string's length
// so far, an array's items, a number's digits) mostly allow the same tokens below a trie node:
// what a state can do with the next d bytes is summed up by writing its positions in level-d
// classes (below), and the result of walking trie node n's subtree, whose tokens add at most
// height(n) bytes, is kept by (n, the state's level-height(n) class) and reused by every state of
// that class. The trie's tokens are walked in bands of lengths (TokenTrie's flat_), each band's
// root keyed by the class at its longest token: a state near a count's bound (a few characters
// left to a maxLength) thus reuses the walks of the bands whose tokens it cannot tell from its
// neighbours', and walks afresh only the bands of longer tokens.
// A Grammar position's level-d class: positions p and q share it when a stack holding p and one
// holding q in its place (its other positions level-d equal) accept the same strings of up to d
// bytes, through the same expansions (edges, calls and rule ends). Classes are computed once per
// masker, up to a level bounded by the grammar's size (a grammar whose classes stop splitting is
// covered at every height). Exact while no feed cuts stacks (GrammarState::kMaxStacks): the key is
// used only for states of at most kMaxKeyedStacks stacks. JSON mode (no grammar) has no classes:
// its walks use the DFA alone. Past Options::max_states states, walks from a state not interned go
// on by copying and feeding states, as TokenTrie::allowed does.
// The trie and the constraint must outlive the masker. Thread safe: allowed() may run on several
// threads at once (the DFA's rows are read without a lock and grown under one; the kept results
// are shared under a lock).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
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
    // States the DFA interns at most (each a row of 4 bytes per byte class and per trie level).
    size_t max_states = size_t{1} << 16;
  };
  TokenMasker(const TokenTrie& trie, const Constraint& constraint) : TokenMasker(trie, constraint, Options()) {}
  TokenMasker(const TokenTrie& trie, const Constraint& constraint, Options options);

  // The tokens whose bytes `state` (a state of the constraint) accepts in full, as
  // TokenTrie::allowed gives them: a bit a token (token t: bit t % 64 of words[t / 64]; `words`
  // is resized to the vocabulary's words and cleared first).
  void allowed_bits(const ConstraintState& state, std::vector<uint64_t>& words) const;
  // The same, a byte a token: allowed[t] = 1 for an allowed token, else 0.
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
  // States the DFA has interned so far (at most Options::max_states).
  size_t states() const;
  // Byte classes of the DFA's rows: bytes in one class move every state alike.
  int byte_classes() const { return byte_classes_; }

 private:
  using Words = std::vector<uint64_t>;
  // DFA state ids, and what a move gives instead of one.
  static constexpr int32_t kRefused = -1;  // the byte cannot continue the text
  static constexpr int32_t kUnknown = -2;  // not computed yet
  static constexpr int32_t kFull = -3;     // the target state would pass max_states
  // The DFA's tables come in blocks of kBlock states: a state's moves by byte class, and its
  // class id by level (kUnknown until computed; -1: no class). Made and filled under dfa_mu_, read
  // without it (a state's id reaches another thread through a move stored with release).
  static constexpr int32_t kBlock = 256;
  using Table = std::unique_ptr<std::atomic<int32_t>[]>;
  std::atomic<int32_t>& move(int32_t q, int byte_class) const {
    return next_[static_cast<size_t>(q / kBlock)][static_cast<size_t>(q % kBlock * byte_classes_ + byte_class)];
  }

  // The classes for trie nodes of `height`, or null when no table covers it.
  const std::vector<uint32_t>* table(int height) const;
  // Appends the state's stacks in `cls` classes to `key`; false when it has too many stacks.
  bool key_into(const GrammarState& s, const std::vector<uint32_t>& cls, std::string& key) const;
  // The id of state `s`, interning it; kFull when it is new and the DFA is full. Holds dfa_mu_.
  int32_t intern_locked(const ConstraintState& s) const;
  // State q's move on `byte`: an id, kRefused or kFull. The slow path computes it under dfa_mu_.
  int32_t step(int32_t q, unsigned char byte) const {
    // Acquire: the target's block, made before the move was stored, is then visible here.
    const int32_t r = move(q, byte_class_[byte]).load(std::memory_order_acquire);
    return r != kUnknown ? r : step_slow(q, byte);
  }
  int32_t step_slow(int32_t q, unsigned char byte) const;
  // State q's level-`height` class id (equal for two states exactly when their level-height class
  // keys are), or -1 when it has none.
  int32_t class_of(int32_t q, int height) const;
  // Sets bits[i] for each token order_[i] of the subtree of `node` (an index of the trie's flat_)
  // that the state after the node's bytes (DFA state q, or `s` itself) accepts.
  void walk(int32_t node, int32_t q, Words& bits) const;
  void walk_copying(int32_t node, const ConstraintState& s, Words& bits) const;

  const TokenTrie& trie_;
  const Grammar* grammar_;
  Options options_;
  std::vector<std::vector<uint32_t>> classes_;  // by level, then by position
  bool stable_ = false;
  std::array<uint8_t, 256> byte_class_{};  // byte -> its class (a column of the rows)
  int byte_classes_ = 256;
  int levels_kept_ = 0;  // class ids a row holds: levels 0 .. the trie's height
  std::vector<uint64_t> with_text_;  // a bit a token: set when its text is not empty (it is in the trie)

  // The DFA: next_ and cls_ hold max_states / kBlock block pointers from the start (never moving);
  // the blocks of states [0, states_.size()) are made.
  mutable std::mutex dfa_mu_;  // guards states_, ids_, class_ids_ and the making of blocks
  mutable std::vector<Table> next_, cls_;
  mutable std::vector<ConstraintState> states_;                 // by id
  mutable std::unordered_map<std::string, int32_t> ids_;        // key() -> id
  mutable std::unordered_map<std::string, int32_t> class_ids_;  // level and class key -> class id

  mutable std::shared_mutex mu_;  // guards kept_
  // (flat node << 32 | the state's class id at the node's height) -> the subtree's accepted tokens:
  // the words of the depth-first bits from the node's first token's word on, bits outside the
  // node's range cleared.
  mutable std::unordered_map<uint64_t, Words> kept_;
  mutable std::atomic<size_t> kept_bytes_{0};
};

}  // namespace strata::text
