#include "text/token_trie.h"

#include <algorithm>
#include <cstdlib>
#include <optional>

#include "text/utf8.h"

namespace strata::text {

namespace {

// The raw bytes of a token that holds part of a UTF-8 character (its decoded text shows U+FFFD):
// a byte-fallback token "<0xXX>", or a byte-level BPE token spelled in GPT-2's byte alphabet.
// nullopt for any other token.
std::optional<std::string> partial_utf8_bytes(const Tokenizer& tok, int32_t id) {
  const std::optional<std::string> piece = tok.id_to_token(id);
  if (!piece) return std::nullopt;
  const std::string& p = *piece;
  if (p.size() == 6 && p.compare(0, 3, "<0x") == 0 && p[5] == '>') {
    const std::string hex = p.substr(3, 2);
    char* end = nullptr;
    const long v = std::strtol(hex.c_str(), &end, 16);
    if (end != hex.c_str() + 2) return std::nullopt;
    return std::string(1, static_cast<char>(v));
  }
  std::string bytes;
  size_t i = 0;
  while (i < p.size()) {
    const int b = unicode_to_byte(next_code_point(p, i));
    if (b < 0) return std::nullopt;
    bytes += static_cast<char>(b);
  }
  return bytes;
}

}  // namespace

TokenTrie::TokenTrie(const Tokenizer& tok, int64_t vocab) {
  // A token's text mid-sequence: what it adds after a plain token, so that decoders which drop a
  // leading space at the start of the text (SentencePiece's) do not change it.
  const std::vector<int32_t> ref = tok.encode("a", /*add_special_tokens=*/false);
  const int32_t anchor = ref.empty() ? -1 : ref.back();
  const std::string anchor_text = anchor >= 0 ? tok.decode(std::span<const int32_t>(&anchor, 1), true) : "";
  texts_.resize(static_cast<size_t>(std::max<int64_t>(vocab, 0)));
  nodes_.emplace_back();
  for (int64_t id = 0; id < vocab; ++id) {
    const int32_t t = static_cast<int32_t>(id);
    std::string text;
    if (anchor >= 0) {
      const int32_t pair[2] = {anchor, t};
      const std::string both = tok.decode(pair, /*skip_special_tokens=*/true);
      if (both.size() > anchor_text.size() && both.compare(0, anchor_text.size(), anchor_text) == 0)
        text = both.substr(anchor_text.size());
    } else {
      text = tok.decode(std::span<const int32_t>(&t, 1), true);
    }
    // Decoded alone, part of a character reads as U+FFFD; the trie needs its bytes, which the
    // characters' other tokens complete.
    if (text.find("\xEF\xBF\xBD") != std::string::npos)
      if (auto raw = partial_utf8_bytes(tok, t); raw && utf8_lossy(*raw) != *raw) text = *raw;
    texts_[static_cast<size_t>(id)] = text;
    insert(t);
  }
  index();
}

TokenTrie::TokenTrie(std::vector<std::string> texts) : texts_(std::move(texts)) {
  nodes_.emplace_back();
  for (size_t id = 0; id < texts_.size(); ++id) insert(static_cast<int32_t>(id));
  index();
}

namespace {

// Upper bounds, in bytes, of the length bands that TokenMasker walks one at a time (the last is
// open). A band per length for short tokens, wider bands for long ones: on a 128K vocabulary this
// walked bounded strings faster than bands of 2-8 lengths and than a band per length up to 32.
constexpr int32_t kBands[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 18, 20, 22, 24, 28, 32, 40};

}  // namespace

void TokenTrie::index() {
  height_ = 0;
  for (const std::string& t : texts_) height_ = std::max(height_, static_cast<int32_t>(t.size()));
  // The tokens again, in one trie per length band below a root that adds no byte.
  std::vector<Node> nodes(1);
  for (size_t b = 0; b <= std::size(kBands); ++b) {
    const int32_t lo = b == 0 ? 1 : kBands[b - 1] + 1;
    const int32_t hi = b < std::size(kBands) ? kBands[b] : height_;
    if (lo > hi) break;
    const auto root = static_cast<int32_t>(nodes.size());
    nodes.emplace_back();
    bool any = false;
    for (size_t id = 0; id < texts_.size(); ++id) {
      const std::string& text = texts_[id];
      const auto size = static_cast<int32_t>(text.size());
      if (size < lo || size > hi) continue;
      any = true;
      add_path(nodes, root, text, static_cast<int32_t>(id));
    }
    if (any) {
      nodes[0].children.emplace_back(0, root);
    } else {
      nodes.pop_back();
    }
  }

  order_.clear();
  // Depth first without recursion: a node is entered (its range opens, its tokens are listed) when
  // first met and left (its range closes, its height is known) after its children.
  std::vector<std::pair<int32_t, size_t>> path{{0, 0}};  // node, next child
  nodes[0].first = 0;
  while (!path.empty()) {
    auto& [n, next] = path.back();
    Node& node = nodes[static_cast<size_t>(n)];
    if (next < node.children.size()) {
      const int32_t c = node.children[next++].second;
      Node& child = nodes[static_cast<size_t>(c)];
      child.first = static_cast<int32_t>(order_.size());
      order_.insert(order_.end(), child.tokens.begin(), child.tokens.end());
      path.emplace_back(c, 0);
      continue;
    }
    node.end = static_cast<int32_t>(order_.size());
    node.height = 0;
    for (const auto& [byte, c] : node.children)
      node.height = std::max(node.height, nodes[static_cast<size_t>(c)].height + 1);
    path.pop_back();
  }
  nodes[0].height = height_;  // its children add no byte
  // The same nodes in one array, breadth first, so that each node's children lie side by side.
  flat_.assign(nodes.size(), {});
  auto entry = [&](int32_t n, uint8_t byte) {
    const Node& node = nodes[static_cast<size_t>(n)];
    return Flat{node.first, node.end, static_cast<int32_t>(node.tokens.size()), node.height, 0, 0, byte};
  };
  flat_[0] = entry(0, 0);
  std::vector<int32_t> queue{0};  // by flat index: the node there
  int32_t placed = 1;
  for (size_t i = 0; i < queue.size(); ++i) {
    const Node& node = nodes[static_cast<size_t>(queue[i])];
    flat_[i].kids = placed;
    for (const auto& [byte, c] : node.children) {
      flat_[static_cast<size_t>(placed++)] = entry(c, byte);
      queue.push_back(c);
    }
    flat_[i].kids_end = placed;
  }
}

void TokenTrie::insert(int32_t t) {
  const std::string& text = texts_[static_cast<size_t>(t)];
  if (!text.empty()) add_path(nodes_, 0, text, t);
}

void TokenTrie::add_path(std::vector<Node>& nodes, int32_t root, const std::string& text, int32_t t) {
  int32_t node = root;
  for (unsigned char c : text) {
    auto& children = nodes[static_cast<size_t>(node)].children;
    auto it = std::find_if(children.begin(), children.end(), [c](const auto& e) { return e.first == c; });
    if (it != children.end()) {
      node = it->second;
    } else {
      const auto next = static_cast<int32_t>(nodes.size());
      nodes[static_cast<size_t>(node)].children.emplace_back(c, next);
      nodes.emplace_back();
      node = next;
    }
  }
  nodes[static_cast<size_t>(node)].tokens.push_back(t);
}

}  // namespace strata::text
