#include "text/regex_grammar.h"

#include <algorithm>
#include <bitset>
#include <cstdio>
#include <utility>
#include <vector>

namespace strata::text {

namespace {

constexpr uint32_t kMaxCodePoint = 0x10FFFF;

// A set of code points as sorted, disjoint, non-adjacent ranges.
using CharSet = std::vector<std::pair<uint32_t, uint32_t>>;

CharSet normalized(CharSet s) {
  std::sort(s.begin(), s.end());
  CharSet out;
  for (const auto& r : s) {
    if (!out.empty() && r.first <= out.back().second + 1) out.back().second = std::max(out.back().second, r.second);
    else out.push_back(r);
  }
  return out;
}

// Code points up to `limit` not in `s` (surrogates never: they have no UTF-8).
CharSet complement(const CharSet& s, uint32_t limit) {
  CharSet out;
  uint32_t next = 0;
  for (const auto& [lo, hi] : normalized(s)) {
    if (lo > next) out.emplace_back(next, std::min(lo - 1, limit));
    next = hi + 1;
    if (next > limit) break;
  }
  if (next <= limit) out.emplace_back(next, limit);
  CharSet cut;
  for (const auto& [lo, hi] : out) {
    if (lo > limit) continue;
    if (hi < 0xD800 || lo > 0xDFFF) {
      cut.emplace_back(lo, hi);
      continue;
    }
    if (lo < 0xD800) cut.emplace_back(lo, 0xD7FF);
    if (hi > 0xDFFF) cut.emplace_back(0xE000, hi);
  }
  return cut;
}

const CharSet kDigit = {{'0', '9'}};
const CharSet kWord = {{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}};
const CharSet kSpace = {{'\t', '\r'}, {' ', ' '}};
// Every character Python's \s matches, so that \S is exactly Python's.
const CharSet kPythonSpace = {{'\t', '\r'}, {0x1C, 0x1F}, {' ', ' '}, {0x85, 0x85}, {0xA0, 0xA0}, {0x1680, 0x1680},
                              {0x2000, 0x200A}, {0x2028, 0x2029}, {0x202F, 0x202F}, {0x205F, 0x205F}, {0x3000, 0x3000}};

struct Node {
  enum Kind { kEmpty, kSet, kSeq, kAlt, kRepeat } kind = kEmpty;
  CharSet set;
  std::vector<Node> kids;
  int min = 0, max = 0;  // kRepeat; max -1: no limit
};

class Parser {
 public:
  Parser(std::string_view p, std::string what) : p_(p), what_(std::move(what)) {}

  Result<Node> parse_all() {
    auto n = parse_alt(0);
    if (!n.is_ok()) return n;
    if (i_ < p_.size()) return fail("unbalanced ')'");
    return n;
  }

 private:
  Status fail(const std::string& msg) const {
    return invalid_argument(what_ + ": " + msg + " at offset " + std::to_string(i_) + " of the pattern");
  }
  Status unsupported_construct(const std::string& name) const {
    return unsupported(what_ + ": " + name + " at offset " + std::to_string(i_) +
                       " of the pattern is not supported (literals, classes, groups, alternation and "
                       "quantifiers are)");
  }
  bool at_end() const { return i_ >= p_.size(); }
  char peek() const { return p_[i_]; }

  Result<Node> parse_alt(int depth) {
    if (depth > 64) return fail("groups nest deeper than 64");
    std::vector<Node> options;
    while (true) {
      auto s = parse_seq(depth);
      if (!s.is_ok()) return s;
      options.push_back(std::move(*s));
      if (at_end() || peek() != '|') break;
      ++i_;
    }
    if (options.size() == 1) return std::move(options[0]);
    Node n;
    n.kind = Node::kAlt;
    n.kids = std::move(options);
    return n;
  }

