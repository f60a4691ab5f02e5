// The fallback backend: a pool of threads, each running one pread/pwrite at a time. Used when the
// kernel refuses io_uring; queue_depth() equals the number of threads. A single thread is the
// synchronous-read baseline.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "common/check.h"
#include "storage/io_backend.h"

namespace strata::storage {
namespace {

class ThreadIoBackend final : public IoBackend {
 public:
  explicit ThreadIoBackend(int threads) : depth_(threads) {
    for (int i = 0; i < threads; ++i) workers_.emplace_back([this] { work(); });
  }
  ~ThreadIoBackend() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    queued_cv_.notify_all();
    for (auto& t : workers_) t.join();
  }

  std::string_view name() const override { return "threads"; }
  int queue_depth() const override { return depth_; }

  Status submit(const IoOp& op) override {
    std::lock_guard<std::mutex> lock(mu_);
    STRATA_CHECK(in_flight_ < depth_, "thread backend: more ops submitted than queue_depth()");
    ++in_flight_;
    queued_.push_back(op);
    queued_cv_.notify_one();
    return Status::ok();
  }

  Result<int> wait(int min_complete, std::span<IoCompletion> out) override {
    std::unique_lock<std::mutex> lock(mu_);
    STRATA_CHECK(min_complete <= in_flight_, "thread backend: waiting for more ops than in flight");
    done_cv_.wait(lock, [&] { return static_cast<int>(done_.size()) >= min_complete; });
    int n = 0;
    while (n < static_cast<int>(out.size()) && !done_.empty()) {
      out[static_cast<size_t>(n++)] = done_.front();
      done_.pop_front();
      --in_flight_;
    }
    return n;
  }

 private:
  void work() {
    while (true) {
      IoOp op;
      {
        std::unique_lock<std::mutex> lock(mu_);
        queued_cv_.wait(lock, [&] { return stop_ || !queued_.empty(); });
        if (stop_ && queued_.empty()) return;
        op = queued_.front();
        queued_.pop_front();
      }
      ssize_t rc = op.kind == IoOpKind::kRead
                       ? ::pread(op.fd, op.buf, op.length, static_cast<off_t>(op.offset))
                       : ::pwrite(op.fd, op.buf, op.length, static_cast<off_t>(op.offset));
      const int64_t result = rc < 0 ? -int64_t{errno} : static_cast<int64_t>(rc);
      {
        std::lock_guard<std::mutex> lock(mu_);
        done_.push_back(IoCompletion{op.tag, result});
      }
      done_cv_.notify_one();
    }
  }

  const int depth_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable queued_cv_, done_cv_;
  std::deque<IoOp> queued_;
  std::deque<IoCompletion> done_;
  int in_flight_ = 0;
  bool stop_ = false;
};

}  // namespace

std::unique_ptr<IoBackend> make_thread_io_backend(int threads) {
  STRATA_CHECK(threads >= 1, "thread I/O backend needs at least one thread");
  return std::make_unique<ThreadIoBackend>(threads);
}

std::string_view io_backend_kind_name(IoBackendKind kind) {
  switch (kind) {
    case IoBackendKind::kAuto: return "auto";
    case IoBackendKind::kIoUring: return "io_uring";
    case IoBackendKind::kThreads: return "threads";
  }
  return "?";
}

Result<std::unique_ptr<IoBackend>> make_io_backend(const IoBackendOptions& options, Logger& log) {
  if (options.queue_depth < 1) {
    return invalid_argument("I/O queue depth must be at least 1, got " +
                            std::to_string(options.queue_depth));
  }
  if (options.kind == IoBackendKind::kThreads) return make_thread_io_backend(options.queue_depth);
  Result<std::unique_ptr<IoBackend>> ring = make_io_uring_backend(options.queue_depth);
  if (ring.is_ok() || options.kind == IoBackendKind::kIoUring) return ring;
  const int threads = std::min(options.queue_depth, 16);
  log.warn("io_uring is unavailable (" + ring.status().message() + "); using " +
           std::to_string(threads) +
           " pread/pwrite threads instead, which reach less of a fast drive's bandwidth");
  return make_thread_io_backend(threads);
}

}  // namespace strata::storage
