// Whiteouts: names removed through the mount that the origin still has (see
// bucket_store.h). Every change here is atomic where the kernel allows it:
// a whiteout is made in the staging directory and renamed into place, and a
// directory leaves with RENAME_WHITEOUT, so a lookup racing a removal finds
// the old entry or the whiteout, never a gap through which the origin's copy
// would come back.
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

#include "core/store/bucket_store.h"

namespace originfs {

namespace {

// The names in a directory that are not whiteouts ("." and ".." aside),
// at most one: enough to say it is not empty. Whiteouts go to *whiteouts.
Result<bool> OnlyWhiteouts(int dir_fd, std::vector<std::string>* whiteouts) {
  int fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return FailErrno("opening directory");
  DIR* d = fdopendir(fd);
  if (!d) {
    close(fd);
    return FailErrno("fdopendir");
  }
  bool only = true;
  while (dirent* e = readdir(d)) {
    std::string_view n = e->d_name;
    if (n == "." || n == "..") continue;
    struct stat st;
    if ((e->d_type == DT_CHR || e->d_type == DT_UNKNOWN) &&
        fstatat(dir_fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && BucketStore::IsWhiteout(st)) {
      if (whiteouts) whiteouts->emplace_back(n);
      continue;
    }
    only = false;
    break;
  }
  closedir(d);
  return only;
}

}  // namespace

bool BucketStore::IsWhiteout(const struct stat& st) {
  return S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0);
}

Result<void> BucketStore::PutWhiteout(int dir_fd, std::string_view name) {
  std::string n(name), tmp = NewStagingName();
  if (mknodat(staging_fd_, tmp.c_str(), S_IFCHR | 0, makedev(0, 0)) != 0)
    return FailErrno(fmt::format("making a whiteout for {}", name));
  // rename(2) replaces a file or symlink at once; a directory stays (EISDIR).
  if (renameat(staging_fd_, tmp.c_str(), dir_fd, n.c_str()) != 0) {
    int saved = errno;
    unlinkat(staging_fd_, tmp.c_str(), 0);
    errno = saved;
    return FailErrno(fmt::format("putting a whiteout at {}", name));
  }
  return {};
}

Result<bool> BucketStore::OnlyWhiteoutsIn(int dir_fd, std::string_view name) {
  std::string n(name);
  int fd = openat(dir_fd, n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return FailErrno(fmt::format("opening {}", name));
  UniqueFd dir(fd);
  return OnlyWhiteouts(dir.get(), nullptr);
}

Result<void> BucketStore::ReplaceDirWithWhiteout(int dir_fd, std::string_view name) {
  std::string n(name), tmp = NewStagingName();
  auto only = OnlyWhiteoutsIn(dir_fd, name);
  if (!only) return std::unexpected(only.error());
  if (!*only) return Fail(ENOTEMPTY, fmt::format("{} is not empty", name));
  // Aside in one step, leaving the whiteout (RENAME_WHITEOUT); where the
  // filesystem cannot (EINVAL), aside and then a whiteout in its place.
  bool whited = renameat2(dir_fd, n.c_str(), staging_fd_, tmp.c_str(), RENAME_WHITEOUT) == 0;
  if (!whited) {
    if (errno != EINVAL) return FailErrno(fmt::format("removing {}", name));
    if (renameat(dir_fd, n.c_str(), staging_fd_, tmp.c_str()) != 0)
      return FailErrno(fmt::format("removing {}", name));
  }
  int fd = openat(staging_fd_, tmp.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  UniqueFd aside(fd);
  std::vector<std::string> whiteouts;
  auto rest = fd >= 0 ? OnlyWhiteouts(fd, &whiteouts) : Result<bool>(false);
  if (!rest || !*rest) {
    // Something arrived in it meanwhile (another host, a landing): put it back.
    int saved = rest ? ENOTEMPTY : rest.error().code;
    if (!whited) {
      renameat(staging_fd_, tmp.c_str(), dir_fd, n.c_str());
    } else if (renameat2(staging_fd_, tmp.c_str(), dir_fd, n.c_str(), RENAME_EXCHANGE) == 0) {
      unlinkat(staging_fd_, tmp.c_str(), 0);  // the whiteout, swapped out
    }
    return Fail(saved, fmt::format("{} is not empty", name));
  }
  for (const auto& w : whiteouts) unlinkat(fd, w.c_str(), 0);
  aside.Reset();
  if (unlinkat(staging_fd_, tmp.c_str(), AT_REMOVEDIR) != 0)
    return FailErrno(fmt::format("removing {}", name));
  if (!whited) return PutWhiteout(dir_fd, name);
  return {};
}

Result<bool> BucketStore::ClearWhiteout(int dir_fd, std::string_view name) {
  std::string n(name);
  struct stat st;
  if (fstatat(dir_fd, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !IsWhiteout(st)) return false;
  if (unlinkat(dir_fd, n.c_str(), 0) != 0 && errno != ENOENT)
    return FailErrno(fmt::format("removing the whiteout of {}", name));
  return true;
}

Result<void> BucketStore::SetOpaque(int dir_fd, bool opaque) {
  int rc = opaque ? fsetxattr(dir_fd, kOpaqueXattr, "y", 1, 0) : fremovexattr(dir_fd, kOpaqueXattr);
  if (rc != 0 && !(errno == ENODATA && !opaque)) return FailErrno("marking a directory opaque");
  return {};
}

bool BucketStore::IsOpaque(int dir_fd) {
  char v;
  return fgetxattr(dir_fd, kOpaqueXattr, &v, 1) >= 0;
}

namespace {
std::string ProcName(int dir_fd, std::string_view name) {
  return fmt::format("/proc/self/fd/{}/{}", dir_fd, name);
}
}  // namespace

void BucketStore::MarkMadeOverWhiteout(int dir_fd, std::string_view name) {
  std::string n(name);
  int fd = openat(dir_fd, n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    MarkOverWhiteout(dir_fd, name);  // not a directory
    return;
  }
  UniqueFd dir(fd);
  if (auto r = SetOpaque(fd, true); !r) spdlog::warn("{}: {}", name, r.error().message);
}

bool BucketStore::MarkOverWhiteout(int dir_fd, std::string_view name) {
  std::string p = ProcName(dir_fd, name);
  if (lsetxattr(p.c_str(), kOverWhiteoutXattr, "y", 1, 0) == 0) return true;
  // EPERM: a symlink or a device, which take no user attributes.
  if (lsetxattr(p.c_str(), kTrustedOverWhiteoutXattr, "y", 1, 0) == 0) return true;
  static std::atomic<bool> said{false};
  if (!said.exchange(true))
    spdlog::warn(
        "{}: cannot mark it as made where a removed name was ({}): removing it "
        "may bring the origin's copy back",
        name, std::strerror(errno));
  return false;
}

bool BucketStore::MadeOverWhiteout(int dir_fd, std::string_view name) {
  std::string p = ProcName(dir_fd, name);
  char v;
  return lgetxattr(p.c_str(), kOverWhiteoutXattr, &v, 1) >= 0 ||
         lgetxattr(p.c_str(), kTrustedOverWhiteoutXattr, &v, 1) >= 0 ||
         lgetxattr(p.c_str(), kOpaqueXattr, &v, 1) >= 0;
}

bool BucketStore::Shadowed(std::string_view key, bool dir_itself) const {
  // Component by component from the root, down to the deepest directory the
  // bucket has: only a directory in the bucket can be opaque.
  int dir = root_fd_;
  UniqueFd held;
  std::size_t pos = 0;
  bool shadowed = false;
  while (pos <= key.size() && !key.empty()) {
    std::size_t slash = key.find('/', pos);
    bool last = slash == std::string_view::npos;
    std::string comp(key.substr(pos, last ? std::string_view::npos : slash - pos));
    struct stat st;
    if (fstatat(dir, comp.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) break;
    if (IsWhiteout(st)) {
      shadowed = true;
      break;
    }
    if (last && !dir_itself) break;
    if (!S_ISDIR(st.st_mode)) break;
    int fd = openat(dir, comp.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) break;
    held.Reset(fd);
    dir = fd;
    if (IsOpaque(fd)) {
      shadowed = true;
      break;
    }
    if (last) break;
    pos = slash + 1;
  }
  return shadowed;
}

}  // namespace originfs
