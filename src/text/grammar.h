// Grammar: a byte-level recursive transition network for constrained generation. Each rule is a
// small automaton whose edges consume a byte range or call another rule; regexes, choices and
// JSON Schemas compile to one (regex_grammar.h, json_schema.h). GrammarBuilder assembles rules
// from Thompson-style fragments and finish() removes the empty moves, so a position holds only
// byte edges, calls and whether its rule may end there. GrammarState walks a Grammar byte by byte:
// it keeps the set of call stacks (return positions, bottom first, the current position on top)
// that the text so far may be in, so it is a small value to copy while a token trie is searched.
// Stacks deeper than kMaxDepth and sets of more than kMaxStacks stacks are cut (a recursive schema
// nests at most that deep). A Grammar is immutable once built and may be shared between threads;
// a GrammarState is not thread safe.
#pragma once

#include <array>
#include <bitset>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace strata::text {

class Grammar {
 public:
  struct Edge {
    uint8_t lo, hi;  // the byte range [lo, hi]
    uint32_t to;
  };
  struct Call {
    uint32_t rule, ret;  // enter `rule`; when it ends, go on at position `ret`
  };
  struct Position {
    std::vector<Edge> edges;
    std::vector<Call> calls;
    bool final = false;  // the rule may end here
  };

  uint32_t root() const { return root_; }
  uint32_t start(uint32_t rule) const { return starts_[rule]; }
  const Position& at(uint32_t p) const { return positions_[p]; }
  size_t positions() const { return positions_.size(); }

 private:
  friend class GrammarBuilder;
  std::vector<Position> positions_;
  std::vector<uint32_t> starts_;  // by rule
  uint32_t root_ = 0;
};

// Builds a Grammar. A Frag is a piece of automaton entered at `in` and left at `out`; the
// combinators wire pieces together and never copy them (build a piece again to repeat it). Not
// thread safe.
class GrammarBuilder {
 public:
  struct Frag {
    uint32_t in, out;
  };
  // The builder refuses to grow past this many positions (finish() says so).
  static constexpr size_t kMaxNodes = 1 << 21;

  Frag empty();
  Frag range(uint8_t lo, uint8_t hi);
  Frag bytes(const std::bitset<256>& set);
  Frag literal(std::string_view s);
  Frag seq(Frag a, Frag b);
  Frag alt(const std::vector<Frag>& options);
  Frag optional(Frag a);
  Frag star(Frag a);  // zero or more
  Frag plus(Frag a);  // one or more
  // min to max (-1: no limit) pieces, each made by `make`.
  Frag repeat(const std::function<Frag()>& make, int min, int max);
  // A trie of the strings: exactly one of them (shared prefixes are walked once).
  Frag one_of(const std::vector<std::string>& strings);

  uint32_t new_rule();  // a rule to define later; calls to it may be made before
  void define(uint32_t rule, Frag body);
  Frag call(uint32_t rule);

  // The grammar whose text is `root`'s. Errors: a rule called but not defined, too many positions.
  Result<Grammar> finish(uint32_t root) const;
  bool too_big() const { return nodes_.size() > kMaxNodes; }

 private:
  struct Node {
    std::vector<uint32_t> eps;
    std::vector<Grammar::Edge> edges;
    std::vector<Grammar::Call> calls;
  };
  uint32_t node();

  std::vector<Node> nodes_;
  std::vector<Frag> rules_;  // by rule; in == UINT32_MAX until defined
};

class GrammarState {
 public:
  static constexpr int kMaxDepth = 64;
  static constexpr int kMaxStacks = 256;

  GrammarState() = default;
  // At the start of `g`'s root rule. `g` must outlive the state.
  explicit GrammarState(const Grammar& g);

  // False when `c` cannot continue the text; the state is then unchanged.
  bool feed(unsigned char c);
  // The text so far is a whole sentence of the grammar.
  bool complete() const { return accept_; }
  // Nothing can follow the text (complete() or not).
  bool dead_end() const { return size_ == 0; }
  // Bytes equal for two states of one grammar exactly when they are the same state.
  std::string key() const;
  // The stacks, flat: for each, its size then its positions (bottom first); sorted, no repeats.
  const uint32_t* stacks() const { return data(); }
  uint32_t stacks_size() const { return size_; }

 private:
  static constexpr size_t kInline = 30;
  void expand(std::vector<uint32_t>& stack, std::vector<uint32_t>& out, size_t& count, bool& accept,
              int& budget) const;
  const uint32_t* data() const { return big_.empty() ? small_.data() : big_.data(); }
  void set(const std::vector<uint32_t>& flat);

  const Grammar* g_ = nullptr;
  // The stacks, flat and sorted: for each, its size then its positions (bottom first). Every top
  // has byte edges. Held inline when short (a copy is then one small memcpy), else in big_.
  std::array<uint32_t, kInline> small_{};
  std::vector<uint32_t> big_;
  uint32_t size_ = 0;
  bool accept_ = false;
};

}  // namespace strata::text
