// The descriptor cache: local inodes keep a file handle, and at most
// fd_cache_size_ of them an open descriptor.
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <unordered_set>
#include <utility>

#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

#include "core/common/key_hash.h"
#include "core/vfs/control_protocol.h"
#include "core/vfs/inode.h"
#include "core/vfs/vfs.h"

namespace originfs {

using namespace vfs_internal;

bool Vfs::HandlesWork() {
  if (!mount_fd_) return false;
  Inode probe(0);
  if (!TakeHandle(probe, store_.root_fd())) return false;
  UniqueFd fd(OpenHandle(probe));
  return static_cast<bool>(fd);
}

bool Vfs::TakeHandle(Inode& inode, int fd) const {
  alignas(file_handle) char buf[sizeof(file_handle) + MAX_HANDLE_SZ];
  auto* fh = reinterpret_cast<file_handle*>(buf);
  fh->handle_bytes = MAX_HANDLE_SZ;
  int mount_id = 0;
  if (name_to_handle_at(fd, "", fh, &mount_id, AT_EMPTY_PATH) != 0 || fh->handle_bytes == 0) {
    inode.handle.clear();
    return false;
  }
  inode.handle_type = fh->handle_type;
  inode.handle.assign(reinterpret_cast<const char*>(fh->f_handle), fh->handle_bytes);
  return true;
}

bool Vfs::SameFileLocked(Inode& inode, int fd) const {
  // Does not wait for the inode's lock (table_mu_ is held): when it is
  // taken the answer is "same", as before this check (a recycled number is
  // then missed until the next lookup).
  std::unique_lock lock(inode.mu, std::try_to_lock);
  if (!lock.owns_lock()) return true;
  // A descriptor held keeps the file, so its number cannot have been reused.
  if (inode.fd || inode.handle.empty()) return true;
  Inode probe(0);
  if (!TakeHandle(probe, fd)) return true;  // cannot tell: as before
  return probe.handle_type == inode.handle_type && probe.handle.size() == inode.handle.size() &&
         std::memcmp(probe.handle.data(), inode.handle.data(), probe.handle.size()) == 0;
}

int Vfs::OpenHandle(const Inode& inode) const {
  alignas(file_handle) char buf[sizeof(file_handle) + MAX_HANDLE_SZ];
  auto* fh = reinterpret_cast<file_handle*>(buf);
  fh->handle_bytes =
      static_cast<unsigned>(std::min<std::size_t>(inode.handle.size(), MAX_HANDLE_SZ));
  fh->handle_type = inode.handle_type;
  std::memcpy(fh->f_handle, inode.handle.data(), fh->handle_bytes);
  return open_by_handle_at(mount_fd_.get(), fh, O_PATH | O_CLOEXEC);
}

Result<std::shared_ptr<UniqueFd>> Vfs::PathFdLocked(const InodeRef& inode) {
  if (!inode->fd) {
    if (inode->handle.empty()) return Fail(ESTALE, "no descriptor for this inode");
    int fd = OpenHandle(*inode);
    if (fd < 0) return FailErrno("reopen by handle");  // ESTALE: gone from the bucket
    inode->fd = std::make_shared<UniqueFd>(fd);
  }
  if (!inode->handle.empty()) Cached(inode);
  return inode->fd;
}

void Vfs::Cached(const InodeRef& inode) {
  std::lock_guard lock(lru_mu_);
  if (inode->cached) {
    lru_.splice(lru_.begin(), lru_, inode->lru_pos);
    return;
  }
  lru_.push_front(inode);
  inode->lru_pos = lru_.begin();
  inode->cached = true;
  evict_wanted_ = lru_.size() > fd_cache_size_;
}

void Vfs::Uncache(Inode& inode) {
  std::lock_guard lock(lru_mu_);
  if (!inode.cached) return;
  lru_.erase(inode.lru_pos);
  inode.cached = false;
}

void Vfs::EvictDescriptors() {
  // Victims come from the cold end; one whose lock is taken (in use right
  // now) is moved to the front instead of waited for: no lock order to keep.
  // Every inode beyond the bound goes (a readdirplus batch or a burst of
  // lookups may have added hundreds since the last call), with a few tries
  // more for the busy ones.
  std::size_t excess;
  {
    std::lock_guard lock(lru_mu_);
    excess = lru_.size() > fd_cache_size_ ? lru_.size() - fd_cache_size_ : 0;
  }
  for (std::size_t tries = 0; tries < excess + 64; ++tries) {
    InodeRef victim;
    {
      std::lock_guard lock(lru_mu_);
      if (lru_.size() <= fd_cache_size_) {
        evict_wanted_ = false;
        return;
      }
      victim = lru_.back();
    }
    std::unique_lock il(victim->mu, std::try_to_lock);
    std::lock_guard lock(lru_mu_);
    if (!victim->cached) continue;
    if (!il.owns_lock()) {
      lru_.splice(lru_.begin(), lru_, victim->lru_pos);
      continue;
    }
    lru_.erase(victim->lru_pos);
    victim->cached = false;
    victim->fd.reset();  // users still holding it keep theirs until done
    victim->io.reset();
  }
}

void Vfs::PinLocked(const InodeRef& inode) {
  // A file unlinked (or renamed over) through the mount may still be open:
  // its handle would go stale once no descriptor is left, so it keeps one.
  if (inode->kind != InodeKind::kLocal || inode->handle.empty()) return;
  if (auto fd = PathFdLocked(inode); !fd) return;
  Uncache(*inode);
  inode->handle.clear();
}

std::size_t Vfs::CachedDescriptorInodes() {
  std::lock_guard lock(lru_mu_);
  return lru_.size();
}

void Vfs::PinChild(const InodeRef& parent, std::string_view name, const Result<std::string>& key) {
  if (auto child = ChildInode(parent, name, key)) {
    std::lock_guard lock(child->mu);
    PinLocked(child);
  }
}

}  // namespace originfs
