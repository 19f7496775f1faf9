// The inode table's entries and the helpers the vfs's files share. Internal
// to core/vfs/ (see the glossary in core/vfs/vfs.h).
#pragma once

#include <fcntl.h>
#include <sched.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

#include "core/common/small_mutex.h"
#include "core/vfs/vfs.h"

namespace originfs {

enum class InodeKind : uint8_t { kLocal, kOriginFile, kOriginDir };

// A file handle's bytes (struct file_handle's f_handle) in 17 bytes of
// alignment 1: up to 16 inline (ext4 and xfs need 8 to 16), longer ones
// (btrfs: 20) on the heap, the pointer kept in the inline bytes.
class HandleBytes {
 public:
  HandleBytes() = default;
  HandleBytes(const HandleBytes&) = delete;
  HandleBytes& operator=(const HandleBytes&) = delete;
  ~HandleBytes() { clear(); }
  bool empty() const { return len_ == 0; }
  std::size_t size() const { return len_; }
  const char* data() const { return len_ > kInline ? Heap() : buf_; }
  void assign(const char* p, std::size_t n) {
    clear();
    if (n > MAX_HANDLE_SZ) return;
    if (n > kInline) {
      char* h = new char[n];
      std::memcpy(h, p, n);
      std::memcpy(buf_, &h, sizeof h);
    } else {
      std::memcpy(buf_, p, n);
    }
    len_ = static_cast<uint8_t>(n);
  }
  void clear() {
    if (len_ > kInline) delete[] Heap();
    len_ = 0;
  }

 private:
  static constexpr std::size_t kInline = 16;
  char* Heap() const {
    char* h;
    std::memcpy(&h, buf_, sizeof h);
    return h;
  }
  char buf_[kInline];
  uint8_t len_ = 0;
};
static_assert(MAX_HANDLE_SZ <= 255 && alignof(HandleBytes) == 1);

// Kept by the million (one per inode the kernel remembers), so it is small:
// what only origin-born inodes need, and the descriptors for I/O without an
// open, live in parts allocated when first needed (see Vfs::MemoryStats).
struct Vfs::Inode {
  explicit Inode(uint64_t n) : ino(n) {}
  const uint64_t ino;
  uint64_t nlookup = 0;  // guarded by Vfs::table_mu_

  SmallMutex mu;            // guards everything below
  int32_t handle_type = 0;  // of the file handle (see handle)
  InodeKind kind = InodeKind::kLocal;
  // What the kernel was first shown: kOriginFile or kOriginDir for an inode
  // that began at the origin (kLocal otherwise), even once it has landed.
  // Set at creation under Vfs::table_mu_ and never changed.
  InodeKind born = InodeKind::kLocal;
  bool cached = false;  // in Vfs::lru_; guarded by Vfs::lru_mu_
  // A refresh put a new file under this inode's name: an open of it, while
  // no other name links the old file, is ESTALE, which makes the kernel look
  // the name up again (and find the new file) without waiting for the
  // entry's invalidation, sent asynchronously.
  bool replaced = false;
  // Open handles of this inode (OPEN..RELEASE): a replaced file that is still
  // open answers stat with its own attributes (fstat cannot be retried).
  // (16 bits: it fits the padding; saturates, and a file open 65,535 times
  // over is simply taken as open.)
  std::atomic<uint16_t> open_handles{0};
  // Of those, opened for writing: a refresh does not replace the file under
  // a writer (its writes would go to the old copy). (8 bits, saturating.)
  std::atomic<uint8_t> open_writers{0};
  // Local inodes: an O_PATH descriptor, open while the inode is in the
  // descriptor cache (see Vfs::PathFdLocked), reopened from its file handle
  // after that closed it. Without a handle the descriptor stays open (pinned).
  // The handle is struct file_handle's type and bytes, as name_to_handle_at
  // filled them (8 bytes on ext4: no heap allocation).
  HandleBytes handle;  // empty: none
  std::shared_ptr<UniqueFd> fd;
  std::list<InodeRef>::iterator lru_pos;  // guarded by Vfs::lru_mu_
  dev_t dev = 0;
  ino_t backing_ino = 0;

