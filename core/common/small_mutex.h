// A mutex of 4 bytes (std::mutex is 40 on glibc), for objects kept by the
// million, such as the vfs's inodes. Lockable (std::lock_guard,
// std::unique_lock, std::try_to_lock); waiters sleep on a futex through
// std::atomic::wait. No condition variable can wait on it.
//
// States: 0 unlocked, 1 locked, 2 locked and maybe waited for; unlock wakes a
// waiter only from 2 (U. Drepper, "Futexes Are Tricky", mutex 2).
#pragma once

#include <atomic>
#include <cstdint>

namespace originfs {

class SmallMutex {
 public:
  SmallMutex() = default;
  SmallMutex(const SmallMutex&) = delete;
  SmallMutex& operator=(const SmallMutex&) = delete;

  void lock() {
    uint32_t c = 0;
    if (state_.compare_exchange_strong(c, 1, std::memory_order_acquire)) return;
    if (c != 2) c = state_.exchange(2, std::memory_order_acquire);
    while (c != 0) {
      state_.wait(2, std::memory_order_relaxed);
      c = state_.exchange(2, std::memory_order_acquire);
    }
  }
  bool try_lock() {
    uint32_t c = 0;
    return state_.compare_exchange_strong(c, 1, std::memory_order_acquire);
  }
  void unlock() {
    if (state_.exchange(0, std::memory_order_release) == 2) state_.notify_one();
  }

 private:
  std::atomic<uint32_t> state_{0};
};

static_assert(sizeof(SmallMutex) == 4);

}  // namespace originfs
