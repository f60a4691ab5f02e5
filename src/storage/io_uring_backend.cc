// The io_uring backend: the only file in strata that includes liburing. One ring of queue_depth
// entries; submit() prepares SQEs, wait() submits them and reaps CQEs in batches. Reads into
// registered buffers use IORING_OP_READ_FIXED (no per-op page pinning).
#include <liburing.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "common/check.h"
#include "storage/io_backend.h"

namespace strata::storage {
namespace {

std::string errno_text(int err) { return std::strerror(err); }

class IoUringBackend final : public IoBackend {
 public:
  explicit IoUringBackend(int depth) : depth_(depth) {}
  ~IoUringBackend() override {
    if (ready_) {
      if (registered_) io_uring_unregister_buffers(&ring_);
      io_uring_queue_exit(&ring_);
    }
  }

  // Sets up the ring and runs one NOP through it, so a kernel or seccomp policy that refuses
  // io_uring_enter is caught here rather than on the first read.
  Status init() {
    int rc = io_uring_queue_init(static_cast<unsigned>(depth_), &ring_, 0);
    if (rc < 0) return unsupported("io_uring_queue_init: " + errno_text(-rc));
    ready_ = true;
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    STRATA_CHECK(sqe != nullptr, "io_uring: a fresh ring has no free SQE");
    io_uring_prep_nop(sqe);
    rc = io_uring_submit_and_wait(&ring_, 1);
    if (rc < 0) return unsupported("io_uring_enter: " + errno_text(-rc));
    io_uring_cqe* cqe = nullptr;
    rc = io_uring_peek_cqe(&ring_, &cqe);
    if (rc < 0 || cqe == nullptr) return unsupported("io_uring: the NOP probe did not complete");
    const int res = cqe->res;
    io_uring_cqe_seen(&ring_, cqe);
    if (res < 0) return unsupported("io_uring NOP: " + errno_text(-res));
    return Status::ok();
  }

  std::string_view name() const override { return "io_uring"; }
  int queue_depth() const override { return depth_; }

  Status submit(const IoOp& op) override {
    STRATA_CHECK(in_flight_ < depth_, "io_uring: more ops submitted than queue_depth()");
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) {
      // The SQ ring is full of prepared entries: hand them to the kernel first.
      int rc = io_uring_submit(&ring_);
      if (rc < 0) return io_error("io_uring_submit: " + errno_text(-rc), -rc);
      sqe = io_uring_get_sqe(&ring_);
      if (sqe == nullptr) return internal_error("io_uring: no free SQE after submit");
    }
    const bool fixed = op.buf_index >= 0 && registered_;
    if (op.kind == IoOpKind::kRead) {
      if (fixed) io_uring_prep_read_fixed(sqe, op.fd, op.buf, op.length, op.offset, op.buf_index);
      else io_uring_prep_read(sqe, op.fd, op.buf, op.length, op.offset);
    } else {
      if (fixed) io_uring_prep_write_fixed(sqe, op.fd, op.buf, op.length, op.offset, op.buf_index);
      else io_uring_prep_write(sqe, op.fd, op.buf, op.length, op.offset);
    }
    io_uring_sqe_set_data64(sqe, op.tag);
    ++in_flight_;
    return Status::ok();
  }

  Result<int> wait(int min_complete, std::span<IoCompletion> out) override {
    STRATA_CHECK(min_complete <= in_flight_, "io_uring: waiting for more ops than are in flight");
    while (true) {
      int rc = min_complete > 0
                   ? io_uring_submit_and_wait(&ring_, static_cast<unsigned>(min_complete))
                   : io_uring_submit(&ring_);
      if (rc >= 0) break;
      // EINTR: a signal; EAGAIN/EBUSY: the kernel wants completions reaped first.
      if (rc == -EINTR) continue;
      if ((rc == -EAGAIN || rc == -EBUSY) && io_uring_cq_ready(&ring_) > 0) break;
      if (rc == -EAGAIN || rc == -EBUSY) continue;
      return io_error("io_uring_enter: " + errno_text(-rc), -rc);
    }
    int n = 0;
    while (n < static_cast<int>(out.size())) {
      io_uring_cqe* cqe = nullptr;
      if (io_uring_peek_cqe(&ring_, &cqe) != 0 || cqe == nullptr) {
        if (n >= min_complete) break;
        int rc = io_uring_wait_cqe(&ring_, &cqe);
        if (rc == -EINTR) continue;
        if (rc < 0) return io_error("io_uring_wait_cqe: " + errno_text(-rc), -rc);
      }
      out[static_cast<size_t>(n)] = IoCompletion{io_uring_cqe_get_data64(cqe), cqe->res};
      io_uring_cqe_seen(&ring_, cqe);
      --in_flight_;
      ++n;
    }
    return n;
  }

  Status register_buffers(std::span<const iovec> buffers) override {
    if (registered_) unregister_buffers();
    int rc = io_uring_register_buffers(&ring_, buffers.data(), static_cast<unsigned>(buffers.size()));
    if (rc < 0) {
      return Status(StatusCode::kUnsupported, "io_uring_register_buffers: " + errno_text(-rc), -rc);
    }
    registered_ = true;
    return Status::ok();
  }

  void unregister_buffers() override {
    if (registered_) io_uring_unregister_buffers(&ring_);
    registered_ = false;
  }

 private:
  int depth_;
  io_uring ring_{};
  bool ready_ = false;
  bool registered_ = false;
  int in_flight_ = 0;
};

}  // namespace

Result<std::unique_ptr<IoBackend>> make_io_uring_backend(int queue_depth) {
  if (queue_depth < 1 || queue_depth > 4096) {
    return invalid_argument("io_uring queue depth must be in [1, 4096], got " +
                            std::to_string(queue_depth));
  }
  auto backend = std::make_unique<IoUringBackend>(queue_depth);
  STRATA_RETURN_IF_ERROR(backend->init());
  return std::unique_ptr<IoBackend>(std::move(backend));
}

}  // namespace strata::storage
