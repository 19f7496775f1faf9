#include "core/vfs/backing_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

#include "core/common/unique_fd.h"
#include "core/vfs/inode.h"

namespace originfs {

void BackingFiles::Enable(Kernel kernel) {
  std::lock_guard lock(mu_);
  kernel_ = std::move(kernel);
  refused_.clear();
  enabled_.store(true);
  ever_enabled_.store(true);
}

void BackingFiles::DisableLocked(int err) {
  enabled_.store(false);
  refused_ = std::strerror(err);
  // One line: every later open takes the page-cache path without asking.
  spdlog::warn("FUSE passthrough refused by the kernel ({}); files are served through the daemon",
               refused_);
}

int BackingFiles::Register(int fd, State& s) {
  // Read-write where possible, so a writer can share the backing file.
  UniqueFd rw(open(vfs_internal::ProcPath(fd).c_str(), O_RDWR | O_CLOEXEC));
  int use = rw ? rw.get() : fd;
  struct stat st;
  if (fstat(use, &st) != 0) return -errno;
  int id = kernel_.open(use);  // the kernel keeps its own reference to the file
  if (id <= 0) return id < 0 ? id : -EIO;
  s.id = id;
  s.dev = st.st_dev;
  s.backing_ino = st.st_ino;
  s.backing_writable = rw || (fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDWR;
  registered_.fetch_add(1, std::memory_order_relaxed);
  return id;
}

Result<BackingFiles::Decision> BackingFiles::Open(uint64_t ino, int fd, bool complete, bool write) {
  // Without passthrough the attributes alone decide what the kernel keeps.
  if (!ever_enabled_.load(std::memory_order_relaxed)) return Decision{0, true};
  std::lock_guard lock(mu_);
  auto found = open_.find(ino);
  if (!enabled() && (found == open_.end() || !found->second.id)) return Decision{0, true};
  State& s = found != open_.end() ? found->second : open_[ino];
  if (s.id) {
    // Passthrough in force: this open must use the same backing file.
    struct stat st;
    bool same = fstat(fd, &st) == 0 && st.st_dev == s.dev && st.st_ino == s.backing_ino;
    if (write && (!same || !s.backing_writable))
      return Fail(EBUSY, same ? "open for writing: the file is open for reading through a "
                                "read-only backing file"
                              : "open for writing: older opens of this file read another "
                                "version of it");
    // A reader of a version the backing file no longer is (the bucket file
    // was replaced under the same inode) reads what the other opens read.
    ++s.passthrough;
    s.wrote |= write;
    passthrough_opens_.fetch_add(1, std::memory_order_relaxed);
    return Decision{s.id};
  }
  // A program (any execute bit) read through the mount is page-cached: the
  // read-write backing file would make exec of the bucket file fail with
  // ETXTBSY, and a read-only one would refuse a later writer
  // (PassthroughTest.BucketProgramsRun..., the fuzzer's copy_range y y).
  struct stat st;
  bool known = fstat(fd, &st) == 0;
  bool program = !write && known && (st.st_mode & 0111) != 0;
  // A small file read whole is served from the kernel's page cache: a
  // passthrough open costs the kernel a backing file per open and leaves
  // the inode's atime to be asked for (a GETATTR at the next stat), while
  // page-cached opens of a hot file cost nothing past the OPEN.
  bool small = !write && known && st.st_size < kPageCachedBelow;
  if (s.cached > 0 || !complete || program || small) {
    ++s.cached;
    cached_opens_.fetch_add(1, std::memory_order_relaxed);
    return Decision{0, complete && KeepCacheLocked(ino, known, st)};
  }
  int id = Register(fd, s);
  if (id < 0) {
    int err = -id;
    if (err == EPERM || err == ELOOP || err == EINVAL || err == ENOTTY || err == EOPNOTSUPP ||
        err == ENOSYS) {
      DisableLocked(err);
    } else {
      spdlog::debug("passthrough of inode {}: {}; served through the daemon", ino,
                    std::strerror(err));
    }
    ++s.cached;
    cached_opens_.fetch_add(1, std::memory_order_relaxed);
    return Decision{0, KeepCacheLocked(ino, known, st)};
  }
  s.passthrough = 1;
  s.wrote = write;
  passthrough_opens_.fetch_add(1, std::memory_order_relaxed);
  return Decision{id};
}

bool BackingFiles::KeepCacheLocked(uint64_t ino, bool known, const struct stat& st) {
  if (!known) return false;
  if (cached_ctime_.size() >= kMaxCachedCtimes) cached_ctime_.clear();
  auto [it, fresh] = cached_ctime_.try_emplace(ino, st.st_ctim);
  if (fresh) return false;
  bool same = it->second.tv_sec == st.st_ctim.tv_sec && it->second.tv_nsec == st.st_ctim.tv_nsec;
  it->second = st.st_ctim;
  return same;
}

bool BackingFiles::Release(uint64_t ino, const Decision& d) {
  if (!ever_enabled_.load(std::memory_order_relaxed)) return false;
  std::lock_guard lock(mu_);
  auto it = open_.find(ino);
  if (it == open_.end()) return false;  // passthrough was never on for it
  State& s = it->second;
  bool stale_cache = false;
  if (d.backing_id) {
    if (s.passthrough == 0 || s.id != d.backing_id) return false;  // not ours: ignore
    if (--s.passthrough == 0) {
      kernel_.close(s.id);
      registered_.fetch_sub(1, std::memory_order_relaxed);
      stale_cache = s.wrote;
      s.id = 0;
      s.wrote = false;
    }
  } else if (s.cached > 0) {
    --s.cached;
  }
  if (s.id == 0 && s.cached == 0) open_.erase(it);
  return stale_cache;
}

std::vector<Counter> BackingFiles::Counters() const {
  return {
      {"passthrough_opens", "Opens the kernel serves from the bucket file itself (passthrough).",
       passthrough_opens_.load(), false},
      {"page_cache_opens",
       "Opens served through the daemon while passthrough is on (files still arriving).",
       cached_opens_.load(), false},
      {"backing_files", "Bucket files registered with the kernel for passthrough now.",
       registered_.load(), true},
      {"passthrough_enabled", "1 while the kernel serves complete files by passthrough.",
       enabled() ? 1u : 0u, true},
  };
}

}  // namespace originfs