  Result<Node> parse_seq(int depth) {
    Node seq;
    seq.kind = Node::kSeq;
    while (!at_end() && peek() != '|' && peek() != ')') {
      auto a = parse_atom(depth);
      if (!a.is_ok()) return a;
      Node atom = std::move(*a);
      bool repeated = false;  // one quantifier per atom, as Python's re says ("multiple repeat")
      while (!at_end()) {
        int lo = 0, hi = 0;
        const size_t at = i_;
        const char c = peek();
        if (c == '*') lo = 0, hi = -1, ++i_;
        else if (c == '+') lo = 1, hi = -1, ++i_;
        else if (c == '?') lo = 0, hi = 1, ++i_;
        else if (c == '{' && quantifier(&lo, &hi)) {
        } else {
          break;
        }
        if (repeated) {
          i_ = at;
          return fail("multiple repeat: a quantifier after a quantifier (put the repeated part in a group)");
        }
        repeated = true;
        if (hi >= 0 && lo > hi) {
          i_ = at;
          return fail("quantifier {m,n} with m > n");
        }
        if (lo > kMaxRegexRepeat || hi > kMaxRegexRepeat) {
          i_ = at;
          return fail("repetition count above " + std::to_string(kMaxRegexRepeat));
        }
        if (!at_end() && peek() == '?') ++i_;  // lazy: the same strings match
        else if (!at_end() && peek() == '+') return unsupported_construct("a possessive quantifier");
        Node r;
        r.kind = Node::kRepeat;
        r.min = lo;
        r.max = hi;
        r.kids.push_back(std::move(atom));
        atom = std::move(r);
      }
      seq.kids.push_back(std::move(atom));
    }
    return seq;
  }

  // {m}, {m,}, {m,n}, {,n} at i_; false (i_ unchanged) when the brace is a literal.
  bool quantifier(int* lo, int* hi) {
    size_t j = i_ + 1;
    auto number = [&](int* out) {
      const size_t start = j;
      long v = 0;
      while (j < p_.size() && p_[j] >= '0' && p_[j] <= '9' && j - start < 9) v = v * 10 + (p_[j++] - '0');
      *out = static_cast<int>(v);
      return j > start;
    };
    int a = 0, b = 0;
    const bool has_a = number(&a);
    if (j < p_.size() && p_[j] == '}') {
      if (!has_a) return false;
      *lo = *hi = a;
      i_ = j + 1;
      return true;
    }
    if (j >= p_.size() || p_[j] != ',') return false;
    ++j;
    const bool has_b = number(&b);
    if (j >= p_.size() || p_[j] != '}') return false;
    *lo = has_a ? a : 0;
    *hi = has_b ? b : -1;
    i_ = j + 1;
    return true;
  }

  Result<Node> parse_atom(int depth) {
    const char c = peek();
    if (c == '(') {
      ++i_;
      if (!at_end() && peek() == '?') {
        const std::string_view rest = p_.substr(i_);
        if (rest.starts_with("?:")) {
          i_ += 2;
        } else if (rest.starts_with("?P<") || (rest.starts_with("?<") && !rest.starts_with("?<=") && !rest.starts_with("?<!"))) {
          const size_t close = p_.find('>', i_);
          if (close == std::string_view::npos) return fail("unterminated group name");
          i_ = close + 1;
        } else if (rest.starts_with("?=") || rest.starts_with("?!") || rest.starts_with("?<=") || rest.starts_with("?<!")) {
          return unsupported_construct("lookaround '(" + std::string(rest.substr(0, rest[1] == '<' ? 3 : 2)) + "'");
        } else if (rest.starts_with("?P=")) {
          return unsupported_construct("a backreference '(?P='");
        } else {
          return unsupported_construct("the group extension '(" + std::string(rest.substr(0, 2)) + "' (inline flags, conditionals, comments)");
        }
      }
      auto inner = parse_alt(depth + 1);
      if (!inner.is_ok()) return inner;
      if (at_end() || peek() != ')') return fail("missing ')'");
      ++i_;
      return inner;
    }
    if (c == '*' || c == '+' || c == '?') return fail(std::string("nothing to repeat before '") + c + "'");
    if (c == '^' || c == '$') return unsupported_construct(std::string("the anchor '") + c + "' away from the pattern's ends");
    if (c == '[') return parse_class();
    if (c == '.') {
      ++i_;
      return set_node(complement({{'\n', '\n'}}, kMaxCodePoint));
    }
    if (c == '\\') {
      CharSet s;
      STRATA_RETURN_IF_ERROR(escape(&s, /*in_class=*/false));
      return set_node(std::move(s));
    }
    uint32_t cp = 0;
    STRATA_RETURN_IF_ERROR(utf8_char(&cp));
    return set_node({{cp, cp}});
  }

  static Node set_node(CharSet s) {
    Node n;
    n.kind = Node::kSet;
    n.set = normalized(std::move(s));
    return n;
  }

