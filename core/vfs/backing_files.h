// Which opens of a file the kernel may serve from the bucket file itself
// (FUSE passthrough: reads, writes and mmap go from the kernel straight to
// the backing file, without a request to the daemon), and the backing files
// registered with the kernel for them.
//
// The kernel's rules (Documentation/filesystems/fuse-passthrough.rst,
// fs/fuse/iomode.c), which an open that breaks them fails with EIO:
//   - while an inode has a passthrough open, every open of it must pass
//     through, to the same backing file;
//   - an inode with page-cached opens cannot be opened in passthrough.
// So an inode is in one of two modes while it is open: passthrough (one
// backing id, counted opens) or page cache (counted opens); a file still
// arriving from its origin is page-cached, and its later opens stay so
// until the last page-cached one is released.
//
// The registered backing file is opened read-write where it can be, so a
// writer that opens while readers pass through can pass through too. Reads
// of programs (any execute bit) are page-cached instead: a writable backing
// file would make exec of the bucket file fail with ETXTBSY. It is
// unregistered when the last passthrough open of its inode is released: the
// kernel then holds no reference to it either (it drops its own before it
// sends that RELEASE).
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <ctime>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/common/counters.h"
#include "core/common/error.h"

namespace originfs {

class BackingFiles {
 public:
  // The kernel's side: register a descriptor as a backing file (its id,
  // > 0, or -errno), and unregister an id. Set by the FUSE adapter.
  struct Kernel {
    std::function<int(int fd)> open;
    std::function<void(int id)> close;
  };

  // A decision for one open: pass through to backing_id, or (0) the page
  // cache, which keep_cache says the kernel may keep from earlier opens
  // (the bucket file's ctime is the one the last page-cached open saw: a
  // change no watch reports, such as another program's write through a
  // shared mmap, drops it at the next open).
  struct Decision {
    int backing_id = 0;
    bool keep_cache = false;
  };

  // Reads of files smaller than this are page-cached (see Open).
  static constexpr off_t kPageCachedBelow = 128 << 10;

  BackingFiles() = default;
  BackingFiles(const BackingFiles&) = delete;
  BackingFiles& operator=(const BackingFiles&) = delete;

  // Turns passthrough on with the kernel's side (after the kernel granted it).
  void Enable(Kernel kernel);
  bool enabled() const { return enabled_.load(std::memory_order_relaxed); }

  // An open of inode ino whose descriptor (from Vfs::Open or Create) is fd.
  // complete: the file is whole (not arriving from its origin); write: opened
  // for writing. EBUSY when ino passes through to another file than fd's
  // (a newer version) and the open would write.
  Result<Decision> Open(uint64_t ino, int fd, bool complete, bool write);
  // The release of an open Open decided. True when it was the last
  // passthrough open of ino and one of them could write: the kernel's
  // page cache of the inode (from earlier page-cached opens) may be stale.
  bool Release(uint64_t ino, const Decision& d);

  std::vector<Counter> Counters() const;

 private:
  struct State {
    int id = 0;     // registered backing file, while passthrough opens exist
    dev_t dev = 0;  // the backing file's identity
    ino_t backing_ino = 0;
    bool backing_writable = false;
    bool wrote = false;        // a passthrough open could write
    uint32_t passthrough = 0;  // opens passing through to id
    uint32_t cached = 0;       // page-cached opens
  };
  // Registers a backing file for fd's file; its id or -errno.
  int Register(int fd, State& s);
  void DisableLocked(int err);

  std::atomic<bool> enabled_{false};
  std::atomic<bool> ever_enabled_{false};  // inodes may still pass through after a refusal
  mutable std::mutex mu_;
  Kernel kernel_;                             // guarded by mu_
  std::unordered_map<uint64_t, State> open_;  // ino -> its opens; guarded by mu_
  // ino -> the bucket file's ctime at its last page-cached open; mu_.
  // Bounded: emptied when full (the next opens then drop their caches once).
  std::unordered_map<uint64_t, timespec> cached_ctime_;
  static constexpr std::size_t kMaxCachedCtimes = 1 << 17;
  // Whether a page-cached open of ino may keep the kernel's pages (mu_ held).
  bool KeepCacheLocked(uint64_t ino, bool known, const struct stat& st);
  std::string refused_;  // why the kernel refused, if it did; mu_
  std::atomic<uint64_t> passthrough_opens_{0};
  std::atomic<uint64_t> cached_opens_{0};
  std::atomic<uint64_t> registered_{0};
};

}  // namespace originfs
