// TokenTrie: the bytes each token adds to the text mid-sequence, in a trie, for masking a
// constrained generation's next token: allowed() walks the trie with a byte automaton (feed(byte)
// returning whether the text can go on), copying its state at each branch and leaving a subtree
// as soon as its prefix is refused, so a step costs the prefixes the automaton accepts rather than
// a pass over the vocabulary. Tokens whose text is empty (special tokens) are never allowed by it.
// Immutable after construction; thread safe. TokenMasker (token_mask.h) walks the same trie with
// work shared between states, through the node heights, depth-first token ranges and the nodes laid
// out in one array (flat_) kept here.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "text/tokenizer.h"

namespace strata::text {

class TokenTrie {
 public:
  // The first `vocab` ids (the model's vocabulary) of `tok`.
  TokenTrie(const Tokenizer& tok, int64_t vocab);
  // A vocabulary given as each token's bytes (benchmarks, tests).
  explicit TokenTrie(std::vector<std::string> texts);

  int64_t vocab() const { return static_cast<int64_t>(texts_.size()); }
  // The bytes token `id` adds mid-sequence ("" for special tokens).
  const std::string& text(int32_t id) const { return texts_[static_cast<size_t>(id)]; }

  // Sets allowed[t] = 1 for every token whose bytes `state` accepts in full (allowed is resized to
  // vocab() and cleared first). Automaton: copyable, with bool feed(unsigned char).
  template <typename Automaton>
  void allowed(const Automaton& state, std::vector<uint8_t>& allowed) const {
    allowed.assign(texts_.size(), 0);
    walk(0, state, allowed);
  }

 private:
  friend class TokenMasker;
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> children;  // byte -> node
    std::vector<int32_t> tokens;                              // tokens whose text ends here
    int32_t height = 0;  // bytes the longest token below adds after this node's
    // The subtree's tokens are order_[first, end): the node's own, then each child's in turn.
    int32_t first = 0, end = 0;
  };

  // A node in the array flat_ (the root at 0), where each node's children lie side by side, in the
  // order of Node::children: a walk reads a node's children, bytes and all, from one place, and
  // what it needs to enter one is in the entry it has just read.
  struct Flat {
    int32_t first, end;      // the subtree's tokens: order_[first, end)
    int32_t own;             // tokens whose text ends here: order_[first, first + own)
    int32_t height;          // as Node::height
    int32_t kids, kids_end;  // its children: flat_[kids, kids_end)
    uint8_t byte;            // the byte from its parent (0 at the root)
  };

  void insert(int32_t id);
  void index();  // heights, token ranges, order_ and flat_, once every token is inserted

  template <typename Automaton>
  void walk(int32_t node, const Automaton& state, std::vector<uint8_t>& allowed) const {
    for (const auto& [byte, child] : nodes_[static_cast<size_t>(node)].children) {
      Automaton next = state;
      if (!next.feed(byte)) continue;
      for (int32_t t : nodes_[static_cast<size_t>(child)].tokens) allowed[static_cast<size_t>(t)] = 1;
      walk(child, next, allowed);
    }
  }

  std::vector<std::string> texts_;
  std::vector<Node> nodes_;
  std::vector<int32_t> order_;     // the tokens with text, depth first
  std::vector<Flat> flat_;         // the nodes, each one's children together, the root at 0
};

}  // namespace strata::text
