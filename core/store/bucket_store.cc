#include "core/store/bucket_store.h"

#include "core/common/key_hash.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cassert>
#include <cctype>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

namespace originfs {
namespace {

std::vector<std::string_view> SplitKey(std::string_view key) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  while (start <= key.size()) {
    std::size_t slash = key.find('/', start);
    std::size_t end = slash == std::string_view::npos ? key.size() : slash;
    if (end > start) parts.push_back(key.substr(start, end - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return parts;
}

bool BadComponent(std::string_view c) { return c == "." || c == ".." || c.size() > NAME_MAX; }

// mkdir that accepts an existing directory; *made tells whether it made one.
int MkdirAtP(int dir, const char* name, mode_t mode, bool* made) {
  *made = mkdirat(dir, name, mode) == 0;
  if (*made || errno == EEXIST) return 0;
  return -1;
}

}  // namespace

int BucketStore::SyncDir(int path_fd) {
  int fd = openat(path_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -1;
  int rc = fsync(fd);
  int saved = errno;
  close(fd);
  errno = saved;
  return rc;
}

namespace {}  // namespace

bool IsNetworkFilesystem(const std::string& path) {
  struct statfs sf;
  if (statfs(path.c_str(), &sf) != 0) return false;
  switch (static_cast<unsigned long>(sf.f_type)) {
    case 0x6969:      // NFS
    case 0x65735546:  // FUSE (GlusterFS, sshfs, ...)
    case 0x517B:      // SMB
    case 0xFF534D42:  // CIFS
    case 0xFE534D42:  // SMB2
    case 0x00C36400:  // CephFS
    case 0x01161970:  // GFS2
    case 0x7461636f:  // OCFS2
    case 0x5346414F:  // AFS
    case 0x01021997:  // 9p
    case 0x0BD00BD0:  // Lustre
      return true;
    default:
      return false;
  }
}

namespace {

// Open-file-description locks: owned by the descriptor, not the process, so
// two threads of one daemon waiting on keys the other host holds are not
// mistaken for a deadlock (classic POSIX locks give EDEADLK there). A
// filesystem without OFD locks gets classic ones; their false EDEADLK is
// retried, as every thread holds at most one key lock at a time.
bool LockFd(int fd, bool wait) {
  static std::atomic<bool> ofd_supported{true};
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  for (;;) {
    bool ofd = ofd_supported.load(std::memory_order_relaxed);
    int cmd = ofd ? (wait ? F_OFD_SETLKW : F_OFD_SETLK) : (wait ? F_SETLKW : F_SETLK);
    fl.l_pid = 0;
    if (fcntl(fd, cmd, &fl) == 0) return true;
    if (errno == EINTR) continue;
    if (ofd && errno == EINVAL) {
      ofd_supported.store(false);
      continue;
    }
    if (!ofd && wait && errno == EDEADLK) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      continue;
    }
    return false;
  }
}

std::string HostName() {
  char host[256] = {0};
  if (gethostname(host, sizeof host - 1) != 0) return "host";
  std::string h = host;
  for (char& c : h) {
    if (c == '/' || c == '-' || c == '.') c = '_';
  }
  return h.empty() ? "host" : h;
}

}  // namespace

StagingFile::~StagingFile() {
  if (fd_ >= 0) close(fd_);
  if (!name_.empty() && !linked_) unlinkat(dir_fd_, name_.c_str(), 0);
}

// Positional writes: readers share this file's description (and may seek
// it), so its offset must not matter.
Result<void> StagingFile::Append(const char* data, std::size_t len) {
  while (len > 0) {
    ssize_t n = pwrite(fd_, data, len, static_cast<off_t>(size_));
    if (n < 0) {
      if (errno == EINTR) continue;
      return FailErrno("writing staging file");
    }
    data += n;
    len -= static_cast<std::size_t>(n);
    size_ += static_cast<uint64_t>(n);
  }
  return {};
}

Result<void> StagingFile::Reset() {
  if (ftruncate(fd_, 0) != 0) return FailErrno("resetting staging file");
  size_ = 0;
  return {};
}

BucketStore::~BucketStore() {
  for (int fd : spare_staging_) close(fd);
  if (instance_lock_fd_ >= 0) {
    unlinkat(instances_fd_, (instance_id_ + ".lock").c_str(), 0);
    close(instance_lock_fd_);
  }
  for (int fd : {staging_fd_, locks_fd_, instances_fd_, root_fd_}) {
    if (fd >= 0) close(fd);
  }
}

bool BucketStore::Exists(std::string_view key) const {
  if (key.empty()) return false;
  auto fd = OpenKey(key, O_PATH);  // never through a symlinked directory
  if (!fd) return false;
  close(*fd);
  return true;
}

Result<KeyLock> BucketStore::LockKey(std::string_view key, const LockWait& waiting) {
  std::string name = fmt::format("{:016x}", KeyHash64(key));
  // Another host creating or removing the same lock file at the same moment
  // shows through on network filesystems as EEXIST from a plain O_CREAT
  // (GlusterFS), or ESTALE/ENOENT on the descriptor: those are retried.
  auto transient = [](int e) { return e == EEXIST || e == ESTALE || e == ENOENT; };
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  auto retry = [&](int e) {
    if (!transient(e) || std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return true;
  };
  for (;;) {
    int fd = openat(locks_fd_, name.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) {
      if (retry(errno)) continue;
      return FailErrno("opening key lock");
    }
    bool got = LockFd(fd, false);
    while (!got && (errno == EAGAIN || errno == EACCES)) {
      // Held by another host (or thread): hand on what it published, poll.
      char buf[kProgressBytes];
      ssize_t n = pread(fd, buf, sizeof buf, 0);
      if (!waiting(n > 0 ? ParseProgress(std::string_view(buf, static_cast<std::size_t>(n)))
                         : std::nullopt)) {
        close(fd);
        return Fail(ECANCELED, "gave up waiting for the key's lock");
      }
      std::this_thread::sleep_for(kFollowPoll);
      got = LockFd(fd, false);
    }
    if (!got) {
      int saved = errno;
      close(fd);
      if (retry(saved)) continue;
      errno = saved;
      return FailErrno("locking key");
    }
    // The holder before us removes the file when done; make sure ours is current.
    struct stat a, b;
    if (fstat(fd, &a) == 0 && fstatat(locks_fd_, name.c_str(), &b, 0) == 0 &&
        a.st_ino == b.st_ino && a.st_dev == b.st_dev) {
      return KeyLock(locks_fd_, std::move(name), fd);
    }
    close(fd);
  }
}

namespace {

// True if someone (another open file description, in any process) holds a
// lock on fd; the lock is not taken.
bool LockedByOther(int fd) {
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  if (fcntl(fd, F_OFD_GETLK, &fl) != 0) {
    fl = {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    if (fcntl(fd, F_GETLK, &fl) != 0) return true;  // cannot tell: assume live
  }
  return fl.l_type != F_UNLCK;
}

bool SameTime(const timespec& a, const timespec& b) {
  return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

const timespec& Later(const timespec& a, const timespec& b) {
  return a.tv_sec > b.tv_sec || (a.tv_sec == b.tv_sec && a.tv_nsec >= b.tv_nsec) ? a : b;
}

// True where fd's times come from this host's clock: ext4, XFS, Btrfs and
// tmpfs (a single host mounts them). Their grain is fine where a time has
// nanoseconds (not a format keeping whole seconds).
bool OwnClockFs(int fd) {
  struct statfs sf;
  if (fstatfs(fd, &sf) != 0) return false;
  switch (static_cast<unsigned long>(sf.f_type)) {
    case 0xEF53:      // ext2/3/4
    case 0x58465342:  // XFS
    case 0x9123683E:  // Btrfs
    case 0x01021994:  // tmpfs
      return true;
    default:
      return false;
  }
}

}  // namespace

bool BucketStore::OthersLive() const {
  struct stat st;
  if (fstat(instances_fd_, &st) != 0) return true;  // cannot tell: coordinate
  int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::steady_clock::now().time_since_epoch())
                       .count();
  std::lock_guard lock(others_mu_);
  // Nothing appeared or went since the last scan: its answer stands. A
  // directory changed shortly before that scan is scanned again (a second
  // change within the timestamps' grain would not move them): within 2 s,
  // or 50 ms where the grain is fine and the clock this host's — a local
  // filesystem with sub-second times (OwnClockFs; a network or cluster
  // filesystem's times may come from another host's clock). While others
  // are live, every 5 s too (a killed instance leaves its file).
  bool unchanged = others_known_ && SameTime(st.st_mtim, others_dir_mtime_) &&
                   SameTime(st.st_ctim, others_dir_ctime_);
  if (unchanged && others_settled_ && (!others_live_ || now_ms - others_scanned_ms_ < 5000))
    return others_live_;
  timespec wall;
  clock_gettime(CLOCK_REALTIME, &wall);
  const timespec& changed = Later(st.st_ctim, st.st_mtim);
  const bool fine_grain = own_clock_fs_ && (st.st_mtim.tv_nsec != 0 || st.st_ctim.tv_nsec != 0);
  const int64_t age_ms =
      (wall.tv_sec - changed.tv_sec) * 1000 + (wall.tv_nsec - changed.tv_nsec) / 1000000;
  others_settled_ = age_ms >= (fine_grain ? 50 : 2000);
  others_dir_mtime_ = st.st_mtim;
  others_dir_ctime_ = st.st_ctim;
  others_scanned_ms_ = now_ms;
  bool live = false;
  if (int ifd = openat(instances_fd_, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC); ifd >= 0) {
    if (DIR* d = fdopendir(ifd)) {
      while (dirent* e = readdir(d)) {
        std::string_view n = e->d_name;
        if (!n.ends_with(".lock") || n.substr(0, n.size() - 5) == instance_id_) continue;
        int fd = openat(instances_fd_, e->d_name, O_RDWR | O_CLOEXEC);
        if (fd < 0) continue;  // gone meanwhile
        live = LockedByOther(fd);
        close(fd);
        if (live) break;
      }
      closedir(d);
    } else {
      close(ifd);
      live = true;
    }
  } else {
    live = true;
  }
  if (live != others_live_)
    spdlog::info(live ? "another instance serves this bucket: fetches are coordinated through "
                        "lock files"
                      : "no other instance serves this bucket: fetches are not coordinated");
  others_known_ = true;
  others_live_ = live;
  return live;
}

Result<std::unique_ptr<BucketStore>> BucketStore::Open(const std::string& path,
                                                       const StoreOptions& options) {
  std::unique_ptr<BucketStore> s(new BucketStore());
  s->options_ = options;
  char real[PATH_MAX];
  if (!realpath(path.c_str(), real)) return FailErrno(fmt::format("bucket {}", path));
  s->path_ = real;
  s->root_fd_ = open(real, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (s->root_fd_ < 0) return FailErrno(fmt::format("bucket {}", path));
  struct stat st;
  if (fstat(s->root_fd_, &st) != 0) return FailErrno(fmt::format("bucket {}", path));
  s->owner_uid_ = st.st_uid;
  s->owner_gid_ = st.st_gid;
  // Made (or found) and opened. Two hosts starting at once on a network
  // filesystem may see EEXIST from mkdir before the other's directory shows
  // (GlusterFS: then ENOENT or ESTALE from the open): tried again, bounded.
  auto dir = [&](const std::string& d) -> Result<int> {
    for (int attempt = 0;; ++attempt) {
      if (mkdirat(s->root_fd_, d.c_str(), 0700) != 0 && errno != EEXIST)
        return FailErrno(fmt::format("creating {}/{}", s->path_, d));
      int fd = openat(s->root_fd_, d.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (fd >= 0) return fd;
      if ((errno != ENOENT && errno != ESTALE) || attempt >= 100)
        return FailErrno(fmt::format("opening {}/{}", s->path_, d));
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  };
  std::string state(kStateDirName);
  ORIGINFS_ASSIGN_OR_RETURN(int state_fd, dir(state));
  // Made once, never written: its mtime is the bucket's epoch.
  if (int e =
          openat(state_fd, std::string(kEpochFile).c_str(), O_CREAT | O_RDONLY | O_CLOEXEC, 0644);
      e >= 0) {
    struct stat est;
    if (fstat(e, &est) == 0) s->epoch_ = est.st_mtime;
    close(e);
  }
  close(state_fd);
  ORIGINFS_ASSIGN_OR_RETURN(s->staging_fd_, dir(state + "/" + std::string(kStagingDir)));
  ORIGINFS_ASSIGN_OR_RETURN(s->locks_fd_, dir(state + "/" + std::string(kLocksDir)));
  ORIGINFS_ASSIGN_OR_RETURN(s->instances_fd_, dir(state + "/" + std::string(kInstancesDir)));
  s->own_clock_fs_ = OwnClockFs(s->instances_fd_);
  // Our instance lock tells other hosts sharing the bucket that our staging files are live.
  s->instance_id_ = fmt::format("{}-{}-{:08x}", HostName(), getpid(), std::random_device{}());
  // Locked under a name no sweep looks at, then renamed into place: another
  // instance's sweep never finds our lock file unlocked and takes us for dead.
  const std::string lock_name = s->instance_id_ + ".lock", unlocked = lock_name + ".new";
  s->instance_lock_fd_ =
      openat(s->instances_fd_, unlocked.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
  if (s->instance_lock_fd_ < 0 || !LockFd(s->instance_lock_fd_, false) ||
      renameat(s->instances_fd_, unlocked.c_str(), s->instances_fd_, lock_name.c_str()) != 0)
    return FailErrno("instance lock");
  s->CleanStaging();
  return s;
}

void BucketStore::CleanStaging() { (void)SweepStaging(false); }

std::size_t BucketStore::CleanDeadStaging() { return SweepStaging(true); }

std::size_t BucketStore::SweepStaging(bool running) {
  // Instances whose lock nobody holds are gone: their staging files are debris.
  std::vector<std::string> dead;
  if (int ifd = dup(instances_fd_); ifd >= 0) {
    if (DIR* d = fdopendir(ifd)) {
      rewinddir(d);
      while (dirent* e = readdir(d)) {
        std::string_view n = e->d_name;
        if (n.ends_with(".lock.new")) {
          // An instance that died between making its lock file and
          // renaming it into place; a live one renames within moments.
          struct stat st;
          if (fstatat(instances_fd_, e->d_name, &st, 0) == 0 &&
              st.st_mtime < std::time(nullptr) - 60) {
            int fd = openat(instances_fd_, e->d_name, O_RDWR | O_CLOEXEC);
            if (fd >= 0 && LockFd(fd, false)) unlinkat(instances_fd_, e->d_name, 0);
            if (fd >= 0) close(fd);
          }
          continue;
        }
        if (!n.ends_with(".lock")) continue;
        std::string id(n.substr(0, n.size() - 5));
        if (id == instance_id_) continue;
        int fd = openat(instances_fd_, e->d_name, O_RDWR | O_CLOEXEC);
        if (fd < 0) continue;
        if (LockFd(fd, false)) {
          dead.push_back(id);
          unlinkat(instances_fd_, e->d_name, 0);
        }
        close(fd);
      }
      closedir(d);
    } else {
      close(ifd);
    }
  }
  int dfd = dup(staging_fd_);
  if (dfd < 0) return 0;
  DIR* d = fdopendir(dfd);
  if (!d) {
    close(dfd);
    return 0;
  }
  rewinddir(d);
  std::vector<std::string> names;
  while (dirent* e = readdir(d)) {
    std::string_view n = e->d_name;
    if (n == "." || n == "..") continue;
    // Named staging files are "<instance>.<n>.part"; keep those of live instances.
    std::string_view owner = n.substr(0, n.find('.'));
    bool live_other =
        owner != instance_id_ && std::find(dead.begin(), dead.end(), owner) == dead.end() &&
        n.find('.') != std::string_view::npos &&
        faccessat(instances_fd_, (std::string(owner) + ".lock").c_str(), F_OK, 0) == 0;
    // Running, only what a dead instance left: never ours, a live one's, or
    // a file that is not a named staging file (nothing of ours to judge).
    bool named = n.find('.') != std::string_view::npos && n.ends_with(".part");
    bool debris = running ? named && owner != instance_id_ && !live_other : !live_other;
    if (debris) names.emplace_back(n);
  }
  closedir(d);
  std::size_t removed = 0;
  for (const auto& n : names) {
    // A directory: one a removal moved aside (whiteout.cc) and did not finish.
    if (unlinkat(staging_fd_, n.c_str(), 0) == 0 ||
        (errno == EISDIR && unlinkat(staging_fd_, n.c_str(), AT_REMOVEDIR) == 0)) {
      ++removed;
      if (running) spdlog::info("removed {} left in staging by an instance that is gone", n);
    }
  }
  return removed;
}

void BucketStore::PrepareStaging(std::size_t count) {
  for (;;) {
    {
      std::lock_guard lock(spare_mu_);
      if (spare_staging_.size() >= count || !tmpfile_ok_) return;
    }
    int fd = openat(staging_fd_, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) return;  // CreateStaging reports (and handles) the error when it matters
    std::lock_guard lock(spare_mu_);
    spare_staging_.push_back(fd);
  }
}

std::string BucketStore::NewStagingName() {
  static std::atomic<uint64_t> counter{0};
  return fmt::format("{}.{}.part", instance_id_, counter.fetch_add(1));
}

Result<std::unique_ptr<StagingFile>> BucketStore::CreateStaging() {
  {
    std::lock_guard lock(spare_mu_);
    if (!spare_staging_.empty()) {
      int fd = spare_staging_.back();
      spare_staging_.pop_back();
      return std::unique_ptr<StagingFile>(new StagingFile(fd, staging_fd_, ""));
    }
  }
  if (tmpfile_ok_) {
    int fd = openat(staging_fd_, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0) return std::unique_ptr<StagingFile>(new StagingFile(fd, staging_fd_, ""));
    if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
      return FailErrno("creating staging file");
    tmpfile_ok_ = false;  // filesystem without O_TMPFILE: fall back to named files
  }
  std::string name = NewStagingName();
  int fd = openat(staging_fd_, name.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) return FailErrno("creating staging file");
  return std::unique_ptr<StagingFile>(new StagingFile(fd, staging_fd_, std::move(name)));
}

namespace {

// openat2(2) (Linux 5.6) resolves a whole key below the root in one call,
// refusing symlinks and escapes the way the component walk does. -1 with
// errno ENOSYS where the kernel (or a seccomp filter) does not have it.
int OpenBeneath(int root, const std::string& path, int flags) {
#ifdef SYS_openat2
  static std::atomic<bool> unsupported{false};
  if (!unsupported.load(std::memory_order_relaxed)) {
    open_how how{};
    how.flags = static_cast<uint64_t>(flags);
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    int fd = static_cast<int>(syscall(SYS_openat2, root, path.c_str(), &how, sizeof how));
    // ENOSYS: an older kernel; EPERM: a seccomp profile that predates it.
    if (fd >= 0 || (errno != ENOSYS && errno != EPERM)) return fd;
    unsupported.store(true, std::memory_order_relaxed);
  }
#endif
  errno = ENOSYS;
  return -1;
}

}  // namespace

Result<int> BucketStore::OpenKey(std::string_view key, int flags) const {
  auto parts = SplitKey(key);
  if (parts.empty()) {
    int fd = openat(root_fd_, ".", flags | O_CLOEXEC);
    if (fd < 0) return FailErrno("opening bucket root");
    return fd;
  }
  for (std::string_view p : parts) {
    if (BadComponent(p)) return Fail(EINVAL, fmt::format("invalid key component in \"{}\"", key));
  }
  // One call for the whole key. A found file and a plain miss are final; any
  // other outcome (a symlink on the way, a race with a rename, no openat2)
  // goes through the walk below, which gives the precise error.
  if (parts.size() > 1) {
    std::string path;
    for (std::string_view p : parts) {
      if (!path.empty()) path += '/';
      path += p;
    }
    int fd = OpenBeneath(root_fd_, path, flags | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) return fd;
    if (errno == ENOENT) return FailErrno(fmt::format("opening {}", key));
  }
  int dir = root_fd_;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    std::string comp(parts[i]);
    bool last = i + 1 == parts.size();
    int f =
        last ? (flags | O_NOFOLLOW | O_CLOEXEC) : (O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int fd = openat(dir, comp.c_str(), f);
    int saved = errno;
    if (dir != root_fd_) close(dir);
    if (fd < 0) {
      errno = saved;
      return FailErrno(fmt::format("opening {}", key));
    }
    dir = fd;
  }
  return dir;
}

Result<int> BucketStore::MakeDirs(std::string_view dir_key, bool durable) const {
  // Usually the directory is there already: one walk, no mkdir.
  if (auto existing = OpenKey(dir_key, O_PATH | O_DIRECTORY); existing) return existing;
  auto parts = SplitKey(dir_key);
  // Refuse before creating anything: a bad key must leave no directories behind.
  for (std::string_view p : parts) {
    if (BadComponent(p))
      return Fail(EINVAL, fmt::format("invalid key component in \"{}\"", dir_key));
  }
  int dir = fcntl(root_fd_, F_DUPFD_CLOEXEC, 0);
  if (dir < 0) return FailErrno("dup");
  for (std::string_view p : parts) {
    std::string comp(p);
    bool made = false;
    struct stat before;
    bool known = BeginLanding(dir, before);  // its new entry is part of a landing
    static const uid_t euid = geteuid();
    ++making_dirs_;
    struct MadeDone {
      std::atomic<int>& n;
      ~MadeDone() { --n; }
    } made_done{making_dirs_};
    // A directory a landing makes belongs to the bucket's owner, as the
    // landed files do (a service user owning the bucket can write in it).
    bool failed = MkdirAtP(dir, comp.c_str(), options_.dir_mode, &made) != 0;
    if (made) NoteMade(dir, comp.c_str(), true);
    failed =
        failed || (made && euid == 0 && (owner_uid_ != euid || owner_gid_ != getegid()) &&
                   fchownat(dir, comp.c_str(), owner_uid_, owner_gid_, AT_SYMLINK_NOFOLLOW) != 0);
    int saved_errno = errno;
    if (made) NoteMade(dir, comp.c_str(), false);
    errno = saved_errno;
    if (failed || (made && durable && SyncDir(dir) != 0)) {
      int saved = errno;
      if (known) EndLanding(before, dir);
      close(dir);
      errno = saved;
      return FailErrno(fmt::format("creating directory {}", dir_key));
    }
    if (known) EndLanding(before, dir);
    int next = openat(dir, comp.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int saved = errno;
    close(dir);
    if (next < 0) {
      errno = saved;
      return FailErrno(fmt::format("opening directory {}", dir_key));
    }
    dir = next;
  }
  return dir;
}

Result<void> BucketStore::CommitCopy(int src_fd, std::string_view key,
                                     std::optional<int64_t> mtime) {
  auto staging = CreateStaging();
  if (!staging) return std::unexpected(staging.error());
  char buf[1 << 16];
  off_t off = 0;
  for (;;) {
    ssize_t n = pread(src_fd, buf, sizeof buf, off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return FailErrno("reading cached copy");
    if (n == 0) break;
    if (auto a = (*staging)->Append(buf, static_cast<std::size_t>(n)); !a) return a;
    off += n;
  }
  return Commit(**staging, key, mtime);
}

}  // namespace originfs
