// The libfuse low-level adapter: translates each request into a Vfs call and
// replies exactly once. Nothing here decides filesystem semantics.
#pragma once

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "core/vfs/vfs.h"

namespace originfs {

struct FuseContext {
  Vfs* vfs = nullptr;
  fuse_session* session = nullptr;  // for notifications
  double negative_timeout = 1.0;
  double attr_timeout = 1.0;
  bool zero_open = true;  // answer OPEN with ENOSYS: the kernel then skips OPEN/RELEASE
  // With zero_open, FLUSH has nothing to do (writes go straight through to the
  // bucket file) and is answered ENOSYS so the kernel stops sending it; a
  // shared (network) bucket keeps it for close-to-open semantics.
  bool flush_on_close = false;
  // uid=, gid=, umask= mount options: how attributes are presented.
  std::optional<uid_t> uid;
  std::optional<gid_t> gid;
  std::optional<mode_t> umask;
};

const fuse_lowlevel_ops& FuseOperations();

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
