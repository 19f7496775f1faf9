// The inode table and lookups: local names, and misses sent to the mirror.
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <limits>
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

Vfs::Vfs(BucketStore& store, Mirror& mirror, VfsOptions options)
    : store_(store),
      mirror_(mirror),
      options_(options),
      mount_time_(Now()),
      origin_dir_time_(store.epoch() > 0 ? store.epoch() : mount_time_) {
  auto root = std::make_shared<Inode>(kRootIno);
  root->fd = std::make_shared<UniqueFd>(fcntl(store_.root_fd(), F_DUPFD_CLOEXEC, 0));
  struct stat st;
  if (fstat(root->fd->get(), &st) == 0) {
    root->dev = st.st_dev;
    root->backing_ino = st.st_ino;
    root_uid_ = st.st_uid;
    root_gid_ = st.st_gid;
  }
  root->nlookup = 1;  // the kernel never forgets the root
  // Opening looked-up files for reading ahead spends a second descriptor per
  // file inode: only while they are plenty (a quarter of the limit in use).
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
    read_ahead_open_below_ = rl.rlim_cur == RLIM_INFINITY ? SIZE_MAX : rl.rlim_cur / 4;
  // Descriptors held for inodes the kernel remembers are bounded: each inode
  // keeps a file handle (a few bytes, no descriptor), and at most this many
  // inodes keep their descriptors open (up to three each: path, read,
  // write), whatever the kernel remembers. A quarter of the limit leaves the
  // rest to downloads, open files and curl.
  std::size_t limit = rl.rlim_cur == RLIM_INFINITY ? 1u << 20 : rl.rlim_cur;
  fd_cache_size_ = std::max<std::size_t>(64, limit / 4 / 3);
  mount_fd_.Reset(open(store_.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  handles_ok_ = HandlesWork();
  if (!handles_ok_)
    spdlog::warn(
        "file handles unavailable on {} (name_to_handle_at/open_by_handle_at): every "
        "inode the kernel remembers holds a descriptor",
        store_.path());
  by_backing_.SetMainDevice(root->dev);
  bucket_dev_ = root->dev;
  by_backing_.Set(root->dev, root->backing_ino, kRootIno);
  inodes_.Insert(std::move(root));
}

Vfs::~Vfs() = default;

std::size_t Vfs::InodeCount() {
  std::lock_guard lock(table_mu_);
  return inodes_.size();
}

Vfs::InodeRef Vfs::Get(uint64_t ino) {
  std::lock_guard lock(table_mu_);
  return inodes_.Find(ino);
}

bool Vfs::Reserved(uint64_t parent, std::string_view name) const {
  return parent == kRootIno && name == BucketStore::kStateDirName;
}

Result<Entry> Vfs::EntryForFd(UniqueFd fd, const struct stat* known, UniqueFd read_fd) {
  Entry e;
  if (known) {
    e.attr = *known;
  } else if (fstatat(fd.get(), "", &e.attr, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) {
    return FailErrno("fstat");
  }
  // Long only where the watch sees changes: not below another filesystem
  // mounted inside the bucket.
  bool watched = e.attr.st_dev == bucket_dev_;
  e.entry_timeout = watched ? options_.local_entry_timeout : options_.entry_timeout;
  e.attr_timeout = watched ? options_.local_attr_timeout : options_.attr_timeout;
  const ino_t backing_ino = e.attr.st_ino;
  std::lock_guard lock(table_mu_);
  InodeRef in = inodes_.Find(by_backing_.Find(e.attr.st_dev, backing_ino));
  if (in && !SameFileLocked(*in, fd.get())) {
    // Its file is gone and the number was given to this one: the old inode
    // stays for whoever holds it (its handle says ESTALE), this is a new one.
    by_backing_.EraseIf(in->dev, in->backing_ino, in->ino);
    in = nullptr;
  }
  if (in) {
    in->nlookup++;
    e.ino = in->ino;
    // (born is set once, under table_mu_: only origin-born inodes need more.)
    if (in->born != InodeKind::kLocal) {
      std::lock_guard il(in->mu);
      AsFirstShownLocked(*in, e.attr);
    }
    ShowAs(e.attr);
    return e;  // (read_fd, if any, is closed by the caller's side, unlocked)
  }
  uint64_t ino = next_ino_++;
  auto inode = std::make_shared<Inode>(ino);
  if (read_fd) inode->IoPart().read.fd = std::make_shared<UniqueFd>(read_fd.Release());
  if (handles_ok_) TakeHandle(*inode, fd.get());
  inode->fd = std::make_shared<UniqueFd>(fd.Release());
  inode->dev = e.attr.st_dev;
  inode->backing_ino = backing_ino;
  inode->nlookup = 1;
  by_backing_.Set(inode->dev, inode->backing_ino, ino);
  if (!inode->handle.empty()) Cached(inode);
  inodes_.Insert(std::move(inode));
  e.ino = ino;
  ShowAs(e.attr);
  return e;
}

ino_t Vfs::ShownIno(dev_t dev, ino_t ino) const {
  if (!any_alias_.load(std::memory_order_acquire)) return ino;
  std::lock_guard lock(alias_mu_);
  auto it = dir_alias_.find({dev, ino});
  return it == dir_alias_.end() ? ino : it->second;
}

void Vfs::ShowAs(struct stat& st) const { st.st_ino = ShownIno(st.st_dev, st.st_ino); }

// The origin-only inode the kernel knows under key, made (as kind) if there
// is none, with one more lookup counted (table_mu_ held).
Vfs::InodeRef Vfs::KeyedInodeLocked(const std::string& key, InodeKind kind) {
  InodeRef inode;
  if (auto it = by_key_.find(key); it != by_key_.end()) inode = inodes_.Find(it->second);
  // The origin changed its type (a directory that became a file): a new
  // inode; the kernel forgets the old one in its time.
  if (inode && inode->kind != kind && inode->kind != InodeKind::kLocal) inode = nullptr;
  if (!inode) {
    inode = std::make_shared<Inode>(next_ino_++);
    inode->OriginPart().key = key;
    inode->kind = kind;
    inode->born = kind;
    inodes_.Insert(inode);
    by_key_[key] = inode->ino;
  }
  inode->nlookup++;
  return inode;
}

void Vfs::Forget(uint64_t ino, uint64_t n) {
  InodeRef doomed;  // destroyed (fd closed) outside the lock
  std::lock_guard lock(table_mu_);
  InodeRef found = inodes_.Find(ino);
  if (!found) return;
  Inode& inode = *found;
  if (inode.nlookup < n) {
    spdlog::critical("forget({}, {}) with lookup count {}", ino, n, inode.nlookup);
    std::abort();
  }
  inode.nlookup -= n;
  if (inode.nlookup > 0 || ino == kRootIno) return;
  doomed = inodes_.Take(ino);
  Uncache(*doomed);
  by_backing_.EraseIf(doomed->dev, doomed->backing_ino, ino);
  if (any_alias_.load(std::memory_order_acquire)) {
    // The number it was shown under goes with the kernel's last reference.
    std::lock_guard al(alias_mu_);
    if (auto a = dir_alias_.find({doomed->dev, doomed->backing_ino});
        a != dir_alias_.end() && a->second == (kSyntheticInoBit | ino))
      dir_alias_.erase(a);
  }
  if (!doomed->key().empty()) {
    if (auto k = by_key_.find(doomed->key()); k != by_key_.end() && k->second == ino)
      by_key_.erase(k);
  }
}

Result<std::string> Vfs::KeyOf(uint64_t ino) {
  auto inode = Get(ino);
  if (!inode) return Fail(ESTALE, "stale inode");
  std::unique_lock lock(inode->mu);
  if (inode->kind != InodeKind::kLocal) return inode->key();
  if (ino == kRootIno) return std::string();
  auto fd = PathFdLocked(inode);
  if (!fd) return std::unexpected(fd.error());
  struct stat st;
  if (fstatat((*fd)->get(), "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0)
    return FailErrno("fstat");
  if (S_ISDIR(st.st_mode) && st.st_nlink == 0) return Fail(ENOENT, "directory was removed");
  char buf[PATH_MAX + 1];
  ssize_t n = readlink(ProcPath((*fd)->get()).c_str(), buf, PATH_MAX);
  if (n < 0) return FailErrno("readlink");
  std::string_view path(buf, static_cast<std::size_t>(n));
  const std::string& root = store_.path();
  if (path == root) return std::string();
  if (path.size() > root.size() && path.starts_with(root) && path[root.size()] == '/')
    return std::string(path.substr(root.size() + 1));
  return Fail(ENOENT, fmt::format("{} is no longer below the bucket", path));
}

Result<std::string> Vfs::ChildKey(const InodeRef& parent, std::string_view name) {
  auto k = KeyOf(parent->ino);
  if (!k) return k;
  if (!k->empty()) *k += '/';
  *k += name;
  return k;
}

bool Vfs::WantsReadFd(const struct stat& st) {
  if (!S_ISREG(st.st_mode)) return false;
  std::lock_guard lock(table_mu_);
  return (handles_ok_ || inodes_.size() < read_ahead_open_below_) &&
         by_backing_.Find(st.st_dev, st.st_ino) == 0;
}

Result<Entry> Vfs::LookupLocal(const InodeRef& parent, std::string_view name, bool* missing) {
  *missing = false;
  std::string n(name);
  int fd = -1;
  std::shared_ptr<UniqueFd> dir_fd;  // the parent's descriptor, held while used
  int dir = -1;
  {
    std::lock_guard lock(parent->mu);
    switch (parent->kind) {
      case InodeKind::kLocal: {
        auto pfd = PathFdLocked(parent);
        if (!pfd) return std::unexpected(pfd.error());
        dir_fd = *pfd;
        dir = dir_fd->get();
        fd = openat(dir, n.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
        break;
      }
      case InodeKind::kOriginDir: {
        auto r = store_.OpenKey(parent->key() + "/" + n, O_PATH);
        if (r)
          fd = *r;
        else
          errno = r.error().code;
        break;
      }
      case InodeKind::kOriginFile:
        return Fail(ENOTDIR, "not a directory");
    }
  }
  if (fd < 0) {
    if (errno == ENOENT) *missing = true;
    return FailErrno(fmt::format("lookup {}", name));
  }
  UniqueFd owned(fd);
  struct stat st;
  if (fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) return FailErrno("fstat");
  // A removed origin name: known absent, the origin is not asked.
  if (BucketStore::IsWhiteout(st)) return Fail(ENOENT, "removed");
  if (dir < 0) {
    // The parent is an origin directory the kernel knows by a number of its
    // own, which the watch cannot name: changes of this name in the bucket
    // directory reach the kernel only when this entry expires.
    auto e = EntryForFd(std::move(owned), &st);
    if (e) e->entry_timeout = options_.entry_timeout;
    return e;
  }
  UniqueFd read_fd;
  if (WantsReadFd(st)) {
    // A file looked up is usually read next. Opening it for reading now, by
    // its name in the directory at hand, is a fraction of what reopening the
    // O_PATH descriptor through /proc costs at the first read. O_NONBLOCK:
    // should the name have become a FIFO meanwhile, the open must not wait;
    // the inode check drops whatever is not the file just seen, and the flag
    // goes once it is (splice(2) would carry it over to its pipe).
    read_fd.Reset(
        openat(dir, n.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
    struct stat rst;
    if (read_fd && !(fstat(read_fd.get(), &rst) == 0 && rst.st_dev == st.st_dev &&
                     rst.st_ino == st.st_ino && fcntl(read_fd.get(), F_SETFL, 0) == 0))
      read_fd.Reset();
  }
  return EntryForFd(std::move(owned), &st, std::move(read_fd));
}

// A lookup, top to bottom: the bucket; then, for a name it lacks, an origin
// inode the kernel already knows, the rules, a fresh listing, and last a
// download (Miss), answered from its response head.
void Vfs::Lookup(uint64_t parent_ino, std::string_view name, EntryCallback cb) {
  MaybeEvict();
  auto parent = Get(parent_ino);
  if (!parent) return cb(Fail(ESTALE, "stale parent"));
  if (Reserved(parent_ino, name)) return cb(Fail(ENOENT, "reserved name"));
  if (name.size() > NAME_MAX) return cb(Fail(ENAMETOOLONG, "name too long"));
  // Read before looking in the bucket: Start then knows whether a download
  // may have landed the file since (and only then looks again).
  uint64_t landings = mirror_.landings();
  bool missing = false;
  auto local = LookupLocal(parent, name, &missing);
  if (!missing) {
    if (local) stats_.hits++;
    return cb(std::move(local));
  }
  auto key = ChildKey(parent, name);
  if (!key) return cb(std::unexpected(key.error()));
  if (auto known = KnownOriginEntry(*key)) {
    // A directory is asked for again once its parent's listing expired, and
    // is no more when the fresh listing says it is a file now (or gone).
    // (A reload may have retired its rule: the name is the bucket's alone.)
    std::size_t cut = key->rfind('/');
    if (!S_ISDIR(known->attr.st_mode) ||
        ((mirror_.HasRule(*key) || mirror_.ImpliedDirectory(*key)) &&
         !ContradictedByListing(*key, name, known->attr) &&
         !mirror_.ListingExpired(cut == std::string::npos ? "" : key->substr(0, cut))))
      return cb(std::move(*known));
    Forget(known->ino, 1);
  }
  if (mirror_.ImpliedDirectory(*key)) return cb(EntryForOriginDir(*key));
  if (!mirror_.HasRule(*key)) return cb(Fail(ENOENT, "no rule matches"));
  // Below a removed directory, or one made where a removed one was.
  if (store_.Shadowed(*key)) return cb(Fail(ENOENT, "removed"));
  std::size_t slash = key->rfind('/');
  std::string dir = slash == std::string::npos ? "" : key->substr(0, slash);
  auto known = mirror_.KnownFreshListing(dir);
  auto ask = Mirror::Absence::kKnown;
  int64_t stale_at = -1;  // kAskListing: when the listing too old to say was read
  if (known) {
    if (auto listed = EntryFromListing(*key, name, *known, &ask)) return cb(std::move(*listed));
    if (ask != Mirror::Absence::kAskListing)
      return Miss(parent, name, *key, landings, std::move(cb), ask == Mirror::Absence::kAskName);
    stale_at = (*known)->listed_at;
  }
  // The listing must be asked for: not on the caller's thread (an io_uring
  // queue's would hold every request of its CPU meanwhile).
  mirror_.Defer([this, parent, name = std::string(name), key = *key, dir, landings, stale_at,
                 cb = std::move(cb)]() mutable {
    std::shared_ptr<const OriginListing> listing;
    if (stale_at < 0) {
      listing = mirror_.FreshListing(dir);
    } else if (auto again = mirror_.ListDir(dir, stale_at)) {
      listing = *again;
    }
    auto ask = Mirror::Absence::kKnown;
    if (auto listed = EntryFromListing(key, name, listing, &ask)) return cb(std::move(*listed));
    Miss(parent, name, key, landings, std::move(cb), ask == Mirror::Absence::kAskName);
  });
}

std::optional<Entry> Vfs::KnownOriginEntry(const std::string& key) {
  std::lock_guard lock(table_mu_);
  auto it = by_key_.find(key);
  if (it == by_key_.end()) return std::nullopt;
  InodeRef inode = inodes_.Find(it->second);
  std::lock_guard il(inode->mu);
  // Reusable: a directory, a download still running, or a landed copy
  // kept outside the bucket (writeback = false). A landed in-bucket file
  // that the local lookup missed was removed: ask the origin again --
  // unless it landed moments ago, when a network filesystem's client
  // cache may simply not show it yet (this inode is the file).
  bool healthy = inode->kind == InodeKind::kOriginDir;
  if (inode->kind == InodeKind::kOriginFile && inode->OriginPart().flight) {
    if (!inode->OriginPart().flight->finished()) {
      healthy = true;
    } else {
      auto done = inode->OriginPart().flight->WaitDone();
      healthy = done && (!done->in_bucket || LandedMomentsAgo(done->landed_ns));
    }
  }
  if (!healthy) return std::nullopt;
  inode->nlookup++;
  return OriginEntry(*inode);
}

std::optional<Result<Entry>> Vfs::EntryFromListing(
    const std::string& key, std::string_view name,
    const std::shared_ptr<const OriginListing>& listing, Mirror::Absence* ask) {
  // A fresh listing of the directory from the origin answers without a
  // request: a name it lacks is not there (for a while: files keep
  // arriving at the origin), a directory needs no probe.
  if (!listing) return std::nullopt;
  const ListedEntry* e = listing->Find(name);
  // Servers leave dot names out of index pages (nginx always, Apache's
  // IndexIgnore .??*): their absence says nothing, so they are asked for.
  if (!e && !name.starts_with('.')) {
    std::size_t slash = key.rfind('/');
    *ask = mirror_.AbsenceOf(slash == std::string::npos ? "" : key.substr(0, slash), *listing);
    if (*ask == Mirror::Absence::kKnown) return Fail(ENOENT, "not in the origin's listing");
    return std::nullopt;
  }
  if (e && e->is_dir) return EntryForOriginDir(key);
  // An exact size and time (nginx JSON, a manifest): stat needs no
  // request; the download starts at the first read.
  if (e && e->size && e->mtime) return EntryForListed(key, *e);
  return std::nullopt;
}

void Vfs::Miss(const InodeRef& parent, std::string_view name, const std::string& key,
               uint64_t landings, EntryCallback cb, bool unlisted) {
  mirror_.StartHere(key, landings, [&](const std::shared_ptr<Flight>& flight) {
    flight->OnHead([this, parent, n = std::string(name), k = key, flight, unlisted,
                    cb = std::move(cb)](const Result<Resolution>& r) {
      if (!r) return cb(std::unexpected(r.error()));
      if (unlisted && (r->kind == OriginKind::kFile || r->kind == OriginKind::kDirectory)) {
        // New at the origin since its directory was listed: list it again.
        std::size_t slash = k.rfind('/');
        mirror_.ExpireListing(slash == std::string::npos ? "" : k.substr(0, slash));
      }
      switch (r->kind) {
        case OriginKind::kFile:
          if (invalidate_) {
            // If the body then fails, make the kernel forget the name so the
            // next open looks it up (and asks the origin) again.
            uint64_t parent_ino = parent->ino;
            flight->OnDone([this, parent_ino, n](const Result<FetchedObject>& done) {
              if (!done) invalidate_(parent_ino, n);
            });
          }
          return cb(EntryForOriginFile(k, *r, flight));
        case OriginKind::kDirectory:
          return cb(EntryForOriginDir(k));
        case OriginKind::kNotFound:
          return cb(Fail(ENOENT, "not found at origin"));
        case OriginKind::kLanded: {
          bool gone = false;
          auto e = LookupLocal(parent, n, &gone);
          if (e) stats_.hits++;
          return cb(std::move(e));
        }
      }
    });
  });
}

Result<struct stat> Vfs::StatInode(const InodeRef& inode) {
  {
    std::lock_guard lock(inode->mu);
    if (inode->kind == InodeKind::kLocal) {
      auto fd = PathFdLocked(inode);
      if (!fd) return std::unexpected(fd.error());
      struct stat st;
      if (fstatat((*fd)->get(), "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0)
        return FailErrno("fstat");
      AsFirstShownLocked(*inode, st);
      ShowAs(st);
      return st;
    }
    if (inode->kind == InodeKind::kOriginDir) return OriginFileAttr(*inode);
    // A remote file: once its download has landed, it is a local file.
    if (!inode->OriginPart().flight || !inode->OriginPart().flight->finished())
      return OriginFileAttr(*inode);
    auto done = inode->OriginPart().flight->WaitDone();
    if (!done || !done->in_bucket) return OriginFileAttr(*inode);
  }
  if (auto a = BecomeLocal(inode, inode->key()); !a) {
    std::lock_guard lock(inode->mu);
    return OriginFileAttr(*inode);
  }
  return StatInode(inode);
}

Result<struct stat> Vfs::GetAttr(uint64_t ino, bool by_handle, double* attr_timeout) {
  MaybeEvict();
  auto inode = Get(ino);
  if (!inode) return Fail(ESTALE, "stale inode");
  if (!by_handle) ORIGINFS_TRY(NotReplaced(inode));
  auto st = StatInode(inode);
  if (attr_timeout) {
    std::lock_guard lock(inode->mu);
    *attr_timeout = inode->kind == InodeKind::kLocal && inode->dev == bucket_dev_
                        ? options_.local_attr_timeout
                        : options_.attr_timeout;
  }
  return st;
}

uint64_t Vfs::NodeOfBucketFile(dev_t dev, ino_t ino) {
  std::lock_guard lock(table_mu_);
  return by_backing_.Find(dev, ino);
}

void Vfs::NoteOpen(uint64_t ino, bool opened, bool writer) {
  auto inode = Get(ino);
  if (!inode) return;
  auto count = [opened]<class T>(std::atomic<T>& n) {
    constexpr T kMax = std::numeric_limits<T>::max();
    T v = n.load(std::memory_order_relaxed);
    // Saturating: the maximum stays (taken as open for good), 0 stays.
    while (opened ? v != kMax : (v != 0 && v != kMax)) {
      if (n.compare_exchange_weak(v, static_cast<T>(opened ? v + 1 : v - 1),
                                  std::memory_order_relaxed))
        break;
    }
  };
  count(inode->open_handles);
  if (writer) count(inode->open_writers);
}

Result<void> Vfs::NotReplaced(const InodeRef& inode) {
  std::lock_guard lock(inode->mu);
  if (!inode->replaced || inode->kind != InodeKind::kLocal) return {};
  // Someone holds the old copy open: its fstat (which reaches us without the
  // handle) must keep working, so stat by path shows the old copy meanwhile.
  if (inode->open_handles.load(std::memory_order_relaxed) > 0) return {};
  auto pfd = PathFdLocked(inode);
  struct stat st;
  if (pfd && fstat((*pfd)->get(), &st) == 0 && st.st_nlink == 0)
    return Fail(ESTALE, "replaced by a refresh");
  return {};
}

Result<struct statvfs> Vfs::StatFs(uint64_t) {
  struct statvfs sv;
  if (fstatvfs(store_.root_fd(), &sv) != 0) return FailErrno("statfs");
  return sv;
}

}  // namespace originfs
