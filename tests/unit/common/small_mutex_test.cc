#include "core/common/small_mutex.h"

#include <gtest/gtest.h>

#include <mutex>
#include <thread>
#include <vector>

namespace originfs {
namespace {

TEST(SmallMutexTest, ExcludesUnderContention) {
  SmallMutex mu;
  uint64_t counter = 0;  // not atomic: only the mutex keeps increments whole
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 100000; ++i) {
        std::lock_guard lock(mu);
        ++counter;
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(counter, 800000u);
}

TEST(SmallMutexTest, TryLockFailsWhileHeld) {
  SmallMutex mu;
  std::unique_lock held(mu);
  bool got = true;
  std::thread([&] { got = mu.try_lock(); }).join();
  EXPECT_FALSE(got);
  held.unlock();
  std::thread([&] {
    got = mu.try_lock();
    if (got) mu.unlock();
  }).join();
  EXPECT_TRUE(got);
}

TEST(SmallMutexTest, WakesAWaiter) {
  SmallMutex mu;
  mu.lock();
  std::atomic<bool> entered{false};
  std::thread waiter([&] {
    std::lock_guard lock(mu);  // sleeps on the futex until unlock
    entered = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(entered.load());
  mu.unlock();
  waiter.join();
  EXPECT_TRUE(entered.load());
}

}  // namespace
}  // namespace originfs
