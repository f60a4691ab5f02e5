#include "text/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "common/check.h"

namespace strata::text {

struct Regex::Code {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Code() { pcre2_code_free(code); }
};

Result<Regex> Regex::compile(std::string_view pattern, const std::string& what) {
  int err = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &err, &offset, nullptr);
  if (!code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof(msg));
    return invalid_argument(what + ": regex /" + std::string(pattern) + "/ does not compile at offset " +
                            std::to_string(offset) + ": " + reinterpret_cast<const char*>(msg));
  }
  auto c = std::make_shared<Code>();
  c->code = code;
  c->jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  Regex r;
  r.code_ = std::move(c);
  return r;
}

Result<Regex> Regex::literal(std::string_view literal, const std::string& what) {
  std::string quoted;
  for (char ch : literal) {
    if (std::string_view("\\^$.|?*+()[]{}").find(ch) != std::string_view::npos) quoted += '\\';
    quoted += ch;
  }
  return compile(quoted, what);
}

std::vector<std::pair<size_t, size_t>> Regex::find_all(std::string_view s) const {
  STRATA_CHECK(code_, "Regex used before compile()");
  std::vector<std::pair<size_t, size_t>> out;
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(code_->code, nullptr);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(s.data());
  size_t start = 0;
  while (start <= s.size()) {
    const int rc = code_->jit ? pcre2_jit_match(code_->code, subject, s.size(), start, 0, md, nullptr)
                              : pcre2_match(code_->code, subject, s.size(), start, PCRE2_NO_UTF_CHECK, md, nullptr);
    if (rc < 0) break;  // PCRE2_ERROR_NOMATCH (or a resource limit: treat as no more matches)
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t b = ov[0], e = ov[1];
    if (e == b) {
      // An empty match: skip it and move one character on, as Rust's find_iter does.
      if (b >= s.size()) break;
      size_t next = b + 1;
      while (next < s.size() && (static_cast<uint8_t>(s[next]) & 0xC0) == 0x80) ++next;
      start = next;
      continue;
    }
    out.emplace_back(b, e);
    start = e;
  }
  pcre2_match_data_free(md);
  return out;
}

}  // namespace strata::text
