// Directory listings: the bucket's entries, the origin's, and names still
// arriving, as one snapshot per open directory.
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

Result<std::unique_ptr<DirHandle>> Vfs::OpenDir(uint64_t ino) {
  MaybeEvict();
  auto inode = Get(ino);
  if (!inode) return Fail(ESTALE, "stale inode");
  auto h = std::make_unique<DirHandle>();
  h->inode = inode;
  h->is_root = ino == kRootIno;
  std::string key;
  {
    std::lock_guard lock(inode->mu);
    if (inode->kind == InodeKind::kOriginFile) return Fail(ENOTDIR, "not a directory");
    key = inode->key();
    if (inode->kind == InodeKind::kOriginDir) {
      auto fd = store_.OpenKey(key, O_PATH);
      if (!fd) return h;  // only at the origin: the names the kernel has been shown
      close(*fd);
    }
  }
  if (auto a = BecomeLocal(inode, key); !a && inode->kind != InodeKind::kLocal) return h;
  {
    std::lock_guard lock(inode->mu);
    auto pfd = PathFdLocked(inode);
    if (!pfd) return std::unexpected(pfd.error());
    h->fd.Reset(openat((*pfd)->get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  }
  if (!h->fd) return FailErrno("opendir");
  return h;
}

// The listing: the bucket's entries (or, for a directory only the origin
// has, . and ..), then the names shown from the origin that the bucket lacks,
// then the origin's listing.
Result<void> Vfs::List(DirHandle& h) {
  auto dir = std::static_pointer_cast<Inode>(h.inode);
  h.listing.clear();
  auto self = StatInode(dir);
  if (!self) return std::unexpected(self.error());
  std::unordered_set<std::string> names;
  if (h.fd) {
    if (auto r = ListBucket(h, *self, names); !r) return r;
  } else {
    ListDotsOfOriginDir(h, *self);
  }
  auto key = KeyOf(dir->ino);
  if (!key) return {};
  // Made where a removed origin directory was (or below one): the bucket's alone.
  if (h.fd && store_.Shadowed(*key, true)) return {};
  std::string prefix = key->empty() ? "" : *key + "/";
  ListShownFromOrigin(h, prefix, names);
  // Then what the origin lists (the bucket and names already shown win).
  auto listed = mirror_.ListDir(*key);
  if (!listed) return std::unexpected(listed.error());
  if (!*listed) return {};
  for (const ListedEntry& e : (*listed)->entries) {
    if (names.contains(e.name) || DotOrDotDot(e.name) || Reserved(dir->ino, e.name)) continue;
    // A number of its own per key until a lookup enters the name.
    ino_t ino =
        kSyntheticInoBit | kListedInoBit | (KeyHash64(prefix + e.name) & (kListedInoBit - 1));
    // Never a type stat will contradict (du, find -type trust it).
    unsigned char type = e.is_dir ? DT_DIR : e.type_unknown ? DT_UNKNOWN : DT_REG;
    h.listing.push_back({e.name, ino, type, 0, true});
  }
  return {};
}

Result<void> Vfs::ListBucket(DirHandle& h, const struct stat& self,
                             std::unordered_set<std::string>& names) {
  int fd = openat(h.fd.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return FailErrno("opendir");
  DIR* dp = fdopendir(fd);
  if (!dp) {
    close(fd);
    return FailErrno("fdopendir");
  }
  std::unique_ptr<DIR, int (*)(DIR*)> closer(dp, closedir);
  for (;;) {
    errno = 0;
    dirent* d = readdir(dp);
    if (!d) {
      if (errno) return FailErrno("readdir");
      break;
    }
    std::string_view name = d->d_name;
    if (h.is_root && name == BucketStore::kStateDirName) continue;
    if (d->d_type == DT_CHR || d->d_type == DT_UNKNOWN) {
      struct stat st;
      if (fstatat(h.fd.get(), d->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
          BucketStore::IsWhiteout(st)) {
        names.emplace(name);  // removed: the origin's entry is not shown either
        continue;
      }
    }
    ino_t ino = d->d_ino;
    if (name == ".")
      ino = self.st_ino;
    else
      ino = ShownIno(self.st_dev, ino);
    h.listing.push_back({std::string(name), ino, d->d_type, 0});
    names.emplace(name);
  }
  return {};
}

// Only at the origin: . and .. as stat shows them.
void Vfs::ListDotsOfOriginDir(DirHandle& h, const struct stat& self) {
  auto dir = std::static_pointer_cast<Inode>(h.inode);
  ino_t up = self.st_ino;
  if (auto k = KeyOf(dir->ino); k) {
    std::size_t slash = k->rfind('/');
    std::string parent_key = slash == std::string::npos ? "" : k->substr(0, slash);
    std::lock_guard lock(table_mu_);
    if (parent_key.empty()) {
      const Inode& root = *inodes_.Find(kRootIno);
      up = ShownIno(root.dev, root.backing_ino);
    } else if (auto it = by_key_.find(parent_key); it != by_key_.end()) {
      up = kSyntheticInoBit | it->second;
    }
  }
  h.listing.push_back({".", self.st_ino, DT_DIR, 0});
  h.listing.push_back({"..", up, DT_DIR, 0});
}

void Vfs::ListShownFromOrigin(DirHandle& h, const std::string& prefix,
                              std::unordered_set<std::string>& names) {
  // Every name a lookup has shown here and the bucket does not have yet: a
  // file still downloading (or kept outside the bucket), an origin directory.
  auto rules = mirror_.rules();  // (a reload may have retired the names' rule)
  std::unique_lock lock(table_mu_);
  for (auto it = by_key_.lower_bound(prefix);
       it != by_key_.end() && std::string_view(it->first).starts_with(prefix); ++it) {
    std::string_view name = std::string_view(it->first).substr(prefix.size());
    if (name.empty() || name.find('/') != std::string_view::npos) continue;
    if (names.contains(std::string(name))) continue;
    InodeRef in = inodes_.Find(it->second);
    if (!in) continue;
    Inode& child = *in;
    std::lock_guard il(child.mu);
    bool shown = child.kind == InodeKind::kOriginDir &&
                 (!rules->Match(it->first).empty() || rules->PrefixImpliesDirectory(it->first));
    if (child.kind == InodeKind::kOriginFile && child.OriginPart().flight) {
      if (!child.OriginPart().flight->finished()) {
        shown = true;
      } else {
        auto done = child.OriginPart().flight->WaitDone();
        shown = done && !done->in_bucket;
      }
    }
    if (!shown) continue;
    h.listing.push_back(
        {std::string(name), OriginFileAttr(child).st_ino,
         static_cast<unsigned char>(child.kind == InodeKind::kOriginDir ? DT_DIR : DT_REG),
         child.ino});
    names.emplace(name);
  }
  lock.unlock();
}

Result<void> Vfs::ReadDir(DirHandle& h, off_t offset, bool plus,
                          const std::function<bool(const DirEntry&)>& emit) {
  MaybeEvict();
  if (offset == 0 || !h.listed) {  // opendir or rewinddir: read it anew
    if (auto r = List(h); !r) return r;
    h.listed = true;
  }
  auto dir = std::static_pointer_cast<Inode>(h.inode);
  for (std::size_t i = static_cast<std::size_t>(std::max<off_t>(offset, 0)); i < h.listing.size();
       ++i) {
    const DirHandle::Listed& l = h.listing[i];
    DirEntry de{l.name, l.ino, l.type, static_cast<off_t>(i + 1), std::nullopt};
    if (plus && !DotOrDotDot(l.name) && !l.listed_only) {
      MaybeEvict();  // each entry may enter an inode with descriptors
      std::optional<Entry> e;
      if (l.origin_ino) {
        std::lock_guard lock(table_mu_);
        if (InodeRef in = inodes_.Find(l.origin_ino)) {
          std::lock_guard il(in->mu);
          if (in->kind != InodeKind::kLocal) {
            in->nlookup++;
            e = OriginEntry(*in);
          }
        }
      }
      if (!e) {
        bool missing = false;
        auto local = LookupLocal(dir, l.name, &missing);
        if (!local) continue;  // vanished between the listing and now
        e = *local;
      }
      de.entry = *e;
    }
    if (!emit(de)) {
      if (de.entry) Forget(de.entry->ino, 1);
      return {};
    }
    if (de.entry) stats_.plus_entries++;
  }
  return {};
}

Result<void> Vfs::FsyncDir(DirHandle& h, bool datasync) {
  if (!h.fd) return {};
  return Check(datasync ? fdatasync(h.fd.get()) : fsync(h.fd.get()), "fsyncdir");
}

}  // namespace originfs
