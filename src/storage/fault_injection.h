// FaultInjectingBackend: wraps a real IoBackend and makes chosen ops fail the way disks and
// filesystems do (EIO, ENOSPC, short transfers, end of file, -EAGAIN, flipped bits, a
// filesystem that refuses O_DIRECT), for tests of every error path. Rules match ops by the path
// their fd was opened with and by file offset; each rule fires a given number of times.
// Same threading contract as any IoBackend; add_rule() must not race with submit().
#pragma once

#include <cstdint>
#include <deque>
#include <limits>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "storage/io_backend.h"

namespace strata::storage {

enum class FaultKind {
  kError,         // the op completes with -err and moves no bytes
  kShort,         // the op moves only its first half (rounded down to 4 KiB when that is > 0)
  kEndOfFile,     // a read completes with 0 bytes, as at the end of a truncated file
  kAgain,         // the op completes with -EAGAIN
  kFlipBit,       // a read completes normally, then one bit of its buffer is flipped
  kRefuseDirect,  // open_file with O_DIRECT fails with EINVAL (as on tmpfs before Linux 6.6)
};

struct FaultRule {
  FaultKind kind = FaultKind::kError;
  IoOpKind op = IoOpKind::kRead;  // which ops the rule applies to (not used by kRefuseDirect)
  int err = 5;                    // errno for kError (EIO = 5)
  std::string path_contains;      // empty: any file
  uint64_t offset_begin = 0;      // the op must overlap [offset_begin, offset_end)
  uint64_t offset_end = std::numeric_limits<uint64_t>::max();
  int times = 1;                  // how many ops it hits; -1: every matching op
  int skip = 0;                   // matching ops to let through before the first hit
};

class FaultInjectingBackend final : public IoBackend {
 public:
  explicit FaultInjectingBackend(std::unique_ptr<IoBackend> inner) : inner_(std::move(inner)) {}

  void add_rule(const FaultRule& rule) { rules_.push_back(rule); }
  void clear_rules() { rules_.clear(); }
  // Faults injected so far.
  int injected() const { return injected_; }

  std::string_view name() const override { return "fault-injecting"; }
  int queue_depth() const override { return inner_->queue_depth(); }
  Status submit(const IoOp& op) override;
  Result<int> wait(int min_complete, std::span<IoCompletion> out) override;
  Status register_buffers(std::span<const iovec> buffers) override {
    return inner_->register_buffers(buffers);
  }
  void unregister_buffers() override { inner_->unregister_buffers(); }
  Result<int> open_file(const std::filesystem::path& path, int flags, mode_t mode) override;

 private:
  FaultRule* match(const IoOp& op);

  std::unique_ptr<IoBackend> inner_;
  std::vector<FaultRule> rules_;
  std::unordered_map<int, std::string> paths_;        // fd -> path it was opened with
  std::deque<IoCompletion> synthetic_;                // completions made up without the inner
  std::unordered_map<uint64_t, IoOp> flip_on_done_;   // tag -> op whose buffer gets a flipped bit
  int injected_ = 0;
};

}  // namespace strata::storage
