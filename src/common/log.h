// Logger: levelled, line-oriented messages to a FILE* (stderr by default). One Logger is owned by
// the application's context and passed by reference; it is thread safe (one line per call).
#pragma once

#include <cstdio>
#include <mutex>
#include <string>
#include <string_view>

namespace strata {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3, kQuiet = 4 };

class Logger {
 public:
  explicit Logger(LogLevel level = LogLevel::kInfo, std::FILE* out = stderr)
      : level_(level), out_(out) {}

  void set_level(LogLevel level) { level_ = level; }
  LogLevel level() const { return level_; }

  void debug(std::string_view msg) { write(LogLevel::kDebug, msg); }
  void info(std::string_view msg) { write(LogLevel::kInfo, msg); }
  void warn(std::string_view msg) { write(LogLevel::kWarn, msg); }
  void error(std::string_view msg) { write(LogLevel::kError, msg); }

  void write(LogLevel level, std::string_view msg);

 private:
  LogLevel level_;
  std::FILE* out_;
  std::mutex mu_;
};

}  // namespace strata
