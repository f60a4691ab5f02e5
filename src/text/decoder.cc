#include "text/decoder.h"

#include <nlohmann/json.hpp>

#include "text/json_util.h"
#include "text/utf8.h"

namespace strata::text {

namespace {

class SequenceDecoder : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> parts) : parts_(std::move(parts)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (const auto& p : parts_) p->decode_chain(tokens);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> parts_;
};

// Maps GPT-2's printable alphabet back to bytes; the whole list becomes one (lossy UTF-8) string.
class ByteLevelDecoder : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (const auto& t : tokens) {
      std::string tb;
      bool ok = true;
      size_t i = 0;
      while (i < t.size()) {
        const int b = unicode_to_byte(next_code_point(t, i));
        if (b < 0) {
          ok = false;
          break;
        }
        tb += static_cast<char>(b);
      }
      bytes += ok ? tb : t;
    }
    tokens.assign(1, utf8_lossy(bytes));
  }
};

class MetaspaceDecoder : public Decoder {
 public:
  MetaspaceDecoder(char32_t replacement, bool prepend) : replacement_(replacement), prepend_(prepend) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (size_t k = 0; k < tokens.size(); ++k) {
      const std::string& t = tokens[k];
      std::string out;
      size_t i = 0;
      while (i < t.size()) {
        const size_t start = i;
        const char32_t c = next_code_point(t, i);
        if (c == replacement_) {
          if (!(k == 0 && prepend_)) out += ' ';
        } else {
          out.append(t, start, i - start);
        }
      }
      tokens[k] = std::move(out);
    }
  }

 private:
  char32_t replacement_;
  bool prepend_;
};

class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(std::string pattern, std::string content) : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    if (pattern_.empty()) return;
    for (auto& t : tokens) {
      std::string out;
      size_t pos = 0;
      for (size_t f; (f = t.find(pattern_, pos)) != std::string::npos; pos = f + pattern_.size()) {
        out.append(t, pos, f - pos);
        out += content_;
      }
      out.append(t, pos, std::string::npos);
      t = std::move(out);
    }
  }

 private:
  std::string pattern_, content_;
};

// Runs of <0xXX> tokens become the text of their bytes (or one U+FFFD per byte when invalid).
class ByteFallbackDecoder : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    std::string bytes;
    size_t nbytes = 0;
    auto flush = [&] {
      if (nbytes == 0) return;
      if (utf8_lossy(bytes) == bytes) {
        out.push_back(bytes);
      } else {
        for (size_t k = 0; k < nbytes; ++k) out.push_back(utf8(kReplacementChar));
      }
      bytes.clear();
      nbytes = 0;
    };
    for (auto& t : tokens) {
      int b = -1;
      if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>') {
        unsigned v = 0;
        bool hex = true;
        for (int k = 3; k < 5; ++k) {
          const char c = t[k];
          v <<= 4;
          if (c >= '0' && c <= '9') v |= c - '0';
          else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
          else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
          else hex = false;
        }
        if (hex) b = static_cast<int>(v);
      }
      if (b >= 0) {
        bytes += static_cast<char>(b);
        ++nbytes;
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    tokens.swap(out);
  }
};

class FuseDecoder : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string all;
    for (const auto& t : tokens) all += t;
    tokens.assign(1, std::move(all));
  }
};

// Removes up to `start` leading and `stop` trailing copies of one character from each token.
class StripDecoder : public Decoder {
 public:
  StripDecoder(char32_t content, size_t start, size_t stop) : content_(content), start_(start), stop_(stop) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) {
      std::vector<std::pair<size_t, size_t>> chars;  // byte ranges
      std::vector<char32_t> cps;
      size_t i = 0;
      while (i < t.size()) {
        const size_t s = i;
        cps.push_back(next_code_point(t, i));
        chars.emplace_back(s, i);
      }
      size_t start_cut = 0;
      for (size_t k = 0; k < start_ && k < cps.size(); ++k) {
        if (cps[k] != content_) break;
        start_cut = k + 1;
      }
      size_t stop_cut = cps.size();
      for (size_t k = 0; k < stop_ && k < cps.size(); ++k) {
        const size_t idx = cps.size() - k - 1;
        if (cps[idx] != content_) break;
        stop_cut = idx;
      }
      if (stop_cut <= start_cut) {
        t.clear();
        continue;
      }
      const size_t b = start_cut < chars.size() ? chars[start_cut].first : t.size();
      const size_t e = stop_cut > 0 ? chars[stop_cut - 1].second : 0;
      t = t.substr(b, e - b);
    }
  }

 private:
  char32_t content_;
  size_t start_, stop_;
};

