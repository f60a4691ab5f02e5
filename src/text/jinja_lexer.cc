#include "text/jinja_lexer.h"

#include <algorithm>
#include <array>

#include "text/utf8.h"

namespace strata::text::jinja {

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

// Python's str.rstrip() and "is this all whitespace" over UTF-8.
std::string_view rstrip_ws(std::string_view s) {
  size_t end = s.size();
  while (end > 0) {
    size_t k = end - 1;
    while (k > 0 && (static_cast<uint8_t>(s[k]) & 0xC0) == 0x80) --k;
    size_t i = k;
    if (!is_python_space(next_code_point(s, i))) break;
    end = k;
  }
  return s.substr(0, end);
}

size_t skip_ws(std::string_view s, size_t i) {
  while (i < s.size()) {
    size_t j = i;
    if (!is_python_space(next_code_point(s, j))) break;
    i = j;
  }
  return i;
}

int hex_value(char c) {
  if (is_digit(c)) return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Python's "unicode_escape" decoding, which jinja2 applies to string literals.
std::string unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\' || i + 1 >= s.size()) {
      out += s[i];
      continue;
    }
    const char c = s[++i];
    switch (c) {
      case '\n':
        continue;  // line continuation
      case '\\':
        out += '\\';
        continue;
      case '\'':
        out += '\'';
        continue;
      case '"':
        out += '"';
        continue;
      case 'a':
        out += '\a';
        continue;
      case 'b':
        out += '\b';
        continue;
      case 'f':
        out += '\f';
        continue;
      case 'n':
        out += '\n';
        continue;
      case 'r':
        out += '\r';
        continue;
      case 't':
        out += '\t';
        continue;
      case 'v':
        out += '\v';
        continue;
      default:
        break;
    }
    if (c >= '0' && c <= '7') {
      unsigned v = 0;
      size_t n = 0;
      for (; n < 3 && i < s.size() && s[i] >= '0' && s[i] <= '7'; ++n, ++i)
        v = v * 8 + static_cast<unsigned>(s[i] - '0');
      --i;
      append_utf8(out, v);
      continue;
    }
    const size_t digits = c == 'x' ? 2 : c == 'u' ? 4 : c == 'U' ? 8 : 0;
    if (digits && i + digits < s.size()) {
      char32_t v = 0;
      bool ok = true;
      for (size_t k = 1; ok && k <= digits; ++k) {
        const int h = hex_value(s[i + k]);
        ok = h >= 0;
        v = v * 16 + static_cast<char32_t>(std::max(h, 0));
      }
      if (ok) {
        append_utf8(out, v);
        i += digits;
        continue;
      }
    }
    out += '\\';  // unknown escapes stay as written
    out += c;
  }
  return out;
}

constexpr std::array<std::string_view, 6> kTwoCharOps = {"//", "**", "==", "!=", ">=", "<="};
constexpr std::string_view kOneCharOps = "+-/*%~[](){}><=.:|,;";

class Lexer {
 public:
  Lexer(std::string src, const std::string& name) : src_(std::move(src)), name_(name) {
    for (size_t i = 0; i < src_.size(); ++i)
      if (src_[i] == '\n') newlines_.push_back(i);
  }

  Result<std::vector<Token>> run() {
    while (pos_ < src_.size()) {
      size_t start = src_.size();
      for (const char* open : {"{{", "{%", "{#"}) start = std::min(start, src_.find(open, pos_));
      if (start == std::string::npos || start >= src_.size()) {
        add_text(src_.substr(pos_), pos_);
        break;
      }
      const char kind = src_[start + 1];
      size_t p = start + 2;
      const char mod = p < src_.size() && (src_[p] == '-' || src_[p] == '+') ? src_[p++] : 0;
      std::string text = src_.substr(pos_, start - pos_);
      if (mod == '-') {
        text.resize(rstrip_ws(text).size());
      } else if (mod != '+' && kind != '{') {  // lstrip_blocks
        const size_t l_pos = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
        if ((l_pos > 0 || line_starting_) && l_pos < text.size() &&
            skip_ws(text, l_pos) == text.size())
          text.resize(l_pos);
      }
      add_text(std::move(text), pos_);
      line_starting_ = false;
      Status st = kind == '#'                  ? comment(p)
                  : (kind == '%' && is_raw(p)) ? raw(p)
                                               : tag(kind, start, p);
      if (!st.is_ok()) return st;
    }
    out_.push_back({TokenType::kEnd, "", line_at(src_.size())});
    return std::move(out_);
  }

