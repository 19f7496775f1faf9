// Removing and renaming away names the origin has: the bucket keeps a
// whiteout in their place (bucket_store.h), so the name stays removed across
// remounts and on every host of a shared bucket, and a directory made where
// one was is opaque. Names nothing says the origin has are removed plainly.
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <atomic>
#include <string>

#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

#include "core/vfs/control_protocol.h"
#include "core/vfs/inode.h"
#include "core/vfs/vfs.h"

namespace originfs {

using namespace vfs_internal;

namespace {

// Without CAP_MKNOD no whiteout can be made: removals still work, but the
// origin's copy comes back. Said once.
bool WhiteoutsRefused(const Error& e) {
  if (e.code != EPERM) return false;
  static std::atomic<bool> said{false};
  if (!said.exchange(true))
    spdlog::warn(
        "whiteouts need mknod of a device (run as root or with CAP_MKNOD): removed origin names "
        "will come back from the origin ({})",
        e.message);
  return true;
}

}  // namespace

bool Vfs::OriginHasName(const std::string& key) {
  if (key.empty() || !mirror_.HasRule(key)) return false;
  {
    std::lock_guard lock(table_mu_);
    if (by_key_.contains(key)) return true;
  }
  return mirror_.OriginHadName(key);
}

void Vfs::ForgetOriginNames(const std::string& key) {
  // The inodes stay (the kernel may still hold them); their names go, so no
  // lookup or listing shows them again.
  std::lock_guard lock(table_mu_);
  by_key_.erase(key);
  std::string below = key + "/";
  for (auto it = by_key_.lower_bound(below); it != by_key_.end() && it->first.starts_with(below);)
    it = by_key_.erase(it);
}

Result<void> Vfs::UnlinkLeavingWhiteout(int dir, std::string_view name, const std::string& key) {
  std::string n(name);
  struct stat st;
  bool exists = fstatat(dir, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
  if (exists && BucketStore::IsWhiteout(st)) return Fail(ENOENT, "removed");
  if (exists && S_ISDIR(st.st_mode)) return Fail(EISDIR, fmt::format("unlink {}", key));
  auto w = store_.PutWhiteout(dir, n);
  if (!w) {
    if (!WhiteoutsRefused(w.error())) return w;
    if (unlinkat(dir, n.c_str(), 0) != 0) return FailErrno("unlink");
  }
  // The landed record stays: it is what says the origin has the name should
  // a file made here later be removed (symlinks and devices take no mark).
  ForgetOriginNames(key);
  return {};
}

Result<void> Vfs::RmDirLeavingWhiteout(const InodeRef& child, int dir, std::string_view name,
                                       const std::string& key) {
  // Empty as a listing shows it: nothing in the bucket but whiteouts (asked
  // first: no request), and nothing the origin lists that is not whited out.
  std::string n(name);
  struct stat st;
  bool exists = fstatat(dir, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
  if (exists && S_ISDIR(st.st_mode)) {
    auto only = BucketStore::OnlyWhiteoutsIn(dir, n);
    if (!only) return std::unexpected(only.error());
    if (!*only) return Fail(ENOTEMPTY, fmt::format("rmdir {}: not empty", key));
  }
  // The origin's part must be known to be all removed: without a listing
  // (an origin that serves none) it is not, unless nothing of the origin's
  // shows below this directory (made where a removed one was: opaque).
  bool origin_part = child && OriginDirectory(child);  // else the origin has it as a file
  if (origin_part && !(exists && S_ISDIR(st.st_mode) && BucketStore::MadeOverWhiteout(dir, n))) {
    auto listed = mirror_.ListDir(key);
    if (!listed) return std::unexpected(listed.error());
    if (!*listed)
      return Fail(ENOTEMPTY, fmt::format("rmdir {}: the origin lists no index of it, so what "
                                         "it holds there is not known",
                                         key));
  }
  if (child) {
    auto h = OpenDir(child->ino);
    if (!h) return std::unexpected(h.error());
    if (auto r = List(**h); !r) return r;
    for (const auto& l : (*h)->listing)
      if (!DotOrDotDot(l.name))
        return Fail(ENOTEMPTY, fmt::format("rmdir {}: not empty ({})", key, l.name));
  }
  if (exists && BucketStore::IsWhiteout(st)) return Fail(ENOENT, "removed");
  if (exists && !S_ISDIR(st.st_mode)) return Fail(ENOTDIR, fmt::format("rmdir {}", key));
  auto w = exists ? store_.ReplaceDirWithWhiteout(dir, n) : store_.PutWhiteout(dir, n);
  if (!w) {
    if (!WhiteoutsRefused(w.error())) return w;
    if (exists && unlinkat(dir, n.c_str(), AT_REMOVEDIR) != 0) return FailErrno("rmdir");
  }
  if (exists && any_alias_) {
    std::lock_guard lock(alias_mu_);
    dir_alias_.erase({st.st_dev, st.st_ino});
  }
  ForgetOriginNames(key);
  return {};
}

bool Vfs::ContradictedByListing(const std::string& key, std::string_view name,
                                const struct stat& shown) {
  // Only a fresh listing, without a request, and only where it can tell.
  if (name.starts_with('.')) return false;
  std::size_t slash = key.rfind('/');
  auto known = mirror_.KnownFreshListing(slash == std::string::npos ? "" : key.substr(0, slash));
  if (!known || !*known) return false;
  const ListedEntry* e = (*known)->Find(name);
  bool contradicted =
      S_ISDIR(shown.st_mode) ? !e || (!e->is_dir && !e->type_unknown) : !e || e->is_dir;
  if (contradicted) ForgetOriginNames(key);  // what is shown next is made anew
  return contradicted;
}

void Vfs::ForgetContradicted(uint64_t dir_ino, const std::string& dir_key) {
  // Origin inodes shown in the directory whose type the new listing
  // contradicts, with nothing local under them: the kernel forgets the name.
  std::string prefix = dir_key.empty() ? "" : dir_key + "/";
  std::vector<std::pair<std::string, struct stat>> shown;
  {
    std::lock_guard lock(table_mu_);
    for (auto it = by_key_.lower_bound(prefix);
         it != by_key_.end() && std::string_view(it->first).starts_with(prefix); ++it) {
      std::string_view name = std::string_view(it->first).substr(prefix.size());
      if (name.empty() || name.find('/') != std::string_view::npos) continue;
      InodeRef in = inodes_.Find(it->second);
      if (!in) continue;
      std::lock_guard il(in->mu);
      if (in->kind == InodeKind::kLocal) continue;
      if (in->kind == InodeKind::kOriginFile &&
          !(in->OriginPart().flight && in->OriginPart().flight->finished()))
        continue;  // still arriving: its download decides
      shown.emplace_back(std::string(name), OriginFileAttr(*in));
    }
  }
  for (const auto& [name, st] : shown) {
    std::string key = prefix + name;
    if (store_.Exists(key)) continue;
    if (ContradictedByListing(key, name, st) && invalidate_) invalidate_(dir_ino, name);
  }
}

Result<bool> Vfs::ClearWhiteoutFor(int dir, std::string_view name) {
  return store_.ClearWhiteout(dir, name);
}

Result<void> Vfs::RenameLeavingWhiteout(int from, std::string_view a, int to, std::string_view b,
                                        unsigned flags, const std::string& key) {
  std::string sa(a), sb(b);
  if (renameat2(from, sa.c_str(), to, sb.c_str(), flags | RENAME_WHITEOUT) == 0) {
    ForgetOriginNames(key);
    return {};
  }
  if (errno != EINVAL && errno != EPERM) return FailErrno("rename");
  // A filesystem without RENAME_WHITEOUT, or no CAP_MKNOD: rename, then the whiteout.
  if (renameat2(from, sa.c_str(), to, sb.c_str(), flags) != 0) return FailErrno("rename");
  ForgetOriginNames(key);
  if (auto w = store_.PutWhiteout(from, sa); !w && !WhiteoutsRefused(w.error()))
    spdlog::warn("rename {}: {}", key, w.error().message);
  return {};
}

Result<void> Vfs::RestoreName(const InodeRef& parent, std::string_view name) {
  auto key = ChildKey(parent, name);
  if (!key) return std::unexpected(key.error());
  auto dir = DirFd(parent);
  if (!dir) return std::unexpected(dir.error());
  std::string n(name);
  auto cleared = store_.ClearWhiteout((*dir)->get(), n);
  if (!cleared) return std::unexpected(cleared.error());
  if (!*cleared) {
    // A directory made where a removed one was: the origin's part comes back.
    int fd = openat((*dir)->get(), n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return Fail(ENOENT, fmt::format("restore {}: not removed", *key));
    UniqueFd d(fd);
    if (!BucketStore::IsOpaque(fd))
      return Fail(ENOENT, fmt::format("restore {}: not removed", *key));
    ORIGINFS_TRY(BucketStore::SetOpaque(fd, false));
  }
  mirror_.ForgetNotFound(*key);
  mirror_.ForgetListing(*key);
  if (invalidate_) invalidate_(parent->ino, n);
  spdlog::info("restore {}: the origin's copy is shown again", *key);
  return {};
}

}  // namespace originfs
