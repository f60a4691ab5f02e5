#include "common/log.h"

namespace strata {

void Logger::write(LogLevel level, std::string_view msg) {
  if (level < level_) return;
  static constexpr const char* kTags[] = {"debug", "info", "warning", "error"};
  std::lock_guard<std::mutex> lock(mu_);
  std::fprintf(out_, "strata: %s: %.*s\n", kTags[static_cast<int>(level)],
               static_cast<int>(msg.size()), msg.data());
  std::fflush(out_);
}

}  // namespace strata
