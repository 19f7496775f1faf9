// Inodes that began at the origin: their entries while downloading, their
// landing in the bucket, and directories only the origin has.
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

void Vfs::AsFirstShownLocked(const Inode& inode, struct stat& st) const {
  if (inode.born == InodeKind::kLocal) {
    // A bucket directory that only landings changed since (the root, most
    // often): as it was before them.
    if (S_ISDIR(st.st_mode)) store_.AsBeforeLandings(st);
    return;
  }
  if (!store_.UnchangedSinceLanding(st))
    return;  // changed since it landed (or landed too long ago to tell): as it is
  // Unchanged since its landing, which only made real what was shown before:
  // the times (and a directory's size) stay as the kernel first saw them.
  // Programs that compare a file's ctime before and after reading it (tar:
  // "file changed as we read it") would otherwise see every first read of
  // an origin file, or of a directory filled by such reads, as a change.
  if (S_ISDIR(st.st_mode)) {
    st.st_mtim = st.st_ctim = timespec{origin_dir_time_, 0};
    st.st_size = kOriginDirSize;
    st.st_nlink = 2;  // as OriginFileAttr showed it
  } else {
    st.st_ctim = timespec{inode.OriginPart().res.mtime, 0};
  }
}

struct stat Vfs::OriginFileAttr(const Inode& inode) const {
  struct stat st {};
  // A file being downloaded shows the inode number of the file its body
  // goes to, which the landed file keeps; anything else gets one that never
  // collides with a bucket inode number.
  st.st_ino = inode.kind == InodeKind::kOriginFile && inode.OriginPart().res.ino
                  ? inode.OriginPart().res.ino
                  : kSyntheticInoBit | inode.ino;
  st.st_uid = root_uid_;
  st.st_gid = root_gid_;
  st.st_blksize = 4096;
  if (inode.kind == InodeKind::kOriginDir) {
    st.st_mode = S_IFDIR | 0755;
    st.st_nlink = 2;
    st.st_size = kOriginDirSize;
    st.st_mtim.tv_sec = st.st_ctim.tv_sec = st.st_atim.tv_sec = origin_dir_time_;
  } else {
    st.st_mode = S_IFREG | 0644;
    st.st_nlink = 1;
    st.st_size = static_cast<off_t>(inode.OriginPart().res.size);
    st.st_blocks = static_cast<blkcnt_t>((inode.OriginPart().res.size + 511) / 512);
    st.st_mtim.tv_sec = st.st_ctim.tv_sec = st.st_atim.tv_sec = inode.OriginPart().res.mtime;
  }
  return st;
}

Entry Vfs::OriginEntry(const Inode& inode) const {
  Entry e;
  e.ino = inode.ino;
  e.attr = OriginFileAttr(inode);
  // While the body is still arriving the name is not cached: if the download
  // then fails, the next open must look the name up (and ask the origin)
  // again, whether or not the kernel has processed our invalidation yet.
  bool arriving = inode.OriginPart().flight && !inode.OriginPart().flight->finished();
  e.entry_timeout = arriving ? 0 : options_.entry_timeout;
  e.attr_timeout = options_.attr_timeout;
  return e;
}

Entry Vfs::EntryForOriginFile(const std::string& key, const Resolution& res,
                              std::shared_ptr<Flight> flight) {
  InodeRef inode;
  Entry e;
  bool new_flight = false;
  {
    std::lock_guard lock(table_mu_);
    inode = KeyedInodeLocked(key, InodeKind::kOriginFile);
    std::lock_guard il(inode->mu);
    if (inode->kind != InodeKind::kLocal) {
      inode->kind = InodeKind::kOriginFile;
      if (inode->OriginPart().flight !=
          flight) {  // a new download: forget the old one's descriptors
        inode->io.reset();
        StopWatchingLandingLocked(*inode);
        new_flight = true;
      }
      inode->OriginPart().flight = flight;
      inode->OriginPart().res = res;
    }
    e = OriginEntry(*inode);
  }
  if (new_flight) WatchLanding(inode, flight);
  return e;
}

