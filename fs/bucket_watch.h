// Changes other programs make in the bucket (an uploader, rsync into the new
// storage), seen through fanotify on the bucket's filesystem, so that the
// kernel may keep the mount's names and attributes for long: each change
// becomes an invalidation of exactly what it touched.
//
// One filesystem mark (FAN_MARK_FILESYSTEM, needs CAP_SYS_ADMIN) reports
// entries made, removed and renamed (the directory's file handle and the
// name) and files written or changed (the file's handle). Events of this
// process are its own operations, which the kernel learns from the replies
// or from the daemon's own invalidations: they are dropped unread. What
// fanotify does not report: writes through a shared mmap, changes below
// another filesystem mounted inside the bucket.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "core/common/error.h"
#include "core/common/unique_fd.h"

namespace originfs {

class BucketWatch {
 public:
  struct Callbacks {
    // name in the directory (dev, dir) was made, removed or renamed.
    std::function<void(dev_t dev, ino_t dir, const std::string& name)> entry;
    // The file or directory (dev, ino) was written or its attributes changed.
    std::function<void(dev_t dev, ino_t ino)> inode;
    // Events were lost: anything may have changed. (The queue is unbounded:
    // only when the kernel could not allocate an event.)
    std::function<void()> everything;
  };

  // Marks the filesystem of bucket; an error (no fanotify, no permission, a
  // filesystem without file handles) says why long caches are not safe.
  static Result<std::unique_ptr<BucketWatch>> Start(const std::string& bucket, Callbacks cb);
  ~BucketWatch();
  BucketWatch(const BucketWatch&) = delete;
  BucketWatch& operator=(const BucketWatch&) = delete;

  // Events read from the kernel, and those of other processes (tests).
  uint64_t events() const { return events_.load(); }
  uint64_t foreign_events() const { return foreign_.load(); }

 private:
  BucketWatch() = default;
  void Loop();
  void Handle(const char* buf, std::size_t len);
  // The inode number a file handle of the bucket's filesystem names; 0 if
  // it names nothing there any more.
  ino_t InoOf(const char* handle) const;  // a struct file_handle, maybe unaligned

  Callbacks cb_;
  UniqueFd fan_;
  UniqueFd bucket_;  // for open_by_handle_at
  UniqueFd wake_;    // eventfd: Stop
  dev_t dev_ = 0;
  bool ext4_ = false;  // handles are (ino32, generation): read without a syscall
  pid_t self_ = 0;
  std::atomic<uint64_t> events_{0}, foreign_{0};
  std::thread thread_;
};

}  // namespace originfs
