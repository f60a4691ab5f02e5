#include "storage/fault_injection.h"

#include <fcntl.h>

#include <algorithm>
#include <cerrno>

namespace strata::storage {

FaultRule* FaultInjectingBackend::match(const IoOp& op) {
  auto path = paths_.find(op.fd);
  const std::string& p = path == paths_.end() ? std::string() : path->second;
  for (FaultRule& rule : rules_) {
    if (rule.kind == FaultKind::kRefuseDirect || rule.times == 0 || rule.op != op.kind) continue;
    if (!rule.path_contains.empty() && p.find(rule.path_contains) == std::string::npos) continue;
    if (op.offset + op.length <= rule.offset_begin || op.offset >= rule.offset_end) continue;
    if (rule.skip > 0) {
      --rule.skip;
      continue;
    }
    if (rule.times > 0) --rule.times;
    ++injected_;
    return &rule;
  }
  return nullptr;
}

Status FaultInjectingBackend::submit(const IoOp& op) {
  FaultRule* rule = match(op);
  if (rule == nullptr) return inner_->submit(op);
  switch (rule->kind) {
    case FaultKind::kError:
      synthetic_.push_back(IoCompletion{op.tag, -int64_t{rule->err}});
      return Status::ok();
    case FaultKind::kAgain:
      synthetic_.push_back(IoCompletion{op.tag, -int64_t{EAGAIN}});
      return Status::ok();
    case FaultKind::kEndOfFile:
      synthetic_.push_back(IoCompletion{op.tag, 0});
      return Status::ok();
    case FaultKind::kShort: {
      IoOp half = op;
      uint32_t len = op.length / 2;
      if (len >= kIoAlignment) len = len / kIoAlignment * kIoAlignment;
      if (len == 0) {
        synthetic_.push_back(IoCompletion{op.tag, 0});  // nothing moved this time
        return Status::ok();
      }
      half.length = len;
      return inner_->submit(half);
    }
    case FaultKind::kFlipBit:
      flip_on_done_[op.tag] = op;
      return inner_->submit(op);
    case FaultKind::kRefuseDirect: break;
  }
  return inner_->submit(op);
}

Result<int> FaultInjectingBackend::wait(int min_complete, std::span<IoCompletion> out) {
  int n = 0;
  while (n < static_cast<int>(out.size()) && !synthetic_.empty()) {
    out[static_cast<size_t>(n++)] = synthetic_.front();
    synthetic_.pop_front();
  }
  if (n < static_cast<int>(out.size())) {
    const int still = std::max(0, min_complete - n);
    Result<int> got = inner_->wait(still, out.subspan(static_cast<size_t>(n)));
    if (!got.is_ok()) return got.status();
    for (int i = n; i < n + *got; ++i) {
      IoCompletion& c = out[static_cast<size_t>(i)];
      auto flip = flip_on_done_.find(c.tag);
      if (flip == flip_on_done_.end()) continue;
      if (c.result > 0) {
        // Flip the lowest bit of the middle byte that was read.
        static_cast<unsigned char*>(flip->second.buf)[c.result / 2] ^= 1u;
      }
      flip_on_done_.erase(flip);
    }
    n += *got;
  }
  return n;
}

Result<int> FaultInjectingBackend::open_file(const std::filesystem::path& path, int flags,
                                             mode_t mode) {
  if (flags & O_DIRECT) {
    for (FaultRule& rule : rules_) {
      if (rule.kind != FaultKind::kRefuseDirect || rule.times == 0) continue;
      if (!rule.path_contains.empty() &&
          path.string().find(rule.path_contains) == std::string::npos) {
        continue;
      }
      if (rule.times > 0) --rule.times;
      ++injected_;
      return Status(StatusCode::kIoError, "open: Invalid argument", EINVAL);
    }
  }
  Result<int> fd = inner_->open_file(path, flags, mode);
  if (fd.is_ok()) paths_[*fd] = path.string();
  return fd;
}

}  // namespace strata::storage