Entry Vfs::EntryForListed(const std::string& key, const ListedEntry& listed) {
  std::lock_guard lock(table_mu_);
  InodeRef inode = KeyedInodeLocked(key, InodeKind::kOriginFile);
  std::lock_guard il(inode->mu);
  if (inode->kind == InodeKind::kOriginFile && !inode->OriginPart().flight) {
    inode->OriginPart().res.kind = OriginKind::kFile;
    inode->OriginPart().res.size = *listed.size;
    inode->OriginPart().res.mtime = *listed.mtime;
  }
  return OriginEntry(*inode);
}

// Removes a remote inode's staging-file entry from by_backing_ (table_mu_ and
// inode.mu held).
void Vfs::StopWatchingLandingLocked(Inode& inode) {
  if (!inode.OriginPart().landing_file) return;
  by_backing_.EraseIf(inode.dev, inode.backing_ino, inode.ino);
  inode.dev = 0;
  inode.backing_ino = 0;
  inode.OriginPart().landing_file.reset();
  inode.OriginPart().landing_flight = nullptr;
}

// The next lookup of a name whose body is arriving (such entries are not
// cached by the kernel) must find this same inode, also once the object has
// landed in the bucket: the staging file is the committed file's inode, so it
// is entered in by_backing_ as soon as it exists (and the inode becomes a
// local one on its next getattr, as before).
void Vfs::WatchLanding(const InodeRef& inode, const std::shared_ptr<Flight>& flight) {
  std::weak_ptr<Inode> weak = inode;
  std::weak_ptr<Flight> weak_flight = flight;
  flight->OnStreamOrDone([this, weak, weak_flight] {
    InodeRef in = weak.lock();
    auto fl = weak_flight.lock();
    if (!in || !fl || fl->finished()) return;
    auto file = fl->stream_file();
    struct stat st;
    if (!file || fstat(file->get(), &st) != 0) return;
    std::lock_guard lock(table_mu_);
    std::lock_guard il(in->mu);
    if (in->kind != InodeKind::kOriginFile || in->OriginPart().flight != fl ||
        in->OriginPart().landing_file)
      return;
    if (!by_backing_.Insert(st.st_dev, st.st_ino, in->ino)) return;
    in->dev = st.st_dev;
    in->backing_ino = st.st_ino;
    in->OriginPart().landing_file = std::move(file);
    in->OriginPart().landing_flight = fl.get();
    if (in->OriginPart().res.ino == 0) {  // shown with a number of its own (known from a listing)
      std::lock_guard al(alias_mu_);
      dir_alias_[{st.st_dev, st.st_ino}] = kSyntheticInoBit | in->ino;
      any_alias_ = true;
    }
  });
  const Flight* owner = flight.get();
  flight->OnDone([this, weak, owner, key = flight->key()](const Result<FetchedObject>& r) {
    InodeRef in = weak.lock();
    if (r && r->in_bucket) {
      // Landing made the origin directories above it in the bucket: they
      // become those bucket directories, under the numbers already shown.
      AncestorsBecomeLocal(key);
      // And the file becomes the bucket file now, not at its next getattr:
      // its staging and read descriptors close, and from now on it is one
      // of the descriptor cache's (a warm of a million keys the kernel
      // remembers must not hold two descriptors for each).
      if (in) NoteIfLanded(in);
      return;
    }
    if (!in) return;
    // Failed, or kept outside the bucket: the staging inode is not a bucket
    // file. Only this flight's entry goes (a newer download may have its own).
    std::lock_guard lock(table_mu_);
    std::lock_guard il(in->mu);
    if (in->kind == InodeKind::kOriginFile && in->OriginPart().landing_flight == owner)
      StopWatchingLandingLocked(*in);
    // Kept in the object cache (writeback = false): the inode lets go of the
    // download, whose result holds the cache file "in use" (never evicted);
    // the next open finds it in the cache, or fetches it again.
    if (r && in->kind == InodeKind::kOriginFile && in->OriginPart().flight.get() == owner) {
      in->OriginPart().flight = nullptr;
      if (in->io && in->io->read.streaming.get() == owner) in->io.reset();
    }
  });
}

