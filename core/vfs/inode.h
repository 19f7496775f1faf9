// The inode table's entries and the helpers the vfs's files share. Internal
// to core/vfs/ (see the glossary in core/vfs/vfs.h).
#pragma once

#include <sched.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

#include "core/vfs/vfs.h"

namespace originfs {

enum class InodeKind { kLocal, kOriginFile, kOriginDir };

struct Vfs::Inode : std::enable_shared_from_this<Vfs::Inode> {
  explicit Inode(uint64_t n) : ino(n) {}
  const uint64_t ino;
  uint64_t nlookup = 0;  // guarded by Vfs::table_mu_

  std::mutex mu;  // guards everything below
  InodeKind kind = InodeKind::kLocal;
  // Local inodes: an O_PATH descriptor, open while the inode is in the
  // descriptor cache (see Vfs::PathFdLocked), reopened from its file handle
  // after that closed it. Without a handle the descriptor stays open (pinned).
  std::shared_ptr<UniqueFd> fd;
  std::string handle;   // struct file_handle, as name_to_handle_at filled it
  bool cached = false;  // in Vfs::lru_; guarded by Vfs::lru_mu_
  std::list<std::weak_ptr<Inode>>::iterator lru_pos;  // guarded by Vfs::lru_mu_
  dev_t dev = 0;
  ino_t backing_ino = 0;
  std::string key;                 // origin-only inodes
  std::shared_ptr<Flight> flight;  // kRemote: the download that answered the lookup
  Resolution res;                  // kRemote: size and mtime from the origin
  // Descriptors for I/O without an open (zero-message open): opened on first
  // use, closed with the inode or by the descriptor cache (local inodes).
  FileRef read;  // read.streaming: set while read.fd follows a download
  std::shared_ptr<UniqueFd> write_fd;
  int64_t landed_ns = 0;  // wall-clock time its download landed (this mount), 0: never
  // kRemote: the staging file its download writes. dev/backing_ino name it in
  // by_backing_, so a lookup that finds the committed file (same inode, linked
  // into the bucket) returns this inode; holding it open keeps the number
  // from being reused until the mapping is gone.
  std::shared_ptr<UniqueFd> landing_file;
  const Flight* landing_flight = nullptr;  // whose staging file landing_file is (identity only)
  // What the kernel was first shown: kRemote or kVirtualDir for an inode
  // that began at the origin (kLocal otherwise), even once it has landed.
  // Set at creation under Vfs::table_mu_ and never changed.
  InodeKind born = InodeKind::kLocal;
};

namespace vfs_internal {

inline std::string ProcPath(int fd) { return fmt::format("/proc/self/fd/{}", fd); }

// Within this long of landing, a bucket file that a lookup does not see is
// taken to be hidden by a client cache, not removed.
inline bool LandedMomentsAgo(int64_t landed_ns) {
  timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  int64_t now_ns = static_cast<int64_t>(now.tv_sec) * 1'000'000'000 + now.tv_nsec;
  return landed_ns > 0 && now_ns - landed_ns < 5'000'000'000;
}

inline int64_t Now() { return static_cast<int64_t>(std::time(nullptr)); }

inline constexpr ino_t kSyntheticInoBit = ino_t(1) << 62;
inline constexpr ino_t kListedInoBit = ino_t(1)
                                       << 61;  // with kSyntheticInoBit: listed, not looked up

inline bool DotOrDotDot(std::string_view n) { return n == "." || n == ".."; }

// New names get exactly the mode the kernel sent, which already has the
// caller's umask applied (the kernel does that unless FUSE_DONT_MASK): the
// creating thread's own umask must not mask it a second time. A thread of
// its own filesystem context (unshare(CLONE_FS)) has a umask of its own, so
// the rest of the daemon (log files, the state directory) keeps the
// process's umask.
inline void UseCallersUmask() {
  thread_local bool done = false;
  if (done) return;
  done = true;
  if (unshare(CLONE_FS) != 0) {
    spdlog::warn("unshare(CLONE_FS): {}; new files get the daemon's umask too",
                 std::strerror(errno));
    return;
  }
  umask(0);
}

// Creates files as the calling user (per-thread fsuid/fsgid), with the mode asked.
class FsIdGuard {
 public:
  explicit FsIdGuard(const Caller& c) {
    UseCallersUmask();
    if (geteuid() != 0) return;
    active_ = true;
    old_gid_ = setfsgid(c.gid);
    old_uid_ = setfsuid(c.uid);
  }
  ~FsIdGuard() {
    if (!active_) return;
    setfsuid(old_uid_);
    setfsgid(old_gid_);
  }
  FsIdGuard(const FsIdGuard&) = delete;
  FsIdGuard& operator=(const FsIdGuard&) = delete;

 private:
  bool active_ = false;
  int old_uid_ = 0, old_gid_ = 0;
};

inline Result<void> Check(int rc, std::string_view what) {
  if (rc != 0) return FailErrno(std::string(what));
  return {};
}

}  // namespace vfs_internal
}  // namespace originfs