  Status utf8_char(uint32_t* cp) {
    const auto b0 = static_cast<unsigned char>(p_[i_]);
    int len = b0 < 0x80 ? 1 : (b0 >> 5) == 6 ? 2 : (b0 >> 4) == 14 ? 3 : (b0 >> 3) == 30 ? 4 : 0;
    if (len == 0 || i_ + static_cast<size_t>(len) > p_.size()) return fail("invalid UTF-8");
    uint32_t v = len == 1 ? b0 : len == 2 ? (b0 & 0x1F) : len == 3 ? (b0 & 0x0F) : (b0 & 0x07);
    for (int k = 1; k < len; ++k) {
      const auto b = static_cast<unsigned char>(p_[i_ + static_cast<size_t>(k)]);
      if ((b & 0xC0) != 0x80) return fail("invalid UTF-8");
      v = (v << 6) | (b & 0x3F);
    }
    i_ += static_cast<size_t>(len);
    *cp = v;
    return Status::ok();
  }

  Status hex(int digits, uint32_t* cp) {
    uint32_t v = 0;
    for (int k = 0; k < digits; ++k) {
      if (at_end() || !std::isxdigit(static_cast<unsigned char>(peek()))) return fail("bad hexadecimal escape");
      const char h = peek();
      v = v * 16 + static_cast<uint32_t>(h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
      ++i_;
    }
    if (v > kMaxCodePoint || (v >= 0xD800 && v <= 0xDFFF)) return fail("escape of a code point that has no UTF-8");
    *cp = v;
    return Status::ok();
  }

  // The escape at i_ (a backslash) as a set; `class_shorthand` says \d \w \s or their negations.
  Status escape(CharSet* s, bool in_class, bool* class_shorthand = nullptr) {
    ++i_;
    if (at_end()) return fail("pattern ends with a backslash");
    const char c = peek();
    ++i_;
    auto one = [&](uint32_t cp) { *s = {{cp, cp}}; };
    auto shorthand = [&](CharSet set) {
      *s = std::move(set);
      if (class_shorthand) *class_shorthand = true;
    };
    switch (c) {
      case 'd': shorthand(kDigit); return Status::ok();
      case 'w': shorthand(kWord); return Status::ok();
      case 's': shorthand(kSpace); return Status::ok();
      case 'D': shorthand(complement(kDigit, 0x7F)); return Status::ok();
      case 'W': shorthand(complement(kWord, 0x7F)); return Status::ok();
      case 'S': *s = complement(kPythonSpace, kMaxCodePoint); return Status::ok();
      case 'n': one('\n'); return Status::ok();
      case 't': one('\t'); return Status::ok();
      case 'r': one('\r'); return Status::ok();
      case 'f': one('\f'); return Status::ok();
      case 'v': one('\v'); return Status::ok();
      case 'a': one('\a'); return Status::ok();
      case '0': one(0); return Status::ok();
      case 'x': case 'u': case 'U': {
        uint32_t cp = 0;
        STRATA_RETURN_IF_ERROR(hex(c == 'x' ? 2 : c == 'u' ? 4 : 8, &cp));
        one(cp);
        return Status::ok();
      }
      case 'b':
        if (in_class) {
          one('\b');
          return Status::ok();
        }
        --i_;
        return unsupported_construct("the word boundary '\\b'");
      case 'B': --i_; return unsupported_construct("the word boundary '\\B'");
      case 'A': case 'Z': case 'z': case 'G':
        --i_;
        return unsupported_construct(std::string("the anchor '\\") + c + "'");
      case 'p': case 'P': --i_; return unsupported_construct(std::string("the Unicode property '\\") + c + "'");
      default: break;
    }
    if (c >= '1' && c <= '9') {
      --i_;
      return unsupported_construct(std::string("the backreference '\\") + c + "'");
    }
    if (std::isalnum(static_cast<unsigned char>(c))) {
      --i_;
      return fail(std::string("unknown escape '\\") + c + "'");
    }
    --i_;
    uint32_t cp = 0;
    STRATA_RETURN_IF_ERROR(utf8_char(&cp));
    one(cp);
    return Status::ok();
  }

  Result<Node> parse_class() {
    ++i_;  // [
    bool negate = false, shorthand = false;
    if (!at_end() && peek() == '^') {
      negate = true;
      ++i_;
    }
    CharSet set;
    bool first = true;
    while (true) {
      if (at_end()) return fail("missing ']'");
      if (peek() == ']' && !first) break;
      first = false;
      CharSet item;
      bool sh = false;
      if (peek() == '\\') {
        STRATA_RETURN_IF_ERROR(escape(&item, /*in_class=*/true, &sh));
      } else {
        uint32_t cp = 0;
        STRATA_RETURN_IF_ERROR(utf8_char(&cp));
        item = {{cp, cp}};
      }
      shorthand = shorthand || sh;
      // A range a-b (not before the closing bracket).
      if (!sh && item.size() == 1 && item[0].first == item[0].second && i_ + 1 < p_.size() && peek() == '-' &&
          p_[i_ + 1] != ']') {
        ++i_;
        CharSet end;
        bool sh2 = false;
        if (peek() == '\\') {
          STRATA_RETURN_IF_ERROR(escape(&end, true, &sh2));
        } else {
          uint32_t cp = 0;
          STRATA_RETURN_IF_ERROR(utf8_char(&cp));
          end = {{cp, cp}};
        }
        if (sh2 || end.size() != 1) return fail("a class range ends in a class shorthand");
        if (end[0].first < item[0].first) return fail("a class range out of order");
        item = {{item[0].first, end[0].first}};
      }
      set.insert(set.end(), item.begin(), item.end());
    }
    ++i_;  // ]
    // Python's \d \w \s hold non-ASCII characters too: a negated class with them stays in ASCII,
    // so that what it matches Python's class matches as well.
    if (negate) set = complement(set, shorthand ? 0x7F : kMaxCodePoint);
    if (set.empty()) return fail("a class that matches nothing");
    return set_node(std::move(set));
  }

  std::string_view p_;
  std::string what_;
  size_t i_ = 0;
};

void append_utf8(uint32_t cp, unsigned char* out, int* len) {
  if (cp < 0x80) {
    out[0] = static_cast<unsigned char>(cp);
    *len = 1;
  } else if (cp < 0x800) {
    out[0] = static_cast<unsigned char>(0xC0 | (cp >> 6));
    out[1] = static_cast<unsigned char>(0x80 | (cp & 0x3F));
    *len = 2;
  } else if (cp < 0x10000) {
    out[0] = static_cast<unsigned char>(0xE0 | (cp >> 12));
    out[1] = static_cast<unsigned char>(0x80 | ((cp >> 6) & 0x3F));
    out[2] = static_cast<unsigned char>(0x80 | (cp & 0x3F));
    *len = 3;
  } else {
    out[0] = static_cast<unsigned char>(0xF0 | (cp >> 18));
    out[1] = static_cast<unsigned char>(0x80 | ((cp >> 12) & 0x3F));
    out[2] = static_cast<unsigned char>(0x80 | ((cp >> 6) & 0x3F));
    out[3] = static_cast<unsigned char>(0x80 | (cp & 0x3F));
    *len = 4;
  }
}

// Splits [lo, hi] (code points of one UTF-8 length) into pieces whose encodings are each a sequence
// of byte ranges.
void utf8_pieces(uint32_t lo, uint32_t hi, int n, std::vector<std::vector<std::pair<uint8_t, uint8_t>>>& out) {
  for (int k = 1; k < n; ++k) {
    const uint32_t m = (1u << (6 * k)) - 1;
    if ((lo & ~m) != (hi & ~m)) {
      if ((lo & m) != 0) {
        utf8_pieces(lo, lo | m, n, out);
        utf8_pieces((lo | m) + 1, hi, n, out);
        return;
      }
      if ((hi & m) != m) {
        utf8_pieces(lo, (hi & ~m) - 1, n, out);
        utf8_pieces(hi & ~m, hi, n, out);
        return;
      }
    }
  }
  unsigned char a[4], b[4];
  int la = 0, lb = 0;
  append_utf8(lo, a, &la);
  append_utf8(hi, b, &lb);
  std::vector<std::pair<uint8_t, uint8_t>> seq;
  for (int k = 0; k < la; ++k) seq.emplace_back(a[k], b[k]);
  out.push_back(std::move(seq));
}

// The bytes of one ASCII character inside a JSON string literal.
std::string json_escaped(unsigned char c) {
  switch (c) {
    case '"': return "\\\"";
    case '\\': return "\\\\";
    case '\n': return "\\n";
    case '\t': return "\\t";
    case '\r': return "\\r";
    case '\b': return "\\b";
    case '\f': return "\\f";
    default: break;
  }
  if (c < 0x20) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "\\u%04x", c);
    return buf;
  }
  return std::string(1, static_cast<char>(c));
}

GrammarBuilder::Frag emit_set(GrammarBuilder& b, const CharSet& set, bool json_string) {
  std::bitset<256> ascii;
  std::vector<GrammarBuilder::Frag> options;
  std::vector<std::vector<std::pair<uint8_t, uint8_t>>> pieces;
  for (auto [lo, hi] : set) {
    for (uint32_t c = lo; c <= std::min<uint32_t>(hi, 0x7F); ++c) {
      if (json_string && (c < 0x20 || c == '"' || c == '\\')) options.push_back(b.literal(json_escaped(static_cast<unsigned char>(c))));
      else ascii.set(c);
    }
    const uint32_t bounds[][3] = {{0x80, 0x7FF, 2}, {0x800, 0xFFFF, 3}, {0x10000, kMaxCodePoint, 4}};
    for (const auto& [blo, bhi, n] : bounds) {
      const uint32_t a = std::max(lo, blo), z = std::min(hi, bhi);
      if (a <= z) utf8_pieces(a, z, static_cast<int>(n), pieces);
    }
  }
  if (ascii.any()) options.push_back(b.bytes(ascii));
  for (const auto& seq : pieces) {
    GrammarBuilder::Frag f = b.range(seq[0].first, seq[0].second);
    for (size_t k = 1; k < seq.size(); ++k) f = b.seq(f, b.range(seq[k].first, seq[k].second));
    options.push_back(f);
  }
  return options.size() == 1 ? options[0] : b.alt(options);
}

GrammarBuilder::Frag emit(GrammarBuilder& b, const Node& n, bool json_string) {
  switch (n.kind) {
    case Node::kEmpty: return b.empty();
    case Node::kSet: return emit_set(b, n.set, json_string);
    case Node::kSeq: {
      GrammarBuilder::Frag f = b.empty();
      for (const Node& k : n.kids) {
        if (b.too_big()) break;
        f = b.seq(f, emit(b, k, json_string));
      }
      return f;
    }
    case Node::kAlt: {
      std::vector<GrammarBuilder::Frag> options;
      for (const Node& k : n.kids) options.push_back(emit(b, k, json_string));
      return b.alt(options);
    }
    case Node::kRepeat:
      return b.repeat([&] { return b.too_big() ? b.empty() : emit(b, n.kids[0], json_string); }, n.min, n.max);
  }
  return b.empty();
}

}  // namespace

