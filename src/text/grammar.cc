#include "text/grammar.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <tuple>

namespace strata::text {

uint32_t GrammarBuilder::node() {
  nodes_.emplace_back();
  return static_cast<uint32_t>(nodes_.size() - 1);
}

GrammarBuilder::Frag GrammarBuilder::empty() {
  const uint32_t n = node();
  return {n, n};
}

GrammarBuilder::Frag GrammarBuilder::range(uint8_t lo, uint8_t hi) {
  const uint32_t a = node(), b = node();
  nodes_[a].edges.push_back({lo, hi, b});
  return {a, b};
}

GrammarBuilder::Frag GrammarBuilder::bytes(const std::bitset<256>& set) {
  const uint32_t a = node(), b = node();
  for (int c = 0; c < 256;) {
    if (!set[static_cast<size_t>(c)]) {
      ++c;
      continue;
    }
    int d = c;
    while (d + 1 < 256 && set[static_cast<size_t>(d + 1)]) ++d;
    nodes_[a].edges.push_back({static_cast<uint8_t>(c), static_cast<uint8_t>(d), b});
    c = d + 1;
  }
  return {a, b};
}

GrammarBuilder::Frag GrammarBuilder::literal(std::string_view s) {
  Frag f = empty();
  for (unsigned char c : s) f = seq(f, range(c, c));
  return f;
}

GrammarBuilder::Frag GrammarBuilder::seq(Frag a, Frag b) {
  nodes_[a.out].eps.push_back(b.in);
  return {a.in, b.out};
}

GrammarBuilder::Frag GrammarBuilder::alt(const std::vector<Frag>& options) {
  const uint32_t in = node(), out = node();
  for (const Frag& f : options) {
    nodes_[in].eps.push_back(f.in);
    nodes_[f.out].eps.push_back(out);
  }
  return {in, out};
}

GrammarBuilder::Frag GrammarBuilder::optional(Frag a) {
  // New ends: a's own may lie on a loop (a star), whose edges must not become skippable.
  const uint32_t in = node(), out = node();
  nodes_[in].eps.push_back(a.in);
  nodes_[in].eps.push_back(out);
  nodes_[a.out].eps.push_back(out);
  return {in, out};
}

GrammarBuilder::Frag GrammarBuilder::star(Frag a) {
  const uint32_t n = node();
  nodes_[n].eps.push_back(a.in);
  nodes_[a.out].eps.push_back(n);
  return {n, n};
}

GrammarBuilder::Frag GrammarBuilder::plus(Frag a) {
  const uint32_t out = node();
  nodes_[a.out].eps.push_back(a.in);
  nodes_[a.out].eps.push_back(out);
  return {a.in, out};
}

GrammarBuilder::Frag GrammarBuilder::repeat(const std::function<Frag()>& make, int min, int max) {
  Frag f = empty();
  for (int i = 0; i < min; ++i) f = seq(f, make());
  if (max < 0) return seq(f, star(make()));
  if (max > min) {
    // Every optional copy may be the last: each joint jumps straight to the end, so no position
    // has a long chain of empty moves.
    const uint32_t end = node();
    for (int i = min; i < max; ++i) {
      nodes_[f.out].eps.push_back(end);
      f = seq(f, make());
    }
    nodes_[f.out].eps.push_back(end);
    f.out = end;
  }
  return f;
}

GrammarBuilder::Frag GrammarBuilder::one_of(const std::vector<std::string>& strings) {
  const uint32_t root = node(), out = node();
  std::map<std::pair<uint32_t, unsigned char>, uint32_t> child;
  for (const std::string& s : strings) {
    uint32_t at = root;
    for (unsigned char c : s) {
      auto [it, fresh] = child.try_emplace({at, c}, 0);
      if (fresh) {
        it->second = node();
        nodes_[at].edges.push_back({c, c, it->second});
      }
      at = it->second;
    }
    if (std::find(nodes_[at].eps.begin(), nodes_[at].eps.end(), out) == nodes_[at].eps.end())
      nodes_[at].eps.push_back(out);
  }
  return {root, out};
}

uint32_t GrammarBuilder::new_rule() {
  rules_.push_back({UINT32_MAX, UINT32_MAX});
  return static_cast<uint32_t>(rules_.size() - 1);
}

void GrammarBuilder::define(uint32_t rule, Frag body) { rules_[rule] = body; }

GrammarBuilder::Frag GrammarBuilder::call(uint32_t rule) {
  const uint32_t a = node(), b = node();
  nodes_[a].calls.push_back({rule, b});
  return {a, b};
}

Result<Grammar> GrammarBuilder::finish(uint32_t root) const {
  if (too_big())
    return invalid_argument("the constraint compiles to more than " + std::to_string(kMaxNodes) +
                            " automaton positions; use smaller repetition counts, lengths or enums");
  std::vector<uint8_t> is_out(nodes_.size(), 0);
  for (size_t r = 0; r < rules_.size(); ++r) {
    if (rules_[r].in == UINT32_MAX) return internal_error("grammar rule " + std::to_string(r) + " is not defined");
    is_out[rules_[r].out] = 1;
  }
  Grammar g;
  std::vector<uint32_t> id(nodes_.size(), UINT32_MAX);  // old node -> position
  std::vector<uint32_t> work;
  auto position = [&](uint32_t n) {
    if (id[n] == UINT32_MAX) {
      id[n] = static_cast<uint32_t>(g.positions_.size());
      g.positions_.emplace_back();
      work.push_back(n);
    }
    return id[n];
  };
  for (const Frag& r : rules_) g.starts_.push_back(position(r.in));
  g.root_ = root;
  std::vector<uint32_t> seen(nodes_.size(), UINT32_MAX), stack, closure;
  while (!work.empty()) {
    const uint32_t n = work.back();
    work.pop_back();
    // The nodes reachable from n by empty moves.
    closure.clear();
    stack.assign(1, n);
    seen[n] = n;
    while (!stack.empty()) {
      const uint32_t m = stack.back();
      stack.pop_back();
      closure.push_back(m);
      for (uint32_t e : nodes_[m].eps)
        if (seen[e] != n) {
          seen[e] = n;
          stack.push_back(e);
        }
    }
    Grammar::Position p;
    for (uint32_t m : closure) {
      if (is_out[m]) p.final = true;
      for (const Grammar::Edge& e : nodes_[m].edges) p.edges.push_back(e);
      for (const Grammar::Call& c : nodes_[m].calls) p.calls.push_back(c);
    }
    for (auto& e : p.edges) e.to = position(e.to);
    for (auto& c : p.calls) c.ret = position(c.ret);
    std::sort(p.edges.begin(), p.edges.end(),
              [](const auto& a, const auto& b) { return std::tie(a.to, a.lo) < std::tie(b.to, b.lo); });
    std::vector<Grammar::Edge> merged;
    for (const auto& e : p.edges) {
      if (!merged.empty() && merged.back().to == e.to && e.lo <= merged.back().hi + 1) {
        merged.back().hi = std::max(merged.back().hi, e.hi);
      } else {
        merged.push_back(e);
      }
    }
    std::sort(merged.begin(), merged.end(), [](const auto& a, const auto& b) { return a.lo < b.lo; });
    p.edges = std::move(merged);
    std::sort(p.calls.begin(), p.calls.end(),
              [](const auto& a, const auto& b) { return std::tie(a.rule, a.ret) < std::tie(b.rule, b.ret); });
    p.calls.erase(std::unique(p.calls.begin(), p.calls.end(),
                              [](const auto& a, const auto& b) { return a.rule == b.rule && a.ret == b.ret; }),
                  p.calls.end());
    g.positions_[id[n]] = std::move(p);
  }
  return g;
}

namespace {

// Sorts and deduplicates flat stacks (size, then positions) so that equal sets have equal bytes.
void canonical(std::vector<uint32_t>& out) {
  if (out.empty() || out[0] + 1 == out.size()) return;  // one stack
  std::vector<std::pair<size_t, size_t>> spans;  // [begin, end) in out
  for (size_t i = 0; i < out.size(); i += out[i] + 1) spans.emplace_back(i, i + out[i] + 1);
  auto less = [&](const auto& a, const auto& b) {
    return std::lexicographical_compare(out.begin() + static_cast<long>(a.first), out.begin() + static_cast<long>(a.second),
                                        out.begin() + static_cast<long>(b.first), out.begin() + static_cast<long>(b.second));
  };
  std::sort(spans.begin(), spans.end(), less);
  std::vector<uint32_t> sorted;
  sorted.reserve(out.size());
  for (size_t k = 0; k < spans.size(); ++k) {
    if (k > 0 && !less(spans[k - 1], spans[k])) continue;
    sorted.insert(sorted.end(), out.begin() + static_cast<long>(spans[k].first), out.begin() + static_cast<long>(spans[k].second));
  }
  out.swap(sorted);
}

}  // namespace

void GrammarState::set(const std::vector<uint32_t>& flat) {
  size_ = static_cast<uint32_t>(flat.size());
  if (flat.size() <= kInline) {
    std::copy(flat.begin(), flat.end(), small_.begin());
    big_.clear();
  } else {
    big_ = flat;
  }
}

GrammarState::GrammarState(const Grammar& g) : g_(&g) {
  std::vector<uint32_t> stack{g.start(g.root())}, out;
  int budget = 1 << 16;
  size_t count = 0;
  expand(stack, out, count, accept_, budget);
  canonical(out);
  set(out);
}

// Follows `stack`'s top through calls and rule ends until each branch reaches a position with byte
// edges (appended to `out`, size first; `count` stacks so far) or ends the root rule (`accept`).
void GrammarState::expand(std::vector<uint32_t>& stack, std::vector<uint32_t>& out, size_t& count, bool& accept,
                          int& budget) const {
  if (--budget < 0) return;
  const Grammar::Position& p = g_->at(stack.back());
  if (!p.edges.empty() && count < kMaxStacks) {
    ++count;
    out.push_back(static_cast<uint32_t>(stack.size()));
    out.insert(out.end(), stack.begin(), stack.end());
  }
  if (p.final) {
    if (stack.size() == 1) {
      accept = true;
    } else {
      const uint32_t top = stack.back();
      stack.pop_back();
      expand(stack, out, count, accept, budget);
      stack.push_back(top);
    }
  }
  if (static_cast<int>(stack.size()) >= kMaxDepth) return;
  for (const Grammar::Call& c : p.calls) {
    const uint32_t top = stack.back();
    stack.back() = c.ret;
    stack.push_back(g_->start(c.rule));
    expand(stack, out, count, accept, budget);
    stack.pop_back();
    stack.back() = top;
  }
}

bool GrammarState::feed(unsigned char c) {
  // Fast path, the common case inside a rule: one stack whose top has one edge for c, to a
  // position that neither calls nor may end its rule. The general path below gives the same.
  if (size_ > 0 && data()[0] + 1 == size_) {
    uint32_t* st = big_.empty() ? small_.data() : big_.data();
    const Grammar::Position& p = g_->at(st[size_ - 1]);
    const Grammar::Edge* hit = nullptr;
    int hits = 0;
    for (const Grammar::Edge& e : p.edges) {
      if (c < e.lo) break;
      if (c > e.hi) continue;
      hit = &e;
      ++hits;
    }
    if (hits == 0) return false;
    if (hits == 1) {
      const Grammar::Position& q = g_->at(hit->to);
      if (!q.edges.empty() && q.calls.empty() && !q.final) {
        st[size_ - 1] = hit->to;
        accept_ = false;
        return true;
      }
    }
  }
  thread_local std::vector<uint32_t> out, stack;
  out.clear();
  bool accept = false;
  int budget = 1 << 16;
  size_t count = 0;
  const uint32_t* st = data();
  for (size_t i = 0; i < size_; i += st[i] + 1) {
    const uint32_t n = st[i];
    const uint32_t top = st[i + n];
    for (const Grammar::Edge& e : g_->at(top).edges) {
      if (c < e.lo) break;
      if (c > e.hi) continue;
      stack.assign(st + i + 1, st + i + 1 + n);
      stack.back() = e.to;
      expand(stack, out, count, accept, budget);
    }
  }
  if (out.empty() && !accept) return false;
  canonical(out);
  set(out);
  accept_ = accept;
  return true;
}

std::string GrammarState::key() const {
  std::string k(size_ * sizeof(uint32_t) + 1, '\0');
  if (size_ > 0) std::memcpy(k.data(), data(), size_ * sizeof(uint32_t));
  k.back() = accept_ ? 1 : 0;
  return k;
}

}  // namespace strata::text
