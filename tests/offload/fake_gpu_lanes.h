// A GpuLanes for tests without a GPU: three lanes, each a thread running the work enqueued on it
// in order, with markers other lanes and host threads can wait for. Work is a closure; a lane can
// be made to fail (its later markers and host_wait report the failure, as a CUDA fault would).
// Thread safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "offload/executor.h"

namespace strata::offload::testing {

class FakeGpuLanes final : public GpuLanes {
 public:
  FakeGpuLanes() {
    for (int l = 0; l < cuda::kNumLanes; ++l) lanes_.push_back(std::make_unique<LaneThread>());
  }
  ~FakeGpuLanes() override {
    for (auto& l : lanes_) l->stop();
  }

  // Work on `lane`, after what is already there.
  void enqueue(cuda::Lane lane, std::function<void()> work) { at(lane).push(std::move(work)); }
  // From now on host_wait() of markers recorded on `lane` after this fails with `error`.
  void fail(cuda::Lane lane, Status error) {
    enqueue(lane, [this, lane, error] {
      std::lock_guard lock(mu_);
      failed_[static_cast<int>(lane)] = error;
    });
  }

  Marker record(cuda::Lane lane) override {
    auto m = std::make_shared<State>();
    const int l = static_cast<int>(lane);
    enqueue(lane, [this, m, l] {
      Status error = Status::ok();
      {
        std::lock_guard lock(mu_);
        error = failed_[l];
      }
      m->set(error);
    });
    return Marker{m};
  }
  void wait(cuda::Lane lane, const Marker& marker) override {
    if (!marker.handle) return;
    auto m = std::static_pointer_cast<State>(marker.handle);
    enqueue(lane, [m] { (void)m->wait(); });
  }
  Status host_wait(const Marker& marker) override {
    return marker.handle ? std::static_pointer_cast<State>(marker.handle)->wait() : Status::ok();
  }
  Status synchronize() override {
    for (auto& l : lanes_) l->wait_idle();
    return Status::ok();
  }
  void begin(cuda::Lane, const std::string&) override {}
  void end(cuda::Lane) override {}
  double now_s() const override {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  }
  // Work enqueued and not yet finished, over all lanes.
  int pending() const {
    int n = 0;
    for (const auto& l : lanes_) n += l->pending();
    return n;
  }

 private:
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    Status error = Status::ok();
    void set(Status e) {
      std::lock_guard lock(mu);
      done = true;
      error = std::move(e);
      cv.notify_all();
    }
    Status wait() {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return done; });
      return error;
    }
  };
  class LaneThread {
   public:
    LaneThread() : thread_([this] { loop(); }) {}
    void push(std::function<void()> w) {
      std::lock_guard lock(mu_);
      queue_.push_back(std::move(w));
      ++pending_;
      cv_.notify_all();
    }
    int pending() const {
      std::lock_guard lock(mu_);
      return pending_;
    }
    void wait_idle() {
      std::unique_lock lock(mu_);
      idle_cv_.wait(lock, [&] { return pending_ == 0; });
    }
    void stop() {
      {
        std::lock_guard lock(mu_);
        stop_ = true;
      }
      cv_.notify_all();
      thread_.join();
    }

   private:
    void loop() {
      for (;;) {
        std::function<void()> w;
        {
          std::unique_lock lock(mu_);
          cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
          if (queue_.empty()) return;
          w = std::move(queue_.front());
          queue_.pop_front();
        }
        w();
        std::lock_guard lock(mu_);
        if (--pending_ == 0) idle_cv_.notify_all();
      }
    }
    mutable std::mutex mu_;
    std::condition_variable cv_, idle_cv_;
    std::deque<std::function<void()>> queue_;
    int pending_ = 0;
    bool stop_ = false;
    std::thread thread_;
  };
  LaneThread& at(cuda::Lane lane) { return *lanes_[static_cast<size_t>(lane)]; }

  std::vector<std::unique_ptr<LaneThread>> lanes_;
  std::mutex mu_;
  Status failed_[cuda::kNumLanes] = {Status::ok(), Status::ok(), Status::ok()};
};

}  // namespace strata::offload::testing
