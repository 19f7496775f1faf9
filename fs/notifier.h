#pragma once

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

namespace originfs {

// Sends kernel notifications from a thread of its own. A notification may
// wait for a lock the kernel holds while it waits for one of our replies
// (inval_entry takes the parent directory's lock; inval_inode with a range
// takes page locks), so one sent from a request handler or a download thread
// can deadlock the mount: a refresh inside SETXATTR (the kernel holds the
// file's lock) invalidating its entry while `rm` holds the directory and
// waits for the file did. Every notification goes through the queue and is
// sent by Loop's thread alone (no other source file may send one:
// tests/unit/source_rules_test.cc), with one exception that takes
// no sleeping lock: InvalidateAttributes.
class Notifier {
 public:
  Notifier() = default;
  ~Notifier();
  Notifier(const Notifier&) = delete;
  Notifier& operator=(const Notifier&) = delete;
  void Start(fuse_session* se);
  void Stop();  // drops what is still queued
  void InvalidateEntry(uint64_t parent, const std::string& name);
  // The inode's attributes and its cached pages in [off, off + len) (len 0: to the end).
  void InvalidatePages(uint64_t ino, int64_t off, int64_t len);
  // Every name the kernel has cached is looked up again at its next use
  // (FUSE_NOTIFY_INC_EPOCH, Linux 6.16+; false, with a log line, before).
  void InvalidateEverything();
  // Drops the inode's cached attributes at once, from any thread: with a
  // negative offset the kernel takes only a spinlock (fuse_reverse_inval_inode
  // touches no page and no inode lock), so it cannot wait on us.
  static void InvalidateAttributes(fuse_session* se, uint64_t ino);
  // How many notifications were sent (tests).
  uint64_t sent() const;

 private:
  struct Note {
    uint64_t ino;      // parent for an entry
    std::string name;  // empty: an inode's pages
    int64_t off = 0, len = 0;
    bool everything = false;
  };
  void Loop();
  void Send(const Note& n);
  mutable std::mutex mu_;
  std::condition_variable cv_;
  fuse_session* se_ = nullptr;  // guarded by mu_
  std::deque<Note> queue_;      // guarded by mu_
  bool stopping_ = false;       // guarded by mu_
  uint64_t sent_ = 0;           // guarded by mu_
  std::thread thread_;
};

}  // namespace originfs
