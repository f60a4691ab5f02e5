#include "common/json_read.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace strata {

namespace {

using json = nlohmann::json;

// Builds the document like nlohmann's own DOM parser, and also tracks where it is (for errors)
// and how deep (to refuse texts nested past the limit before they are built).
class CheckedBuilder {
 public:
  CheckedBuilder(json& root, int max_depth) : root_(root), max_depth_(max_depth) {}

  bool null() { return put(json(nullptr)); }
  bool boolean(bool v) { return put(json(v)); }
  bool number_integer(json::number_integer_t v) { return put(json(v)); }
  bool number_unsigned(json::number_unsigned_t v) { return put(json(v)); }
  bool number_float(json::number_float_t v, const json::string_t& text) {
    if (!std::isfinite(v)) return fail("the number " + text + " is out of range");
    return put(json(v));
  }
  bool string(json::string_t& v) { return put(json(std::move(v))); }
  bool binary(json::binary_t& v) { return put(json(std::move(v))); }
  bool start_object(std::size_t) { return open(json::object()); }
  bool start_array(std::size_t) { return open(json::array()); }
  bool key(json::string_t& k) {
    frames_.back().key = std::move(k);
    return true;
  }
  bool end_object() { return close(); }
  bool end_array() { return close(); }
  bool parse_error(std::size_t position, const std::string& token, const json::exception& ex) {
    position_ = position;
    if (ex.id == 406) return fail("the number " + token + " is out of range");
    std::string what = ex.what();
    if (const size_t p = what.find("] "); p != std::string::npos) what = what.substr(p + 2);
    error_ = "not valid JSON: " + what;
    return false;
  }

  const std::string& error() const { return error_; }
  size_t position() const { return position_; }

 private:
  struct Frame {
    json* node;
    std::string key;  // objects: the key of the value being read
  };

  bool put(json&& v) {
    if (frames_.empty()) {
      root_ = std::move(v);
      return true;
    }
    Frame& f = frames_.back();
    if (f.node->is_object()) {
      (*f.node)[f.key] = std::move(v);
    } else {
      f.node->push_back(std::move(v));
    }
    return true;
  }
  bool open(json&& v) {
    if (static_cast<int>(frames_.size()) >= max_depth_)
      return fail("arrays and objects nest deeper than " + std::to_string(max_depth_) + " levels");
    json* node = nullptr;
    if (frames_.empty()) {
      root_ = std::move(v);
      node = &root_;
    } else if (Frame& f = frames_.back(); f.node->is_object()) {
      node = &((*f.node)[f.key] = std::move(v));
    } else {
      f.node->push_back(std::move(v));
      node = &f.node->back();
    }
    frames_.push_back({node, {}});
    return true;
  }
  bool close() {
    frames_.pop_back();
    return true;
  }
  // The path of the value being read: "a.b[3].c".
  std::string path() const {
    std::string out;
    for (size_t i = 0; i < frames_.size(); ++i) {
      const Frame& f = frames_[i];
      if (f.node->is_object()) {
        if (!out.empty()) out += '.';
        out += f.key;
      } else {
        const bool last = i + 1 == frames_.size();  // its element is not inserted yet
        out += "[" + std::to_string(f.node->size() - (last ? 0 : 1)) + "]";
      }
    }
    return out;
  }
  bool fail(const std::string& what) {
    const std::string p = path();
    error_ = p.empty() ? what : "field '" + p + "': " + what;
    return false;
  }

  json& root_;
  int max_depth_;
  std::vector<Frame> frames_;
  std::string error_;
  size_t position_ = std::string::npos;
};

Status errno_status(const std::filesystem::path& path, const std::string& what) {
  const int e = errno;
  if (e == ENOENT) return not_found(path.string() + ": no such file");
  return io_error(path.string() + ": " + what + ": " + std::strerror(e), e);
}

}  // namespace

std::string file_kind(unsigned mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISREG(mode)) return "a regular file";
  return "not a regular file";
}

Result<nlohmann::json> parse_json(std::string_view text, const std::string& source, const JsonLimits& limits) {
  if (text.size() > limits.max_bytes)
    return corrupt(source + ": " + std::to_string(text.size()) + " bytes of JSON, over the limit of " +
                   std::to_string(limits.max_bytes));
  json root;
  CheckedBuilder builder(root, limits.max_depth);
  bool ok = false;
  try {
    ok = json::sax_parse(text, &builder);
  } catch (const json::exception& e) {  // not expected: the builder reports every error itself
    return corrupt(source + ": not valid JSON: " + e.what());
  }
  if (ok) return root;
  std::string at;
  if (builder.position() != std::string::npos) at = " (at byte " + std::to_string(builder.position()) + ")";
  return corrupt(source + ": " + (builder.error().empty() ? "not valid JSON" : builder.error()) + at);
}

