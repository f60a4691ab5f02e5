#include "text/utf8.h"

#include <array>

namespace strata::text {

char32_t next_code_point(std::string_view s, size_t& i) {
  const auto b0 = static_cast<uint8_t>(s[i]);
  if (b0 < 0x80) {
    ++i;
    return b0;
  }
  int len = 0;
  char32_t cp = 0;
  char32_t min = 0;
  if ((b0 & 0xE0) == 0xC0) {
    len = 2, cp = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, cp = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4, cp = b0 & 0x07, min = 0x10000;
  } else {
    ++i;
    return kReplacementChar;
  }
  if (i + len > s.size()) {
    ++i;
    return kReplacementChar;
  }
  for (int k = 1; k < len; ++k) {
    const auto b = static_cast<uint8_t>(s[i + k]);
    if ((b & 0xC0) != 0x80) {
      ++i;
      return kReplacementChar;
    }
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    ++i;
    return kReplacementChar;
  }
  i += len;
  return cp;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

std::string utf8(char32_t cp) {
  std::string s;
  append_utf8(s, cp);
  return s;
}

size_t complete_utf8_prefix(std::string_view s) {
  // Look back at most 3 bytes for a lead byte whose sequence runs past the end.
  const size_t n = s.size();
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    const auto b = static_cast<uint8_t>(s[n - back]);
    if ((b & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
    int len = (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : (b & 0xF8) == 0xF0 ? 4 : 1;
    if (len > static_cast<int>(back)) {
      // The lead is incomplete only if the bytes after it are all continuation bytes (true by
      // construction of the loop) and it could still become a valid character.
      return n - back;
    }
    return n;
  }
  return n;
}

std::string utf8_lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const size_t start = i;
    char32_t cp = next_code_point(s, i);
    if (cp == kReplacementChar && i == start + 1 && static_cast<uint8_t>(s[start]) >= 0x80) {
      // Rust's from_utf8_lossy replaces a maximal invalid prefix of a sequence by one U+FFFD:
      // a valid lead followed by some valid continuation bytes then a bad byte is one error.
      const auto b0 = static_cast<uint8_t>(s[start]);
      int len = (b0 & 0xE0) == 0xC0 ? 2 : (b0 & 0xF0) == 0xE0 ? 3 : (b0 & 0xF8) == 0xF0 ? 4 : 1;
      size_t j = start + 1;
      if (len > 1 && b0 >= 0xC2 && b0 <= 0xF4) {
        for (int k = 1; k < len && j < s.size(); ++k, ++j) {
          const auto b = static_cast<uint8_t>(s[j]);
          uint8_t lo = 0x80, hi = 0xBF;
          if (k == 1) {
            if (b0 == 0xE0) lo = 0xA0;
            if (b0 == 0xED) hi = 0x9F;
            if (b0 == 0xF0) lo = 0x90;
            if (b0 == 0xF4) hi = 0x8F;
          }
          if (b < lo || b > hi) break;
        }
      }
      i = j;
      append_utf8(out, kReplacementChar);
      continue;
    }
    out.append(s.substr(start, i - start));
  }
  return out;
}

namespace {
constexpr char32_t kByteAlphabetEnd = 256 + 68;  // 68 bytes are not printable
struct ByteMap {
  std::array<char32_t, 256> to_cp{};
  std::array<int16_t, kByteAlphabetEnd> from_cp{};
  ByteMap() {
    // Printable bytes map to themselves; the rest to 256, 257, ... in byte order (GPT-2).
    from_cp.fill(-1);
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable =
          (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      to_cp[b] = printable ? static_cast<char32_t>(b) : next++;
      from_cp[to_cp[b]] = static_cast<int16_t>(b);
    }
  }
};
const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}
}  // namespace

char32_t byte_to_unicode(uint8_t b) { return byte_map().to_cp[b]; }

int unicode_to_byte(char32_t cp) { return cp < kByteAlphabetEnd ? byte_map().from_cp[cp] : -1; }

bool is_python_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

std::string_view python_strip(std::string_view s) {
  size_t begin = 0;
  while (begin < s.size()) {
    size_t j = begin;
    if (!is_python_space(next_code_point(s, j))) break;
    begin = j;
  }
  size_t end = s.size();
  while (end > begin) {
    size_t k = end - 1;
    while (k > begin && (static_cast<uint8_t>(s[k]) & 0xC0) == 0x80) --k;
    size_t j = k;
    if (!is_python_space(next_code_point(s, j))) break;
    end = k;
  }
  return s.substr(begin, end - begin);
}

}  // namespace strata::text
