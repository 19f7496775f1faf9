#include "core/store/object_cache.h"

#include "core/common/key_hash.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

namespace originfs {

ObjectCache::ObjectCache(BucketStore& store) : store_(store) {
  std::string dir(kDir);
  mkdirat(store_.root_fd(), dir.c_str(), 0700);
  dir_fd_ = openat(store_.root_fd(), dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dir_fd_ < 0) {
    spdlog::warn("object cache {}/{}: {}", store_.path(), dir, std::strerror(errno));
    return;
  }
  // Rebuild the index from what is on disk, oldest access first.
  int fd = dup(dir_fd_);
  DIR* d = fd >= 0 ? fdopendir(fd) : nullptr;
  if (!d) {
    if (fd >= 0) close(fd);
    return;
  }
  std::vector<std::pair<int64_t, std::string>> found;
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n == "." || n == "..") continue;
    struct stat st;
    if (fstatat(dir_fd_, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
      continue;
    found.emplace_back(st.st_atim.tv_sec, n);
    entries_[n].size = static_cast<uint64_t>(st.st_size);
    total_ += static_cast<uint64_t>(st.st_size);
  }
  closedir(d);
  std::sort(found.begin(), found.end());
  for (auto& [atime, n] : found) entries_[n].last_used = ++clock_;
}

ObjectCache::~ObjectCache() {
  if (dir_fd_ >= 0) close(dir_fd_);
}

std::string ObjectCache::NameOf(std::string_view key) { return KeyHash128Hex(key); }

uint64_t ObjectCache::bytes() {
  std::lock_guard lock(mu_);
  return total_;
}

std::optional<CachedObject> ObjectCache::Lookup(std::string_view key) {
  if (dir_fd_ < 0) return std::nullopt;
  std::string name = NameOf(key);
  std::lock_guard lock(mu_);
  auto it = entries_.find(name);
  if (it == entries_.end()) return std::nullopt;
  std::shared_ptr<UniqueFd> file = it->second.in_use.lock();
  if (!file) {
    int fd = openat(dir_fd_, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {  // removed behind our back
      total_ -= std::min(total_, it->second.size);
      entries_.erase(it);
      return std::nullopt;
    }
    file = std::make_shared<UniqueFd>(fd);
    it->second.in_use = file;
  }
  struct stat st;
  if (fstat(file->get(), &st) != 0) return std::nullopt;
  it->second.last_used = ++clock_;
  timespec times[2] = {{0, UTIME_NOW}, {0, UTIME_OMIT}};  // atime orders eviction after a restart
  futimens(file->get(), times);
  return CachedObject{file, static_cast<uint64_t>(st.st_size), st.st_mtim.tv_sec};
}

Result<CachedObject> ObjectCache::Insert(std::string_view key, StagingFile& staging, int64_t mtime,
                                         uint64_t max_bytes) {
  if (dir_fd_ < 0) return Fail(EIO, "object cache unavailable");
  std::string name = NameOf(key);
  auto c = store_.CommitReplace(staging, fmt::format("{}/{}", kDir, name), mtime);
  if (!c) return std::unexpected(c.error());
  int fd = openat(dir_fd_, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return FailErrno("opening cached object");
  auto file = std::make_shared<UniqueFd>(fd);
  std::lock_guard lock(mu_);
  Entry& e = entries_[name];
  total_ -= std::min(total_, e.size);
  e.size = staging.size();
  e.last_used = ++clock_;
  e.in_use = file;
  total_ += e.size;
  EvictLocked(max_bytes);
  return CachedObject{file, staging.size(), mtime};
}

void ObjectCache::EvictLocked(uint64_t max_bytes) {
  while (total_ > max_bytes) {
    auto victim = entries_.end();
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (!it->second.in_use.expired()) continue;  // never evict a file in use
      if (victim == entries_.end() || it->second.last_used < victim->second.last_used) victim = it;
    }
    if (victim == entries_.end()) {
      spdlog::debug("object cache over its bound ({} > {} bytes), everything in use", total_,
                    max_bytes);
      return;
    }
    unlinkat(dir_fd_, victim->first.c_str(), 0);
    total_ -= std::min(total_, victim->second.size);
    spdlog::debug("object cache: evicted {} ({} bytes)", victim->first, victim->second.size);
    entries_.erase(victim);
  }
}

}  // namespace originfs
