// JsonAutomaton: a byte-at-a-time recogniser of one JSON object (RFC 8259), for constraining
// generation to JSON ("response_format": {"type": "json_object"}). feed() takes the next byte and
// says whether the text so far is still the beginning of a JSON object; complete() says whether it
// is one. Nesting is kept on a fixed stack (kMaxDepth levels: deeper is refused), so a state is a
// small value that copies cheaply while a token trie is searched. Runs of whitespace outside
// strings are capped at kMaxSpaces bytes, so a model cannot pad forever. Strings take any
// character but control characters, with JSON's escapes, as well-formed UTF-8 (the Unicode
// Standard's table 3-7: no overlong forms, surrogates or stray continuation bytes), so that a
// decoder turns no byte of the text into U+FFFD; bytes of 0x80 and up appear only inside strings.
// Numbers have at most kMaxDigits digits before and after the point and at most two exponent
// digits, so that every number reads as a finite double (parsers refuse or mangle 6E8119).
#pragma once

#include <array>
#include <cstdint>
#include <string>

namespace strata::text {

class JsonAutomaton {
 public:
  static constexpr int kMaxDepth = 32;
  static constexpr int kMaxSpaces = 16;
  static constexpr int kMaxDigits = 20;

  // False when `c` cannot continue a JSON object; the automaton is then unchanged.
  bool feed(unsigned char c);
  // The text fed is a whole JSON object (trailing whitespace allowed).
  bool complete() const { return done_; }
  // Bytes that equal for two automata exactly when they accept the same continuations (a cache
  // key: inside a long string the state repeats token after token).
  std::string key() const;

 private:
  // What the next byte may be, outside the stack's containers.
  enum class Expect : uint8_t {
    kTopValue,     // the opening '{' (after optional whitespace)
    kValue,        // any value
    kKeyOrEnd,     // a key string or '}' (just after '{')
    kKey,          // a key string (after ',')
    kColon,        // ':' after a key
    kCommaOrEnd,   // ',' or the container's closing bracket, after a value
    kValueOrEnd,   // a value or ']' (just after '[')
    kString,       // inside a string
    kEscape,       // after a backslash in a string
    kUtf8,         // inside a string's multi-byte character (utf8_left_ bytes to go)
    kUnicode,      // inside \uXXXX (hex_left digits to go)
    kNumber,       // inside a number (number_ says where)
    kLiteral,      // inside true/false/null (literal_ says which, lit_pos how far)
    kDone,         // after the top-level object: whitespace only
  };
  enum class Num : uint8_t { kMinus, kZero, kInt, kDot, kFrac, kE, kESign, kExp };

  bool feed_impl(unsigned char c);
  bool value_start(unsigned char c);  // a value begins with c
  bool after_value();                 // a value ended: what the enclosing container expects next
  bool close(unsigned char c);        // '}' or ']' closing the innermost container
  bool number_ends() const;           // the number so far is complete
  bool space(unsigned char c);

  Expect expect_ = Expect::kTopValue;
  Num number_ = Num::kMinus;
  bool in_key_ = false;               // the string being read is an object key
  uint8_t hex_left_ = 0;
  uint8_t utf8_left_ = 0;             // continuation bytes still due in a multi-byte character
  uint8_t utf8_lo_ = 0, utf8_hi_ = 0; // the range of the next one (0, 0 between characters)
  uint8_t literal_ = 0;               // 0 true, 1 false, 2 null
  uint8_t lit_pos_ = 0;
  uint8_t spaces_ = 0;                // whitespace bytes in the current run
  uint8_t digits_ = 0;                // digits in the current part of a number
  bool done_ = false;
  int8_t depth_ = 0;
  std::array<char, kMaxDepth> stack_{};  // '{' or '['
};

}  // namespace strata::text