Result<int> open_regular_file(const std::filesystem::path& path) {
  // O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below anyway.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return errno_status(path, "cannot open");
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    Status s = errno_status(path, "cannot stat");
    ::close(fd);
    return s;
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return invalid_argument(path.string() + ": is " + file_kind(st.st_mode) +
                            ", not a regular file; strata reads model and data files only from regular files");
  }
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  return fd;
}

Result<std::string> read_regular_file(const std::filesystem::path& path, uint64_t max_bytes) {
  STRATA_ASSIGN_OR_RETURN(int fd, open_regular_file(path));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    Status s = errno_status(path, "cannot stat");
    ::close(fd);
    return s;
  }
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    ::close(fd);
    return corrupt(path.string() + ": " + std::to_string(st.st_size) + " bytes, over the limit of " +
                   std::to_string(max_bytes) + " for this kind of file");
  }
  std::string data;
  data.resize(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t r = ::read(fd, data.data() + done, data.size() - done);
    if (r < 0) {
      if (errno == EINTR) continue;
      Status s = errno_status(path, "read failed");
      ::close(fd);
      return s;
    }
    if (r == 0) break;  // shrank while reading
    done += static_cast<size_t>(r);
  }
  ::close(fd);
  data.resize(done);
  return data;
}

Result<nlohmann::json> read_json_file(const std::filesystem::path& path, const JsonLimits& limits) {
  STRATA_ASSIGN_OR_RETURN(std::string text, read_regular_file(path, limits.max_bytes));
  return parse_json(text, path.string(), limits);
}

std::optional<int64_t> json_to_int64(const json& v) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
    return static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float()) {
    const double d = v.get<double>();
    // 2^63 is the first double past int64; compare before converting (converting it is undefined).
    if (!std::isfinite(d) || d != std::floor(d) || d < -9223372036854775808.0 || d >= 9223372036854775808.0)
      return std::nullopt;
    return static_cast<int64_t>(d);
  }
  return std::nullopt;
}

namespace {

std::string show_number(double d) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", d);
  return buf;
}

bool absent(const json& j, const char* key) {
  if (!j.is_object()) return true;
  auto it = j.find(key);
  return it == j.end() || it->is_null();
}

}  // namespace

Result<std::string> json_string(const json& j, const char* key, const std::string& where) {
  if (!j.is_object() || !j.contains(key)) return invalid_argument(where + ": missing field '" + key + "'");
  const auto& v = j.at(key);
  if (!v.is_string()) return invalid_argument(where + ": field '" + key + "' must be a string");
  return v.get<std::string>();
}

Result<std::string> json_string_or(const json& j, const char* key, const std::string& fallback,
                                   const std::string& where) {
  if (absent(j, key)) return fallback;
  if (!j.at(key).is_string()) return invalid_argument(where + ": field '" + key + "' must be a string");
  return j.at(key).get<std::string>();
}

Result<bool> json_bool_or(const json& j, const char* key, bool fallback, const std::string& where) {
  if (absent(j, key)) return fallback;
  if (!j.at(key).is_boolean()) return invalid_argument(where + ": field '" + key + "' must be true or false");
  return j.at(key).get<bool>();
}

Result<int64_t> json_int_or(const json& j, const char* key, int64_t fallback, const std::string& where) {
  return json_int_in_or(j, key, INT64_MIN, INT64_MAX, fallback, where);
}

Result<int64_t> json_int_in(const json& j, const char* key, int64_t lo, int64_t hi, const std::string& where) {
  if (absent(j, key)) return invalid_argument(where + ": missing field '" + key + "'");
  const std::optional<int64_t> v = json_to_int64(j.at(key));
  if (!v || *v < lo || *v > hi) {
    std::string range = lo == INT64_MIN && hi == INT64_MAX ? "an integer"
                        : hi == INT64_MAX ? "an integer >= " + std::to_string(lo)
                                          : "an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
    std::string got = j.at(key).dump();
    if (got.size() > 40) got = got.substr(0, 37) + "...";
    return invalid_argument(where + ": field '" + key + "' must be " + range + " (got " + got + ")");
  }
  return *v;
}

Result<int64_t> json_int_in_or(const json& j, const char* key, int64_t lo, int64_t hi, int64_t fallback,
                               const std::string& where) {
  if (absent(j, key)) return fallback;
  return json_int_in(j, key, lo, hi, where);
}

Result<uint64_t> json_uint(const json& j, const char* key, const std::string& where) {
  STRATA_ASSIGN_OR_RETURN(int64_t v, json_int_in(j, key, 0, INT64_MAX, where));
  return static_cast<uint64_t>(v);
}

Result<double> json_number_in_or(const json& j, const char* key, double lo, double hi, double fallback,
                                 const std::string& where) {
  if (absent(j, key)) return fallback;
  const json& v = j.at(key);
  if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() < lo || v.get<double>() > hi) {
    std::string got = v.dump();
    if (got.size() > 40) got = got.substr(0, 37) + "...";
    return invalid_argument(where + ": field '" + key + "' must be a number in [" + show_number(lo) + ", " +
                            show_number(hi) + "] (got " + got + ")");
  }
  return v.get<double>();
}

}  // namespace strata