Entry Vfs::EntryForOriginDir(const std::string& key) {
  std::lock_guard lock(table_mu_);
  InodeRef inode = KeyedInodeLocked(key, InodeKind::kOriginDir);
  std::lock_guard il(inode->mu);
  return OriginEntry(*inode);
}

Result<void> Vfs::BecomeLocal(const InodeRef& inode, const std::string& key) {
  auto fd = store_.OpenKey(key, O_PATH);
  if (!fd) return std::unexpected(fd.error());
  UniqueFd owned(*fd);
  struct stat st;
  if (fstatat(owned.get(), "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0)
    return FailErrno("fstat");
  std::lock_guard lock(table_mu_);
  std::lock_guard il(inode->mu);
  if (inode->kind == InodeKind::kLocal) return {};
  // Shown so far with a number of its own (an origin directory, a file
  // known from a listing before any download): it keeps that number.
  bool own_number = (inode->kind == InodeKind::kOriginDir && S_ISDIR(st.st_mode)) ||
                    (inode->kind == InodeKind::kOriginFile && inode->OriginPart().res.ino == 0 &&
                     !S_ISDIR(st.st_mode));
  if (own_number) {
    std::lock_guard al(alias_mu_);
    dir_alias_[{st.st_dev, st.st_ino}] = kSyntheticInoBit | inode->ino;
    any_alias_ = true;
  }
  // The staging inode it was entered under may not be the bucket file (a
  // local file won, or a refresh replaced it): that entry goes before the
  // staging file, which pins its number, is closed.
  StopWatchingLandingLocked(*inode);
  inode->kind = InodeKind::kLocal;
  if (handles_ok_) TakeHandle(*inode, owned.get());
  inode->fd = std::make_shared<UniqueFd>(owned.Release());
  if (!inode->handle.empty()) Cached(inode);
  inode->dev = st.st_dev;
  inode->backing_ino = st.st_ino;
  if (inode->OriginPart().flight && inode->OriginPart().flight->finished()) {
    if (auto done = inode->OriginPart().flight->WaitDone(); done)
      inode->OriginPart().landed_ns = done->landed_ns;
  }
  inode->OriginPart().flight.reset();
  // A copy-up may have changed the backing file: reopen on next use.
  inode->io.reset();
  by_backing_.Insert(st.st_dev, st.st_ino, inode->ino);
  if (auto k = by_key_.find(inode->key()); k != by_key_.end() && k->second == inode->ino)
    by_key_.erase(k);
  return {};
}

Result<void> Vfs::WaitLanded(const InodeRef& inode) {
  std::unique_lock lock(inode->mu);
  InodeKind kind = inode->kind;
  std::string key = inode->key();
  if (kind == InodeKind::kLocal) return {};
  if (kind == InodeKind::kOriginDir) {
    lock.unlock();
    auto fd = store_.MakeDirs(key);
    if (!fd) return std::unexpected(fd.error());
    close(*fd);
    AncestorsBecomeLocal(key);
    return BecomeLocal(inode, key);
  }
  auto flight = inode->OriginPart().flight;
  bool started = false;
  if (!flight || (flight->finished() && !flight->WaitDone())) {
    flight = mirror_.Start(key);
    inode->OriginPart().flight = flight;
    started = true;
  }
  lock.unlock();
  if (started) WatchLanding(inode, flight);
  auto done = flight->WaitDone();
  if (!done) return std::unexpected(done.error());
  if (!done->in_bucket) {
    // writeback = false: a change makes it a local file (copy-up).
    auto c = store_.CommitCopy(done->temp_file->get(), key, inode->OriginPart().res.mtime);
    if (!c && c.error().code != EEXIST) return c;
  }
  return BecomeLocal(inode, key);
}

Result<void> Vfs::WaitChildLanded(const InodeRef& parent, std::string_view name) {
  auto key = ChildKey(parent, name);
  if (!key) return {};
  InodeRef child;
  {
    std::lock_guard lock(table_mu_);
    if (auto it = by_key_.find(*key); it != by_key_.end()) child = inodes_.Find(it->second);
  }
  if (child) return WaitLanded(child);
  return {};
}

Result<std::shared_ptr<UniqueFd>> Vfs::DirFd(const InodeRef& parent) {
  if (auto m = WaitLanded(parent); !m) return std::unexpected(m.error());
  std::lock_guard lock(parent->mu);
  return PathFdLocked(parent);
}

void Vfs::NoteIfLanded(const InodeRef& inode) {
  std::string key;
  {
    std::lock_guard lock(inode->mu);
    if (inode->kind != InodeKind::kOriginFile || !inode->OriginPart().flight ||
        !inode->OriginPart().flight->finished())
      return;
    auto done = inode->OriginPart().flight->WaitDone();
    if (!done || !done->in_bucket) return;
    key = inode->key();
  }
  (void)BecomeLocal(inode, key);
}

bool Vfs::OriginDirectory(const InodeRef& inode) {
  {
    std::lock_guard lock(inode->mu);
    if (inode->kind == InodeKind::kOriginDir || inode->born == InodeKind::kOriginDir) return true;
    if (inode->kind != InodeKind::kLocal) return false;
  }
  // A bucket directory this mount has not seen at the origin (found after a
  // remount) is still the origin's if the index says so.
  auto key = KeyOf(inode->ino);
  if (!key || key->empty() || !mirror_.HasRule(*key)) return false;
  if (auto s = StatInode(inode); !s || !S_ISDIR(s->st_mode)) return false;
  if (!mirror_.KnownOriginDirectory(*key)) return false;
  std::lock_guard lock(inode->mu);
  inode->born = InodeKind::kOriginDir;
  return true;
}

// The inode the kernel knows for parent/name, if any: an origin-only one by
// its key, else a bucket entry by its backing inode.
Vfs::InodeRef Vfs::ChildInode(const InodeRef& parent, std::string_view name,
                              const Result<std::string>& key) {
  if (key) {
    std::lock_guard lock(table_mu_);
    if (auto it = by_key_.find(*key); it != by_key_.end()) return inodes_.Find(it->second);
  }
  std::string n(name);
  struct stat st;
  {
    std::lock_guard lock(parent->mu);
    if (parent->kind != InodeKind::kLocal) return nullptr;
    auto pfd = PathFdLocked(parent);
    if (!pfd || fstatat((*pfd)->get(), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return nullptr;
  }
  std::lock_guard lock(table_mu_);
  return inodes_.Find(by_backing_.Find(st.st_dev, st.st_ino));
}

void Vfs::AncestorsBecomeLocal(std::string_view key) {
  for (std::size_t slash = key.find('/'); slash != std::string_view::npos;
       slash = key.find('/', slash + 1)) {
    std::string dir(key.substr(0, slash));
    InodeRef inode;
    {
      std::lock_guard lock(table_mu_);
      if (auto it = by_key_.find(dir); it != by_key_.end()) inode = inodes_.Find(it->second);
    }
    if (!inode) continue;
    {
      std::lock_guard lock(inode->mu);
      if (inode->kind != InodeKind::kOriginDir) continue;
    }
    (void)BecomeLocal(inode, dir);
  }
}

void Vfs::OpenFetched(const InodeRef& inode, int flags, const Result<FetchedObject>& r,
                      const FileCallback& cb) {
  if (!r) return cb(std::unexpected(r.error()));
  bool writes = (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
  if (r->in_bucket || writes) {
    auto m = WaitLanded(inode);
    if (!m) return cb(std::unexpected(m.error()));
    return Open(inode->ino, flags, cb);
  }
  int fd = open(ProcPath(r->temp_file->get()).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return cb(FailErrno("open fetched copy"));
  cb(FileRef{std::make_shared<UniqueFd>(fd), nullptr, 0});
}

}  // namespace originfs
