#include "text/json_automaton.h"

namespace strata::text {

namespace {

bool is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
bool is_hex(unsigned char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

constexpr const char* kLiterals[] = {"true", "false", "null"};

}  // namespace

std::string JsonAutomaton::key() const {
  std::string k = {
      static_cast<char>(expect_),   static_cast<char>(number_),    static_cast<char>(in_key_),
      static_cast<char>(hex_left_), static_cast<char>(utf8_left_), static_cast<char>(utf8_lo_),
      static_cast<char>(utf8_hi_),  static_cast<char>(literal_),   static_cast<char>(lit_pos_),
      static_cast<char>(spaces_),   static_cast<char>(digits_),    static_cast<char>(done_)};
  k.append(stack_.data(), static_cast<size_t>(depth_));
  return k;
}

bool JsonAutomaton::feed(unsigned char c) {
  JsonAutomaton next = *this;
  if (!next.feed_impl(c)) return false;
  *this = next;
  return true;
}

bool JsonAutomaton::space(unsigned char) { return ++spaces_ <= kMaxSpaces; }

bool JsonAutomaton::after_value() {
  if (depth_ == 0) {
    expect_ = Expect::kDone;
    done_ = true;
  } else {
    expect_ = Expect::kCommaOrEnd;
  }
  return true;
}

bool JsonAutomaton::close(unsigned char c) {
  if (depth_ == 0 || (c == '}') != (stack_[depth_ - 1] == '{')) return false;
  --depth_;
  return after_value();
}

bool JsonAutomaton::value_start(unsigned char c) {
  auto push = [&](char open, Expect next) {
    if (depth_ >= kMaxDepth) return false;
    stack_[depth_++] = open;
    expect_ = next;
    return true;
  };
  switch (c) {
    case '{': return push('{', Expect::kKeyOrEnd);
    case '[': return push('[', Expect::kValueOrEnd);
    case '"':
      expect_ = Expect::kString;
      in_key_ = false;
      return true;
    case '-': expect_ = Expect::kNumber; number_ = Num::kMinus; digits_ = 0; return true;
    case '0': expect_ = Expect::kNumber; number_ = Num::kZero; digits_ = 1; return true;
    case 't': case 'f': case 'n':
      expect_ = Expect::kLiteral;
      literal_ = c == 't' ? 0 : c == 'f' ? 1 : 2;
      lit_pos_ = 1;
      return true;
    default:
      if (c >= '1' && c <= '9') {
        expect_ = Expect::kNumber;
        number_ = Num::kInt;
        digits_ = 1;
        return true;
      }
      return false;
  }
}

bool JsonAutomaton::number_ends() const {
  return number_ == Num::kZero || number_ == Num::kInt || number_ == Num::kFrac || number_ == Num::kExp;
}

bool JsonAutomaton::feed_impl(unsigned char c) {
  const bool between = expect_ != Expect::kString && expect_ != Expect::kEscape &&
                       expect_ != Expect::kUtf8 && expect_ != Expect::kUnicode &&
                       expect_ != Expect::kNumber && expect_ != Expect::kLiteral;
  if (between) {
    if (is_space(c)) return space(c);
    spaces_ = 0;
  }
  switch (expect_) {
    case Expect::kTopValue:
      if (c != '{') return false;
      return value_start(c);
    case Expect::kDone: return false;
    case Expect::kValue: return value_start(c);
    case Expect::kValueOrEnd: return c == ']' ? close(c) : value_start(c);
    case Expect::kKeyOrEnd:
      if (c == '}') return close(c);
      [[fallthrough]];
    case Expect::kKey:
      if (c != '"') return false;
      expect_ = Expect::kString;
      in_key_ = true;
      return true;
    case Expect::kColon:
      if (c != ':') return false;
      expect_ = Expect::kValue;
      return true;
    case Expect::kCommaOrEnd:
      if (c == ',') {
        expect_ = stack_[depth_ - 1] == '{' ? Expect::kKey : Expect::kValue;
        return true;
      }
      return (c == '}' || c == ']') && close(c);
    case Expect::kString:
      if (c == '"') {
        if (!in_key_) return after_value();
        in_key_ = false;
        expect_ = Expect::kColon;
        return true;
      }
      if (c == '\\') {
        expect_ = Expect::kEscape;
        return true;
      }
      if (c < 0x80) return c >= 0x20;
      // The first byte of a multi-byte character: how many follow, and the range of the next
      // (narrower after E0, ED, F0 and F4, which would otherwise start overlong forms,
      // surrogates or code points past U+10FFFF).
      utf8_lo_ = 0x80;
      utf8_hi_ = 0xBF;
      if (c >= 0xC2 && c <= 0xDF) {
        utf8_left_ = 1;
      } else if (c >= 0xE0 && c <= 0xEF) {
        utf8_left_ = 2;
        if (c == 0xE0) utf8_lo_ = 0xA0;
        if (c == 0xED) utf8_hi_ = 0x9F;
      } else if (c >= 0xF0 && c <= 0xF4) {
        utf8_left_ = 3;
        if (c == 0xF0) utf8_lo_ = 0x90;
        if (c == 0xF4) utf8_hi_ = 0x8F;
      } else {
        return false;  // a continuation byte with no first byte, C0, C1 or F5..FF
      }
      expect_ = Expect::kUtf8;
      return true;
    case Expect::kUtf8:
      if (c < utf8_lo_ || c > utf8_hi_) return false;
      if (--utf8_left_ > 0) {
        utf8_lo_ = 0x80;
        utf8_hi_ = 0xBF;
      } else {  // whole: the state is a plain string's again (key() must not tell them apart)
        utf8_lo_ = utf8_hi_ = 0;
        expect_ = Expect::kString;
      }
      return true;
    case Expect::kEscape:
      if (c == 'u') {
        expect_ = Expect::kUnicode;
        hex_left_ = 4;
        return true;
      }
      if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' || c == 'r' || c == 't') {
        expect_ = Expect::kString;
        return true;
      }
      return false;
    case Expect::kUnicode:
      if (!is_hex(c)) return false;
      if (--hex_left_ == 0) expect_ = Expect::kString;
      return true;
    case Expect::kLiteral: {
      const char* lit = kLiterals[literal_];
      if (c != static_cast<unsigned char>(lit[lit_pos_])) return false;
      if (lit[++lit_pos_] == 0) return after_value();
      return true;
    }
    case Expect::kNumber: {
      // Starts a new part of the number (its digits counted from zero) in state `to`.
      auto part = [&](Num to) {
        number_ = to;
        digits_ = 0;
        return true;
      };
      auto digit = [&](Num to, int max) {
        if (digits_ >= max) return false;
        number_ = to;
        ++digits_;
        return true;
      };
      switch (number_) {
        case Num::kMinus:
          if (c == '0') return digit(Num::kZero, kMaxDigits);
          if (c >= '1' && c <= '9') return digit(Num::kInt, kMaxDigits);
          return false;
        case Num::kDot:
          return is_digit(c) && digit(Num::kFrac, kMaxDigits);
        case Num::kE:
          if (c == '+' || c == '-') return part(Num::kESign);
          [[fallthrough]];
        case Num::kESign:
          return is_digit(c) && digit(Num::kExp, 2);
        case Num::kInt:
        case Num::kFrac:
        case Num::kExp:
          if (is_digit(c)) return digit(number_, number_ == Num::kExp ? 2 : kMaxDigits);
          if (number_ != Num::kExp && (c == 'e' || c == 'E')) return part(Num::kE);
          if (number_ == Num::kInt && c == '.') return part(Num::kDot);
          break;
        case Num::kZero:
          if (c == '.') return part(Num::kDot);
          if (c == 'e' || c == 'E') return part(Num::kE);
          break;
      }
      // The number ended before c: c continues what follows the value.
      if (!number_ends()) return false;
      after_value();
      return feed_impl(c);
    }
  }
  return false;
}

}  // namespace strata::text
