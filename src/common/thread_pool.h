// ThreadPool: a fixed set of worker threads for data-parallel loops. parallel_for splits [0, n)
// into contiguous chunks and blocks until all are done; the calling thread works too. One
// parallel_for at a time per pool (calls from several threads are serialised).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "common/status.h"

namespace strata {

// Keeps the calling thread on these CPUs (OS indexes).
Status bind_this_thread(std::span<const int> cpus);

class ThreadPool {
 public:
  // threads == 0 means std::thread::hardware_concurrency().
  explicit ThreadPool(int threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Keeps the worker threads (not the caller's) on these CPUs (OS indexes), e.g. the cores
  // nearest a GPU; kInvalidArgument for an empty or impossible set, with the OS's reason.
  Status bind_workers(std::span<const int> cpus);

  // Calls fn(begin, end) on disjoint chunks covering [0, n); at most size() chunks.
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn);

 private:
  void worker_loop(int index);

  std::vector<std::thread> workers_;
  std::mutex call_mu_;  // serialises parallel_for
  std::mutex mu_;
  std::condition_variable start_cv_, done_cv_;
  const std::function<void(int64_t, int64_t)>* job_ = nullptr;
  int64_t job_n_ = 0;
  uint64_t generation_ = 0;
  int pending_ = 0;
  bool stop_ = false;
};

}  // namespace strata
