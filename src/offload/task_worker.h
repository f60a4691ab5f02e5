// TaskWorker: a thread that runs tasks in submission order, for the offloading engine's disk and
// CPU-attention work beside the GPU. submit() and wait() are thread safe; tasks run one at a
// time on the worker's own thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "common/status.h"

namespace strata::offload {

// A thread that runs tasks in submission order. wait(ticket) returns once that task has run, with
// the first failure of any task so far (after a failure the remaining tasks are skipped).
class TaskWorker {
 public:
  explicit TaskWorker(std::string name) : name_(std::move(name)), thread_([this] { loop(); }) {}
  ~TaskWorker() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  int64_t submit(std::function<Status()> fn) {
    std::lock_guard lock(mu_);
    queue_.push_back(std::move(fn));
    cv_.notify_all();
    return submitted_++;
  }

  Status wait(int64_t ticket) {
    std::unique_lock lock(mu_);
    done_cv_.wait(lock, [&] { return done_ > ticket; });
    return error_;
  }

  Status drain() {
    std::unique_lock lock(mu_);
    done_cv_.wait(lock, [&] { return done_ == submitted_; });
    return error_;
  }

  void clear_error() {
    std::lock_guard lock(mu_);
    error_ = Status::ok();
  }

 private:
  void loop() {
    for (;;) {
      std::function<Status()> fn;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;
        fn = std::move(queue_.front());
        queue_.pop_front();
      }
      Status st = Status::ok();
      bool failed_before;
      {
        std::lock_guard lock(mu_);
        failed_before = !error_.is_ok();
      }
      if (!failed_before) st = fn();
      {
        std::lock_guard lock(mu_);
        if (!st.is_ok() && error_.is_ok()) error_ = st.with_context(name_);
        ++done_;
      }
      done_cv_.notify_all();
    }
  }

  std::string name_;
  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  std::deque<std::function<Status()>> queue_;
  int64_t submitted_ = 0, done_ = 0;
  Status error_ = Status::ok();
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace strata::offload