 private:
  int line_at(size_t pos) const {
    return 1 + static_cast<int>(std::lower_bound(newlines_.begin(), newlines_.end(), pos) -
                                newlines_.begin());
  }
  Status fail(size_t pos, const std::string& msg) const {
    return invalid_argument(name_ + ", line " + std::to_string(line_at(pos)) + ": " + msg);
  }
  void add_text(std::string text, size_t at) {
    if (!text.empty()) out_.push_back({TokenType::kText, std::move(text), line_at(at)});
  }
  // Past the end of a tag: "-" strips all whitespace, "+" nothing, else one newline (trim_blocks).
  void finish_tag(size_t end, char mod, bool trim_newline) {
    if (mod == '-')
      end = skip_ws(src_, end);
    else if (mod != '+' && trim_newline && end < src_.size() && src_[end] == '\n')
      ++end;
    line_starting_ = end > 0 && src_[end - 1] == '\n';
    pos_ = end;
  }

  Status comment(size_t p) {
    const size_t q = src_.find("#}", p);
    if (q == std::string::npos) return fail(p, "missing end of comment tag");
    const char mod = q > p && (src_[q - 1] == '-' || src_[q - 1] == '+') ? src_[q - 1] : 0;
    finish_tag(q + 2, mod, true);
    return Status::ok();
  }

  // {% raw %} ... {% endraw %}: the text between is data.
  bool is_raw(size_t p) const {
    p = skip_ws(src_, p);
    if (src_.compare(p, 3, "raw") != 0) return false;
    p = skip_ws(src_, p + 3);
    return src_.compare(p, 2, "%}") == 0 || src_.compare(p, 3, "-%}") == 0;
  }
  Status raw(size_t p) {
    p = skip_ws(src_, skip_ws(src_, p) + 3);
    p = src_[p] == '-' ? skip_ws(src_, p + 3) : p + 2;
    for (size_t q = src_.find("{%", p); q != std::string::npos; q = src_.find("{%", q + 2)) {
      size_t r = q + 2;
      const char mod = r < src_.size() && (src_[r] == '-' || src_[r] == '+') ? src_[r++] : 0;
      r = skip_ws(src_, r);
      if (src_.compare(r, 6, "endraw") != 0) continue;
      r = skip_ws(src_, r + 6);
      const char end_mod = r < src_.size() && (src_[r] == '-' || src_[r] == '+') ? src_[r++] : 0;
      if (src_.compare(r, 2, "%}") != 0) continue;
      std::string text = src_.substr(p, q - p);
      if (mod == '-') text.resize(rstrip_ws(text).size());
      add_text(std::move(text), p);
      finish_tag(r + 2, end_mod, true);
      return Status::ok();
    }
    return fail(p, "missing end of raw directive");
  }

  // An end of tag at `p` when no bracket is open: returns its length (0 if none) and its modifier.
  size_t tag_end(char kind, size_t p, char& mod) const {
    const std::string_view close = kind == '%' ? "%}" : "}}";
    mod = 0;
    if ((src_[p] == '-' || (kind == '%' && src_[p] == '+')) && src_.compare(p + 1, 2, close) == 0) {
      mod = src_[p];
      return 3;
    }
    return src_.compare(p, 2, close) == 0 ? 2 : 0;
  }

