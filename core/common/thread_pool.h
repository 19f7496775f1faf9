#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace originfs {

// A fixed set of worker threads running queued tasks in FIFO order.
class ThreadPool {
 public:
  explicit ThreadPool(std::size_t threads);
  ~ThreadPool();  // Drain()
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Tasks may submit tasks, also while the pool drains; one submitted after
  // the last worker has left is dropped unrun.
  void Submit(std::function<void()> task);
  // Runs what is queued, then joins the workers. The pool stays usable as an
  // object (Submit is safe) while and after this runs.
  void Drain();

 private:
  void Loop();
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;  // guarded by mu_
  bool stopping_ = false;                    // guarded by mu_
  std::vector<std::thread> threads_;
};

}  // namespace originfs
