// TokenTrie: the bytes each token adds to the text mid-sequence, in a trie, for masking a
// constrained generation's next token: allowed() walks the trie with a byte automaton (feed(byte)
// returning whether the text can go on), copying its state at each branch and leaving a subtree
// as soon as its prefix is refused, so a step costs the prefixes the automaton accepts rather than
// a pass over the vocabulary. Tokens whose text is empty (special tokens) are never allowed by it.
// Immutable after construction; thread safe. TokenMasker (token_mask.h) walks the same tokens with
// work shared between states, through a second layout kept here (flat_): one trie per band of
// token lengths (tokens of 1 byte, 2, ..., 13-14, ...), so that a subtree's height, which bounds
// what a state must be told apart by to reuse another's walk of it, is the band's longest token
// rather than the vocabulary's; with node heights, depth-first token ranges, the nodes in one array.
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
    // Set in the banded layout only: bytes the longest token below adds after this node's, and
    // the subtree's tokens as order_[first, end) (the node's own, then each child's in turn).
    int32_t height = 0;
    int32_t first = 0, end = 0;
  };

  // A node in the array flat_ (the root at 0), where each node's children lie side by side, in the
  // order of Node::children: a walk reads a node's children, bytes and all, from one place, and
  // what it needs to enter one is in the entry it has just read. The root's children are the
  // bands' roots: entered without a byte (their `byte` is 0 and means nothing), each the root of
  // the trie of the tokens of one band of lengths, shortest band first.
  struct Flat {
    int32_t first, end;      // the subtree's tokens: order_[first, end)
    int32_t own;             // tokens whose text ends here: order_[first, first + own)
    int32_t height;          // as Node::height
    int32_t kids, kids_end;  // its children: flat_[kids, kids_end)
    uint8_t byte;            // the byte from its parent (0 at the root)
  };

  void insert(int32_t id);
  // Adds token t, whose text is `text`, below `root` of `nodes` (its bytes' path made as needed).
  static void add_path(std::vector<Node>& nodes, int32_t root, const std::string& text, int32_t t);
  void index();  // height_, order_ and flat_ (the banded layout), once every token is inserted

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
  std::vector<Node> nodes_;        // one trie of every token, for allowed()
  int32_t height_ = 0;             // the longest token's bytes
  std::vector<int32_t> order_;     // the tokens with text, band by band, depth first
  std::vector<Flat> flat_;         // the banded nodes, each one's children together, the root at 0
};

}  // namespace strata::text
