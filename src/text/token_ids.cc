#include "text/token_ids.h"

#include <cctype>
#include <charconv>

namespace strata::text {

Result<std::vector<int32_t>> parse_token_ids(std::string_view text, int64_t vocab_size) {
  std::vector<int32_t> ids;
  size_t i = 0;
  auto skip = [&] {
    while (i < text.size() && (std::isspace(static_cast<unsigned char>(text[i])) || text[i] == ','))
      ++i;
  };
  skip();
  bool bracket = i < text.size() && text[i] == '[';
  if (bracket) ++i;
  for (;;) {
    skip();
    if (i >= text.size()) break;
    if (bracket && text[i] == ']') {
      ++i;
      skip();
      if (i < text.size()) return invalid_argument("token ids: unexpected text after ']'");
      bracket = false;
      break;
    }
    size_t start = i;
    while (i < text.size() && !std::isspace(static_cast<unsigned char>(text[i])) && text[i] != ',' &&
           text[i] != ']')
      ++i;
    std::string_view tok = text.substr(start, i - start);
    int64_t v = 0;
    auto [ptr, ec] = std::from_chars(tok.data(), tok.data() + tok.size(), v);
    if (ec != std::errc() || ptr != tok.data() + tok.size() || v < 0 || v > INT32_MAX)
      return invalid_argument("token ids: entry " + std::to_string(ids.size() + 1) + " ('" +
                              std::string(tok) + "') is not a non-negative integer");
    if (vocab_size > 0 && v >= vocab_size)
      return invalid_argument("token ids: entry " + std::to_string(ids.size() + 1) + " (" +
                              std::to_string(v) + ") is outside the vocabulary of " +
                              std::to_string(vocab_size));
    ids.push_back(static_cast<int32_t>(v));
  }
  if (bracket) return invalid_argument("token ids: missing closing ']'");
  return ids;
}

std::string format_token_ids(const std::vector<int32_t>& ids) {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out += ' ';
    out += std::to_string(ids[i]);
  }
  return out;
}

}  // namespace strata::text
