// Group commit: callers that arrive while a group is being committed form
// the next group, committed by one of them (the leader) for all, so a burst
// of N commits costs a few flushes, not N. Among concurrent callers (the
// last group, moments ago, had several) the leader waits a little for more;
// a lone caller, or one calling in series, commits at once. Used for durable
// landings (core/store/landing.cc) and index writes (lmdb_index.cc).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <mutex>
#include <vector>

namespace originfs {

template <class Item>
class GroupCommit {
 public:
  struct Options {
    std::size_t full = 64;                 // a group this big commits at once
    std::chrono::milliseconds stream{10};  // "moments ago"
    std::chrono::milliseconds linger{2};   // how long a leader waits for more
  };
  explicit GroupCommit(Options o) : o_(o) {}

  // Returns once a group holding item has been committed: by commit(group)
  // on this thread, or by another caller's. If commit throws, failed(group,
  // the exception) runs instead, so no caller waits forever.
  template <class Commit, class Failed>
  void Join(Item* item, Commit&& commit, Failed&& failed) {
    Slot mine{item};
    std::unique_lock lock(mu_);
    queue_.push_back(&mine);
    if (leader_ && queue_.size() >= o_.full) cv_.notify_all();  // ends a linger
    cv_.wait(lock, [&] { return mine.done || !leader_; });
    if (mine.done) return;
    leader_ = true;
    auto now = std::chrono::steady_clock::now();
    if (queue_.size() < o_.full && last_size_ > 1 && now - last_ < o_.stream)
      cv_.wait_for(lock, o_.linger, [&] { return queue_.size() >= o_.full; });
    std::vector<Slot*> slots;
    slots.swap(queue_);
    lock.unlock();
    std::vector<Item*> group;
    group.reserve(slots.size());
    for (Slot* s : slots) group.push_back(s->item);
    try {
      commit(group);
    } catch (const std::exception& e) {  // (bad_alloc)
      failed(group, e);
    }
    lock.lock();
    last_ = std::chrono::steady_clock::now();
    last_size_ = group.size();
    leader_ = false;
    for (Slot* s : slots) s->done = true;
    cv_.notify_all();
  }

 private:
  struct Slot {
    Item* item;
    bool done = false;  // guarded by mu_
  };
  const Options o_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Slot*> queue_;                    // guarded by mu_: callers waiting for a group
  bool leader_ = false;                         // guarded by mu_: a caller is committing a group
  std::chrono::steady_clock::time_point last_;  // guarded by mu_: the last group's end
  std::size_t last_size_ = 0;                   // guarded by mu_
};

}  // namespace originfs