Result<GrammarBuilder::Frag> compile_regex(GrammarBuilder& b, std::string_view pattern, const RegexOptions& options,
                                           const std::string& what) {
  bool anchored_start = false, anchored_end = false;
  if (pattern.starts_with("^")) {
    anchored_start = true;
    pattern.remove_prefix(1);
  }
  // A final '$' not escaped (an even run of backslashes before it).
  if (pattern.ends_with("$")) {
    size_t slashes = 0;
    while (slashes + 1 < pattern.size() && pattern[pattern.size() - 2 - slashes] == '\\') ++slashes;
    if (slashes % 2 == 0) {
      anchored_end = true;
      pattern.remove_suffix(1);
    }
  }
  Parser parser(pattern, what);
  auto tree = parser.parse_all();
  if (!tree.is_ok()) return tree.status();
  GrammarBuilder::Frag f = emit(b, *tree, options.json_string);
  if (options.search) {
    const CharSet any = complement({}, kMaxCodePoint);
    if (!anchored_start) f = b.seq(b.star(emit_set(b, any, options.json_string)), f);
    if (!anchored_end) f = b.seq(f, b.star(emit_set(b, any, options.json_string)));
  }
  if (b.too_big())
    return invalid_argument(what + ": the pattern compiles to more than " + std::to_string(GrammarBuilder::kMaxNodes) +
                            " automaton positions; use smaller repetition counts");
  return f;
}

GrammarBuilder::Frag json_string_char(GrammarBuilder& b) {
  CharSet plain = complement({{0, 0x1F}, {'"', '"'}, {'\\', '\\'}}, kMaxCodePoint);
  GrammarBuilder::Frag raw = emit_set(b, plain, false);
  std::bitset<256> esc;
  for (unsigned char c : std::string("\"\\/bfnrt")) esc.set(c);
  return b.alt({raw, b.seq(b.range('\\', '\\'), b.bytes(esc))});
}

}  // namespace strata::text
