// UTF-8 helpers for the tokenizer: decoding and encoding code points, finding character
// boundaries, GPT-2's byte <-> printable-character map, and Python's notion of whitespace (what
// str.strip() removes). Pure functions over byte strings; thread safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace strata::text {

inline constexpr char32_t kReplacementChar = 0xFFFD;

// Decodes the code point starting at s[i] and advances i past it. An invalid or truncated
// sequence yields kReplacementChar and advances one byte.
char32_t next_code_point(std::string_view s, size_t& i);
// Appends the UTF-8 encoding of `cp` to `out`.
void append_utf8(std::string& out, char32_t cp);
std::string utf8(char32_t cp);

// Length of the longest prefix of `s` that does not end inside a UTF-8 character: a trailing
// lead byte whose continuation bytes have not all arrived is left out. Invalid bytes count as
// complete (they decode to U+FFFD and will not be completed by more bytes).
size_t complete_utf8_prefix(std::string_view s);
// Replaces every invalid sequence with U+FFFD, as Rust's String::from_utf8_lossy does.
std::string utf8_lossy(std::string_view s);

// GPT-2's byte-level alphabet: each byte maps to one printable code point.
char32_t byte_to_unicode(uint8_t b);
// The inverse; returns -1 for code points outside the alphabet.
int unicode_to_byte(char32_t cp);

// True for what Python's str.isspace() accepts.
bool is_python_space(char32_t cp);
// Python's str.strip(): removes leading and trailing whitespace.
std::string_view python_strip(std::string_view s);

}  // namespace strata::text