Result<char32_t> single_char(const std::string& s, const std::string& what) {
  size_t i = 0;
  if (s.empty()) return invalid_argument(what + " must be one character");
  const char32_t c = next_code_point(s, i);
  if (i != s.size()) return invalid_argument(what + " must be one character (got '" + s + "')");
  return c;
}

}  // namespace

Result<std::unique_ptr<Decoder>> parse_decoder(const nlohmann::json& j, const std::string& where) {
  if (j.is_null()) return std::unique_ptr<Decoder>();
  STRATA_ASSIGN_OR_RETURN(std::string type, json_string(j, "type", where));
  const std::string at = where + " (" + type + ")";
  if (type == "Sequence") {
    if (!j.contains("decoders") || !j["decoders"].is_array()) return invalid_argument(at + ": 'decoders' must be an array");
    std::vector<std::unique_ptr<Decoder>> parts;
    for (size_t i = 0; i < j["decoders"].size(); ++i) {
      STRATA_ASSIGN_OR_RETURN(auto p, parse_decoder(j["decoders"][i], where + ".decoders[" + std::to_string(i) + "]"));
      if (p) parts.push_back(std::move(p));
    }
    return std::unique_ptr<Decoder>(new SequenceDecoder(std::move(parts)));
  }
  if (type == "ByteLevel") return std::unique_ptr<Decoder>(new ByteLevelDecoder());
  if (type == "ByteFallback") return std::unique_ptr<Decoder>(new ByteFallbackDecoder());
  if (type == "Fuse") return std::unique_ptr<Decoder>(new FuseDecoder());
  if (type == "Metaspace") {
    STRATA_ASSIGN_OR_RETURN(std::string rep, json_string_or(j, "replacement", "\u2581", at));
    STRATA_ASSIGN_OR_RETURN(char32_t c, single_char(rep, at + ": 'replacement'"));
    bool prepend = true;
    if (j.contains("prepend_scheme") && j["prepend_scheme"].is_string()) {
      prepend = j["prepend_scheme"].get<std::string>() != "never";
    } else {
      STRATA_ASSIGN_OR_RETURN(prepend, json_bool_or(j, "add_prefix_space", true, at));
    }
    return std::unique_ptr<Decoder>(new MetaspaceDecoder(c, prepend));
  }
  if (type == "Replace") {
    STRATA_ASSIGN_OR_RETURN(std::string content, json_string(j, "content", at));
    if (!j.contains("pattern") || !j["pattern"].is_object() || !j["pattern"].contains("String") ||
        !j["pattern"]["String"].is_string())
      return unsupported(at + ": only string patterns are supported in the Replace decoder");
    return std::unique_ptr<Decoder>(new ReplaceDecoder(j["pattern"]["String"].get<std::string>(), std::move(content)));
  }
  if (type == "Strip") {
    STRATA_ASSIGN_OR_RETURN(std::string content, json_string(j, "content", at));
    STRATA_ASSIGN_OR_RETURN(char32_t c, single_char(content, at + ": 'content'"));
    STRATA_ASSIGN_OR_RETURN(int64_t start, json_int_or(j, "start", 0, at));
    STRATA_ASSIGN_OR_RETURN(int64_t stop, json_int_or(j, "stop", 0, at));
    if (start < 0 || stop < 0) return invalid_argument(at + ": 'start' and 'stop' must be >= 0");
    return std::unique_ptr<Decoder>(new StripDecoder(c, static_cast<size_t>(start), static_cast<size_t>(stop)));
  }
  return unsupported(where + ": decoder type '" + type + "' is not supported (supported: Sequence, ByteLevel, "
                     "Metaspace, Replace, ByteFallback, Fuse, Strip)");
}

}  // namespace strata::text
