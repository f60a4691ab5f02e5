// Helpers for the storage tests: pattern data, whole-file reads with plain iostreams (an
// independent path to the bytes), and a Logger whose output the test can read back.
#pragma once

#include <cstdio>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "common/log.h"
#include "storage/aligned_buffer.h"

namespace strata::storage::test {

// Bytes that differ at every position and between seeds.
inline void fill_pattern(std::byte* p, size_t n, uint32_t seed) {
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    p[i] = static_cast<std::byte>(x);
  }
}

inline AlignedBuffer pattern_buffer(size_t n, uint32_t seed) {
  auto b = AlignedBuffer::allocate(n);
  fill_pattern(b->data(), n, seed);
  return std::move(b).value();
}

inline std::string read_whole_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline void write_whole_file(const std::filesystem::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << s;
}

// A Logger writing to a temporary file; text() returns everything logged so far.
class CapturedLog {
 public:
  CapturedLog() : file_(std::tmpfile()), log_(LogLevel::kDebug, file_) {}
  ~CapturedLog() { std::fclose(file_); }
  Logger& logger() { return log_; }
  std::string text() {
    std::fflush(file_);
    std::rewind(file_);
    std::string s;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), file_)) > 0) s.append(buf, n);
    return s;
  }

 private:
  std::FILE* file_;
  Logger log_;
};

}  // namespace strata::storage::test
