#pragma once

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

namespace originfs {

// Set while a setxattr handler runs (fs/fuse_ops.cc): a refresh's
// invalidation is then sent before the reply, so the caller's next open
// already sees the new file.
extern thread_local fuse_session* t_handler_session;

// Sends kernel notifications from a thread of its own, so that a download
// thread never waits for a directory lock the kernel holds while it waits for us.
class Notifier {
 public:
  Notifier() = default;
  ~Notifier();
  Notifier(const Notifier&) = delete;
  Notifier& operator=(const Notifier&) = delete;
  void Start(fuse_session* se);
  void Stop();  // drops what is still queued
  void InvalidateEntry(uint64_t parent, const std::string& name);

 private:
  void Loop();
  std::mutex mu_;
  std::condition_variable cv_;
  fuse_session* se_ = nullptr;                          // guarded by mu_
  std::deque<std::pair<uint64_t, std::string>> queue_;  // guarded by mu_
  bool stopping_ = false;                               // guarded by mu_
  std::thread thread_;
};

}  // namespace originfs
