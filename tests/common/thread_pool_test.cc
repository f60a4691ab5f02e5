// ThreadPool::parallel_for: every index exactly once, chunking, small n, serialised callers.

#include "common/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>
#include <utility>
#include <vector>

namespace strata {
namespace {

// Runs parallel_for over n and checks each index was visited exactly once, in disjoint chunks,
// at most pool.size() of them.
void check_cover(ThreadPool& pool, int64_t n) {
  std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
  std::mutex mu;
  std::vector<std::pair<int64_t, int64_t>> chunks;
  pool.parallel_for(n, [&](int64_t b, int64_t e) {
    {
      std::lock_guard<std::mutex> lock(mu);
      chunks.emplace_back(b, e);
    }
    for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
  });
  for (int64_t i = 0; i < n; ++i)
    ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << "n=" << n << " i=" << i;
  EXPECT_LE(static_cast<int>(chunks.size()), pool.size()) << "n=" << n;
  for (auto [b, e] : chunks) EXPECT_LT(b, e) << "empty chunk for n=" << n;
}

TEST(ThreadPoolTest, EveryIndexExactlyOnce) {
  ThreadPool pool(4);
  EXPECT_EQ(pool.size(), 4);
  for (int64_t n : {1, 2, 3, 4, 5, 7, 8, 100, 1001, 100000}) check_cover(pool, n);
}

TEST(ThreadPoolTest, FewerItemsThanThreads) {
  ThreadPool pool(8);
  for (int64_t n : {1, 2, 3, 7}) check_cover(pool, n);
}

TEST(ThreadPoolTest, ZeroItemsCallsNothing) {
  ThreadPool pool(3);
  bool called = false;
  pool.parallel_for(0, [&](int64_t, int64_t) { called = true; });
  pool.parallel_for(-5, [&](int64_t, int64_t) { called = true; });
  EXPECT_FALSE(called);
}

TEST(ThreadPoolTest, SingleThreadPoolRunsOnCaller) {
  ThreadPool pool(1);
  EXPECT_EQ(pool.size(), 1);
  const auto caller = std::this_thread::get_id();
  pool.parallel_for(10, [&](int64_t b, int64_t e) {
    EXPECT_EQ(std::this_thread::get_id(), caller);
    EXPECT_EQ(b, 0);
    EXPECT_EQ(e, 10);
  });
}

TEST(ThreadPoolTest, UsesWorkersAndCaller) {
  ThreadPool pool(4);
  std::mutex mu;
  std::set<std::thread::id> ids;
  pool.parallel_for(4, [&](int64_t, int64_t) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::lock_guard<std::mutex> lock(mu);
    ids.insert(std::this_thread::get_id());
  });
  EXPECT_EQ(ids.size(), 4u);
  EXPECT_EQ(ids.count(std::this_thread::get_id()), 1u);
}

TEST(ThreadPoolTest, ManyConsecutiveCalls) {
  ThreadPool pool(4);
  std::atomic<int64_t> total{0};
  for (int rep = 0; rep < 2000; ++rep) {
    pool.parallel_for(rep % 9, [&](int64_t b, int64_t e) { total.fetch_add(e - b); });
  }
  int64_t expect = 0;
  for (int rep = 0; rep < 2000; ++rep) expect += rep % 9;
  EXPECT_EQ(total.load(), expect);
}

TEST(ThreadPoolTest, CallsFromSeveralThreadsAreSerialised) {
  ThreadPool pool(3);
  std::atomic<int64_t> total{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 4; ++c) {
    callers.emplace_back([&] {
      for (int rep = 0; rep < 200; ++rep)
        pool.parallel_for(50, [&](int64_t b, int64_t e) { total.fetch_add(e - b); });
    });
  }
  for (auto& t : callers) t.join();
  EXPECT_EQ(total.load(), 4 * 200 * 50);
}

TEST(ThreadPool, BoundWorkersRunOnlyOnTheirCpus) {
  ThreadPool pool(3);
  const int cpu = sched_getcpu();
  ASSERT_GE(cpu, 0);
  const std::vector<int> one = {cpu};
  ASSERT_TRUE(pool.bind_workers(one).is_ok());
  std::mutex mu;
  std::set<int> seen;
  for (int rep = 0; rep < 20; ++rep)
    pool.parallel_for(3, [&](int64_t b, int64_t) {
      if (b == 0) return;  // the caller's chunk: the caller is not bound
      std::lock_guard lock(mu);
      seen.insert(sched_getcpu());
    });
  EXPECT_EQ(seen, std::set<int>{cpu});
  // The caller binds itself separately (and is given its CPUs back); impossible sets are refused.
  cpu_set_t before;
  ASSERT_EQ(sched_getaffinity(0, sizeof(before), &before), 0);
  EXPECT_TRUE(bind_this_thread(one).is_ok());
  EXPECT_EQ(sched_getcpu(), cpu);
  ASSERT_EQ(sched_setaffinity(0, sizeof(before), &before), 0);
  EXPECT_FALSE(pool.bind_workers({}).is_ok());
  const std::vector<int> bad = {-1};
  EXPECT_FALSE(pool.bind_workers(bad).is_ok());
}

}  // namespace
}  // namespace strata
