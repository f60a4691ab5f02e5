#include "common/thread_pool.h"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <cstring>
#include <string>

namespace strata {

namespace {

Status cpu_set_of(std::span<const int> cpus, cpu_set_t* set) {
  CPU_ZERO(set);
  if (cpus.empty()) return invalid_argument("thread binding: no CPUs given");
  for (int c : cpus) {
    if (c < 0 || c >= CPU_SETSIZE) return invalid_argument("thread binding: no CPU " + std::to_string(c));
    CPU_SET(c, set);
  }
  return Status::ok();
}

Status bind_thread(pthread_t thread, std::span<const int> cpus) {
  cpu_set_t set;
  STRATA_RETURN_IF_ERROR(cpu_set_of(cpus, &set));
  if (const int rc = pthread_setaffinity_np(thread, sizeof(set), &set); rc != 0)
    return invalid_argument(std::string("thread binding: ") + std::strerror(rc) +
                            " (are those CPUs online and allowed to this process?)");
  return Status::ok();
}

}  // namespace

Status bind_this_thread(std::span<const int> cpus) { return bind_thread(pthread_self(), cpus); }

Status ThreadPool::bind_workers(std::span<const int> cpus) {
  for (auto& t : workers_) STRATA_RETURN_IF_ERROR(bind_thread(t.native_handle(), cpus));
  return Status::ok();
}

ThreadPool::ThreadPool(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  start_cv_.notify_all();
  for (auto& t : workers_) t.join();
}

static void chunk(int64_t n, int parts, int index, int64_t* begin, int64_t* end) {
  int64_t base = n / parts, rem = n % parts;
  *begin = index * base + std::min<int64_t>(index, rem);
  *end = *begin + base + (index < rem ? 1 : 0);
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  if (workers_.empty() || n == 1) {
    fn(0, n);
    return;
  }
  std::lock_guard<std::mutex> call_lock(call_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_ = &fn;
    job_n_ = n;
    pending_ = static_cast<int>(workers_.size());
    ++generation_;
  }
  start_cv_.notify_all();
  int64_t b, e;
  chunk(n, size(), 0, &b, &e);
  if (b < e) fn(b, e);
  std::unique_lock<std::mutex> lock(mu_);
  done_cv_.wait(lock, [this] { return pending_ == 0; });
  job_ = nullptr;
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  for (;;) {
    const std::function<void(int64_t, int64_t)>* job;
    int64_t n;
    {
      std::unique_lock<std::mutex> lock(mu_);
      start_cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      job = job_;
      n = job_n_;
    }
    int64_t b, e;
    chunk(n, size(), index, &b, &e);
    if (b < e) (*job)(b, e);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (--pending_ == 0) done_cv_.notify_one();
    }
  }
}

}  // namespace strata