  Status tag(char kind, size_t start, size_t p) {
    out_.push_back(
        {kind == '%' ? TokenType::kBlockBegin : TokenType::kVarBegin, "", line_at(start)});
    std::vector<char> open;  // brackets not yet closed
    while (true) {
      if (p >= src_.size())
        return fail(start, std::string("unexpected end of template: this '") +
                               (kind == '%' ? "{%" : "{{") + "' is never closed");
      char mod = 0;
      if (open.empty()) {
        if (const size_t n = tag_end(kind, p, mod)) {
          out_.push_back({kind == '%' ? TokenType::kBlockEnd : TokenType::kVarEnd, "", line_at(p)});
          finish_tag(p + n, mod, kind == '%');
          return Status::ok();
        }
      }
      const char c = src_[p];
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
        ++p;
      } else if (is_digit(c)) {
        p = number(p);
      } else if (is_name_start(c)) {
        size_t e = p;
        while (e < src_.size() && is_name_char(src_[e])) ++e;
        out_.push_back({TokenType::kName, src_.substr(p, e - p), line_at(p)});
        p = e;
      } else if (c == '\'' || c == '"') {
        size_t e = p + 1;
        while (e < src_.size() && src_[e] != c) e += src_[e] == '\\' ? 2 : 1;
        if (e >= src_.size()) return fail(p, "unterminated string literal");
        out_.push_back({TokenType::kString,
                        unescape(std::string_view(src_).substr(p + 1, e - p - 1)), line_at(p)});
        p = e + 1;
      } else {
        STRATA_RETURN_IF_ERROR(op(p, open));
      }
    }
  }

  Status op(size_t& p, std::vector<char>& open) {
    std::string o;
    for (auto two : kTwoCharOps)
      if (src_.compare(p, 2, two) == 0) o = two;
    if (o.empty() && kOneCharOps.find(src_[p]) != std::string_view::npos)
      o = std::string(1, src_[p]);
    if (o.empty()) return fail(p, std::string("unexpected character '") + src_[p] + "'");
    if (o == "(" || o == "[" || o == "{") {
      open.push_back(o == "(" ? ')' : o == "[" ? ']' : '}');
    } else if (o == ")" || o == "]" || o == "}") {
      if (open.empty()) return fail(p, "unexpected '" + o + "'");
      if (open.back() != o[0])
        return fail(p, "unexpected '" + o + "', expected '" + open.back() + "'");
      open.pop_back();
    }
    out_.push_back({TokenType::kOperator, o, line_at(p)});
    p += o.size();
    return Status::ok();
  }

  // An integer or float literal (digits may be separated by "_").
  size_t number(size_t p) {
    const auto digits = [&](size_t i) {
      while (i < src_.size() && (is_digit(src_[i]) ||
                                 (src_[i] == '_' && i + 1 < src_.size() && is_digit(src_[i + 1]))))
        ++i;
      return i;
    };
    size_t e = digits(p);
    bool is_float = false;
    if (e + 1 < src_.size() && src_[e] == '.' && is_digit(src_[e + 1])) {
      e = digits(e + 1);
      is_float = true;
    }
    if (e < src_.size() && (src_[e] == 'e' || src_[e] == 'E')) {
      size_t x = e + 1;
      if (x < src_.size() && (src_[x] == '+' || src_[x] == '-')) ++x;
      if (x < src_.size() && is_digit(src_[x])) {
        e = digits(x);
        is_float = true;
      }
    }
    std::string text = src_.substr(p, e - p);
    std::erase(text, '_');
    Token t{is_float ? TokenType::kFloat : TokenType::kInt, text, line_at(p)};
    if (is_float)
      t.float_value = std::strtod(text.c_str(), nullptr);
    else
      t.int_value = std::strtoll(text.c_str(), nullptr, 10);
    out_.push_back(std::move(t));
    return e;
  }

  std::string src_;
  const std::string& name_;
  std::vector<size_t> newlines_;
  std::vector<Token> out_;
  size_t pos_ = 0;
  bool line_starting_ = true;
};

}  // namespace

Result<std::vector<Token>> tokenize(std::string_view source, const std::string& name) {
  std::string src;
  src.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {  // "\r\n" and "\r" are newlines
    if (source[i] == '\r') {
      src += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      src += source[i];
    }
  }
  if (!src.empty() && src.back() == '\n') src.pop_back();  // keep_trailing_newline=False
  return Lexer(std::move(src), name).run();
}

}  // namespace strata::text::jinja