  // Descriptors for I/O without an open (zero-message open): opened on first
  // use, closed with the inode or by the descriptor cache (local inodes).
  struct Io {
    Io() { live.fetch_add(1, std::memory_order_relaxed); }
    ~Io() { live.fetch_sub(1, std::memory_order_relaxed); }
    FileRef read;  // read.streaming: set while read.fd follows a download
    std::shared_ptr<UniqueFd> write_fd;
    static inline std::atomic<int64_t> live{0};  // how many exist (memory report)
  };
  std::unique_ptr<Io> io;
  Io& IoPart() {
    if (!io) io = std::make_unique<Io>();
    return *io;
  }

  // What an origin-born inode knows of the origin and its download.
  struct Origin {
    Origin() { live.fetch_add(1, std::memory_order_relaxed); }
    ~Origin() { live.fetch_sub(1, std::memory_order_relaxed); }
    static inline std::atomic<int64_t> live{0};  // how many exist (memory report)
    std::string key;
    std::shared_ptr<Flight> flight;  // kOriginFile: the download that answered the lookup
    Resolution res;                  // kOriginFile: size and mtime from the origin
    int64_t landed_ns = 0;           // wall-clock time its download landed (this mount), 0: never
    // kOriginFile: the staging file its download writes. dev/backing_ino name
    // it in by_backing_, so a lookup that finds the committed file (same
    // inode, linked into the bucket) returns this inode; holding it open
    // keeps the number from being reused until the mapping is gone.
    std::shared_ptr<UniqueFd> landing_file;
    const Flight* landing_flight = nullptr;  // whose staging file landing_file is (identity only)
  };
  std::unique_ptr<Origin> origin;
  // Made when first needed; read through a const inode, a missing part reads
  // as empty without being made.
  Origin& OriginPart() {
    if (!origin) origin = std::make_unique<Origin>();
    return *origin;
  }
  const Origin& OriginPart() const {
    static const Origin kNone;
    return origin ? *origin : kNone;
  }
  // The origin key, "" for an inode that never had one.
  const std::string& key() const {
    static const std::string kNone;
    return origin ? origin->key : kNone;
  }
};

inline uint64_t Vfs::InodeNo::operator()(const InodeRef& i) const {
  // The budget: with make_shared's control block and malloc's header, one
  // 128-byte chunk per inode (see Vfs::InodeTableMemory).
  static_assert(sizeof(Inode) <= 104, "an inode must fit a 128-byte malloc chunk");
  return i->ino;
}

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
    if (c.groups) {
      // This thread's credentials only: the raw system call (glibc's
      // setgroups changes every thread of the process).
      int n = getgroups(0, nullptr);
      if (n >= 0) {
        old_groups_.resize(static_cast<std::size_t>(n));
        if (getgroups(n, old_groups_.data()) == n &&
            syscall(SYS_setgroups, c.groups->size(), c.groups->data()) == 0)
          groups_set_ = true;
      }
    }
    old_gid_ = setfsgid(c.gid);
    old_uid_ = setfsuid(c.uid);
  }
  ~FsIdGuard() {
    if (!active_) return;
    setfsuid(old_uid_);
    setfsgid(old_gid_);
    if (groups_set_) (void)syscall(SYS_setgroups, old_groups_.size(), old_groups_.data());
  }
  FsIdGuard(const FsIdGuard&) = delete;
  FsIdGuard& operator=(const FsIdGuard&) = delete;

 private:
  bool active_ = false;
  bool groups_set_ = false;
  std::vector<gid_t> old_groups_;
  int old_uid_ = 0, old_gid_ = 0;
};

inline Result<void> Check(int rc, std::string_view what) {
  if (rc != 0) return FailErrno(std::string(what));
  return {};
}

}  // namespace vfs_internal
}  // namespace originfs
