// Operations on local names, passed through to the bucket (an origin file is
// landed first where the operation needs the bytes).
#include <fcntl.h>
#include <stdio.h>
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

Result<struct stat> Vfs::SetAttr(uint64_t ino, const struct stat& attr, int to_set,
                                 std::optional<int> fh) {
  auto inode = Get(ino);
  if (!inode) return Fail(ESTALE, "stale inode");
  if (!fh) ORIGINFS_TRY(NotReplaced(inode));
  if (auto m = WaitLanded(inode); !m) return std::unexpected(m.error());
  std::shared_ptr<UniqueFd> held;  // the inode's descriptor, held while used
  {
    std::lock_guard lock(inode->mu);
    auto fd = PathFdLocked(inode);
    if (!fd) return std::unexpected(fd.error());
    held = *fd;
  }
  int ifd = held->get();
  std::string proc = ProcPath(ifd);
  if (to_set & kSetMode) {
    auto r =
        Check(fh ? fchmod(*fh, attr.st_mode) : fchmodat(AT_FDCWD, proc.c_str(), attr.st_mode, 0),
              "chmod");
    if (!r) return std::unexpected(r.error());
  }
  if (to_set & (kSetUid | kSetGid)) {
    uid_t uid = (to_set & kSetUid) ? attr.st_uid : static_cast<uid_t>(-1);
    gid_t gid = (to_set & kSetGid) ? attr.st_gid : static_cast<gid_t>(-1);
    auto r = Check(fchownat(ifd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW), "chown");
    if (!r) return std::unexpected(r.error());
  }
  if (to_set & kSetSize) {
    auto r =
        Check(fh ? ftruncate(*fh, attr.st_size) : truncate(proc.c_str(), attr.st_size), "truncate");
    if (!r) return std::unexpected(r.error());
  }
  if (to_set & (kSetAtime | kSetMtime | kSetAtimeNow | kSetMtimeNow)) {
    timespec tv[2];
    tv[0].tv_sec = tv[1].tv_sec = 0;
    tv[0].tv_nsec = tv[1].tv_nsec = UTIME_OMIT;
    if (to_set & kSetAtimeNow)
      tv[0].tv_nsec = UTIME_NOW;
    else if (to_set & kSetAtime)
      tv[0] = attr.st_atim;
    if (to_set & kSetMtimeNow)
      tv[1].tv_nsec = UTIME_NOW;
    else if (to_set & kSetMtime)
      tv[1] = attr.st_mtim;
    int rc;
    if (fh) {
      rc = futimens(*fh, tv);
    } else {
      struct stat st;
      rc = fstatat(ifd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
      if (rc == 0)
        rc = S_ISLNK(st.st_mode) ? utimensat(ifd, "", tv, AT_EMPTY_PATH)
                                 : utimensat(AT_FDCWD, proc.c_str(), tv, 0);
    }
    auto r = Check(rc, "utimens");
    if (!r) return std::unexpected(r.error());
  }
  return StatInode(inode);
}

Result<std::string> Vfs::ReadLink(uint64_t ino) {
  auto inode = Get(ino);
  if (!inode) return Fail(ESTALE, "stale inode");
  std::lock_guard lock(inode->mu);
  if (inode->kind != InodeKind::kLocal) return Fail(EINVAL, "not a symlink");
  char buf[PATH_MAX + 1];
  auto fd = PathFdLocked(inode);
  if (!fd) return std::unexpected(fd.error());
  ssize_t n = readlinkat((*fd)->get(), "", buf, PATH_MAX);
  if (n < 0) return FailErrno("readlink");
  return std::string(buf, static_cast<std::size_t>(n));
}

Result<Entry> Vfs::MkNod(const Caller& c, uint64_t parent_ino, std::string_view name, mode_t mode,
                         dev_t rdev) {
  auto parent = Get(parent_ino);
  if (!parent) return Fail(ESTALE, "stale parent");
  if (Reserved(parent_ino, name)) return Fail(EPERM, "reserved name");
  auto dir = DirFd(parent);
  if (!dir) return std::unexpected(dir.error());
  std::string n(name);
  auto whiteout = ClearWhiteoutFor((*dir)->get(), n);
  if (!whiteout) return std::unexpected(whiteout.error());
  {
    FsIdGuard id(c);
    if (mknodat((*dir)->get(), n.c_str(), mode, rdev) != 0) return FailErrno("mknod");
  }
  if (*whiteout) BucketStore::MarkOverWhiteout((*dir)->get(), n);
  int fd = openat((*dir)->get(), n.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return FailErrno("open new node");
  return EntryForFd(UniqueFd(fd));
}

Result<Entry> Vfs::MkDir(const Caller& c, uint64_t parent_ino, std::string_view name, mode_t mode) {
  auto parent = Get(parent_ino);
  if (!parent) return Fail(ESTALE, "stale parent");
  if (Reserved(parent_ino, name)) return Fail(EPERM, "reserved name");
  auto dir = DirFd(parent);
  if (!dir) return std::unexpected(dir.error());
  std::string n(name);
  auto whiteout = ClearWhiteoutFor((*dir)->get(), n);
  if (!whiteout) return std::unexpected(whiteout.error());
  {
    FsIdGuard id(c);
    if (mkdirat((*dir)->get(), n.c_str(), mode) != 0) return FailErrno("mkdir");
  }
  if (*whiteout) {
    // Made where a removed origin directory was: nothing of the origin's
    // comes back below it.
    UniqueFd made(
        openat((*dir)->get(), n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!made) return FailErrno("open new directory");
    ORIGINFS_TRY(BucketStore::SetOpaque(made.get(), true));
  }
  int fd = openat((*dir)->get(), n.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return FailErrno("open new directory");
  return EntryForFd(UniqueFd(fd));
}

Result<Entry> Vfs::Symlink(const Caller& c, std::string_view target, uint64_t parent_ino,
                           std::string_view name) {
  auto parent = Get(parent_ino);
  if (!parent) return Fail(ESTALE, "stale parent");
  if (Reserved(parent_ino, name)) return Fail(EPERM, "reserved name");
  auto dir = DirFd(parent);
  if (!dir) return std::unexpected(dir.error());
  std::string n(name), t(target);
  auto whiteout = ClearWhiteoutFor((*dir)->get(), n);
  if (!whiteout) return std::unexpected(whiteout.error());
  {
    FsIdGuard id(c);
    if (symlinkat(t.c_str(), (*dir)->get(), n.c_str()) != 0) return FailErrno("symlink");
  }
  if (*whiteout) BucketStore::MarkOverWhiteout((*dir)->get(), n);
  int fd = openat((*dir)->get(), n.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return FailErrno("open new symlink");
  return EntryForFd(UniqueFd(fd));
}

Result<Entry> Vfs::Link(uint64_t ino, uint64_t new_parent_ino, std::string_view new_name) {
  auto inode = Get(ino);
  auto parent = Get(new_parent_ino);
  if (!inode || !parent) return Fail(ESTALE, "stale inode");
  if (Reserved(new_parent_ino, new_name)) return Fail(EPERM, "reserved name");
  if (auto m = WaitLanded(inode); !m) return std::unexpected(m.error());
  auto dir = DirFd(parent);
  if (!dir) return std::unexpected(dir.error());
  std::shared_ptr<UniqueFd> held;  // the inode's descriptor, held while used
  {
    std::lock_guard lock(inode->mu);
    auto fd = PathFdLocked(inode);
    if (!fd) return std::unexpected(fd.error());
    held = *fd;
  }
  int ifd = held->get();
  std::string n(new_name);
  auto whiteout = ClearWhiteoutFor((*dir)->get(), n);
  if (!whiteout) return std::unexpected(whiteout.error());
  if (linkat(AT_FDCWD, ProcPath(ifd).c_str(), (*dir)->get(), n.c_str(), AT_SYMLINK_FOLLOW) != 0)
    return FailErrno("link");
  if (*whiteout) BucketStore::MarkOverWhiteout((*dir)->get(), n);
  int fd = fcntl(ifd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return FailErrno("dup");
  return EntryForFd(UniqueFd(fd));
}

Result<void> Vfs::Unlink(uint64_t parent_ino, std::string_view name) {
  auto parent = Get(parent_ino);
  if (!parent) return Fail(ESTALE, "stale parent");
  if (Reserved(parent_ino, name)) return Fail(EPERM, "reserved name");
  (void)WaitChildLanded(parent, name);  // removed all the same if it could not land
  auto key = ChildKey(parent, name);
  auto dir = DirFd(parent);
  if (!dir) return std::unexpected(dir.error());
  PinChild(parent, name, key);
  // A name the origin has leaves a whiteout, so it stays removed.
  if (key && (OriginHasName(*key) || BucketStore::MadeOverWhiteout((*dir)->get(), name)))
    return UnlinkLeavingWhiteout((*dir)->get(), name, *key);
  std::string n(name);
  if (unlinkat((*dir)->get(), n.c_str(), 0) != 0) return FailErrno("unlink");
  if (key) {
    mirror_.ForgetLanded(*key);
  }
  return {};
}

Result<void> Vfs::RmDir(uint64_t parent_ino, std::string_view name) {
  auto parent = Get(parent_ino);
  if (!parent) return Fail(ESTALE, "stale parent");
  if (Reserved(parent_ino, name)) return Fail(EPERM, "reserved name");
  auto key = ChildKey(parent, name);
  auto child = ChildInode(parent, name, key);
  auto dir = DirFd(parent);
  if (!dir) return std::unexpected(dir.error());
  // A directory the origin has leaves a whiteout (its files stay there).
  if (key && ((child && OriginDirectory(child)) || OriginHasName(*key) ||
              BucketStore::MadeOverWhiteout((*dir)->get(), name)))
    return RmDirLeavingWhiteout(child, (*dir)->get(), name, *key);
  std::string n(name);
  struct stat st;
  bool known = fstatat((*dir)->get(), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
  if (unlinkat((*dir)->get(), n.c_str(), AT_REMOVEDIR) != 0) {
    // Whiteouts of names removed in it (the index forgot it was the origin's).
    if (errno == ENOTEMPTY && key) return RmDirLeavingWhiteout(child, (*dir)->get(), name, *key);
    return FailErrno("rmdir");
  }
  if (known && any_alias_) {
    std::lock_guard lock(alias_mu_);
    dir_alias_.erase({st.st_dev, st.st_ino});
  }
  return {};
}

Result<void> Vfs::Rename(uint64_t parent_ino, std::string_view name, uint64_t new_parent_ino,
                         std::string_view new_name, unsigned int flags) {
  auto parent = Get(parent_ino);
  auto new_parent = Get(new_parent_ino);
  if (!parent || !new_parent) return Fail(ESTALE, "stale parent");
  if (Reserved(parent_ino, name) || Reserved(new_parent_ino, new_name))
    return Fail(EPERM, "reserved name");
  auto key = ChildKey(parent, name);
  // The origin's part of a directory cannot move with it (its files would
  // stay under the old name): EXDEV, as overlayfs answers for lower
  // directories; mv then copies what the directory shows and removes it.
  if (auto child = ChildInode(parent, name, key); child && OriginDirectory(child))
    return Fail(EXDEV, fmt::format("rename {}: the origin has this directory",
                                   key ? *key : std::string(name)));
  auto new_key = ChildKey(new_parent, new_name);
  auto target_dir = ChildInode(new_parent, new_name, new_key);
  if (target_dir && !OriginDirectory(target_dir)) target_dir = nullptr;
  // What moves must be here: an origin file that cannot land is EIO (not
  // ENOENT: it exists). What it replaces needs no bytes.
  if (auto w = WaitChildLanded(parent, name); !w) return w;
  (void)WaitChildLanded(new_parent, new_name);
  auto from = DirFd(parent);
  if (!from) return std::unexpected(from.error());
  auto to = DirFd(new_parent);
  if (!to) return std::unexpected(to.error());
  if (target_dir && new_key) {
    // Replacing an origin directory: as on any filesystem, by a directory
    // and only while it is empty (as listed); it leaves a whiteout, and
    // the directory moved there is opaque (below).
    if (flags & RENAME_EXCHANGE)
      return Fail(EXDEV, fmt::format("rename onto {}: the origin has this directory", *new_key));
    if (flags & RENAME_NOREPLACE) return Fail(EEXIST, "rename: target exists");
    struct stat src;
    std::string a(name);
    if (fstatat((*from)->get(), a.c_str(), &src, AT_SYMLINK_NOFOLLOW) != 0)
      return FailErrno("rename");
    if (!S_ISDIR(src.st_mode)) return Fail(EISDIR, "rename: target is a directory");
    ORIGINFS_TRY(RmDirLeavingWhiteout(target_dir, (*to)->get(), new_name, *new_key));
  }
  PinChild(new_parent, new_name, new_key);
  std::string a(name), b(new_name);
  // A whiteout at the target is no name: a directory or RENAME_NOREPLACE
  // goes where it was, and what is moved there is marked as made over one
  // (a directory opaque, a file kOverWhiteoutXattr).
  struct stat target;
  bool dir_onto_whiteout = false, file_onto_whiteout = false;
  bool target_there = fstatat((*to)->get(), b.c_str(), &target, AT_SYMLINK_NOFOLLOW) == 0;
  // Onto an origin name the bucket does not have (its download failed, or
  // never ran): what moves there takes its place as over a whiteout, so that
  // removing it later keeps the name removed.
  bool onto_origin_name = !target_there && !(flags & RENAME_EXCHANGE) && new_key && !target_dir &&
                          OriginHasName(*new_key);
  if (target_there && S_ISDIR(target.st_mode) && BucketStore::MadeOverWhiteout((*to)->get(), b)) {
    // Replacing an opaque directory: what moves there is opaque in its turn.
    dir_onto_whiteout = true;
  } else if (target_there && BucketStore::IsWhiteout(target)) {
    if (flags & RENAME_EXCHANGE) return Fail(ENOENT, "rename: no such target");
    struct stat src;
    dir_onto_whiteout =
        fstatat((*from)->get(), a.c_str(), &src, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(src.st_mode);
    file_onto_whiteout = !dir_onto_whiteout;
    if (dir_onto_whiteout || (flags & RENAME_NOREPLACE))
      if (auto w = ClearWhiteoutFor((*to)->get(), b); !w) return std::unexpected(w.error());
  }
  bool leave_whiteout = key && !(flags & RENAME_EXCHANGE) &&
                        (OriginHasName(*key) || BucketStore::MadeOverWhiteout((*from)->get(), a));
  // An entry standing in an origin name's place (made over a whiteout, or
  // the origin's own) hands that place to what replaces it or is swapped
  // in: its later removal must leave the name removed as well.
  auto in_place = [&](int dir, const std::string& n, const Result<std::string>& k) {
    return k && (BucketStore::MadeOverWhiteout(dir, n) || OriginHasName(*k));
  };
  bool target_in_place = target_there && !BucketStore::IsWhiteout(target) &&
                         !S_ISDIR(target.st_mode) && in_place((*to)->get(), b, new_key);
  bool source_in_place = (flags & RENAME_EXCHANGE) && in_place((*from)->get(), a, key);
  auto move = [&]() -> Result<void> {
    if (leave_whiteout)
      return RenameLeavingWhiteout((*from)->get(), a, (*to)->get(), b, flags, *key);
    return Check(renameat2((*from)->get(), a.c_str(), (*to)->get(), b.c_str(), flags), "rename");
  };
  auto moved_there = move();
  if (!moved_there && moved_there.error().code == ENOTEMPTY && new_key) {
    // The target directory holds whiteouts only (names removed in it): it
    // is empty as listed, and is replaced as such.
    ORIGINFS_TRY(RmDirLeavingWhiteout(ChildInode(new_parent, new_name, new_key), (*to)->get(),
                                      new_name, *new_key));
    if (auto w = ClearWhiteoutFor((*to)->get(), b); !w) return std::unexpected(w.error());
    dir_onto_whiteout = true;
    moved_there = move();
  }
  if (!moved_there) return moved_there;
  if (file_onto_whiteout || onto_origin_name || target_in_place)
    BucketStore::MarkMadeOverWhiteout((*to)->get(), b);
  if (source_in_place) BucketStore::MarkMadeOverWhiteout((*from)->get(), a);
  if (dir_onto_whiteout) {
    UniqueFd moved(
        openat((*to)->get(), b.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (moved) (void)BucketStore::SetOpaque(moved.get(), true);
  }
  if (key && !leave_whiteout) mirror_.ForgetLanded(*key);  // else kept: see UnlinkLeavingWhiteout
  return {};
}

void Vfs::Open(uint64_t ino, int flags, FileCallback cb) {
  auto inode = Get(ino);
  if (!inode) return cb(Fail(ESTALE, "stale inode"));
  switch (RevalidationDue(inode, flags)) {
    case Revalidation::kNone:
      break;
    case Revalidation::kBackground:
      mirror_.Defer([this, inode] { (void)Revalidate(inode); });
      break;
    case Revalidation::kWait:
      // Off the caller's thread (an io_uring queue's must not wait). A file
      // the answer replaced is ESTALE to this open, and the kernel looks the
      // name up again and opens the new one.
      return mirror_.Defer([this, inode, flags, cb = std::move(cb)]() mutable {
        (void)Revalidate(inode);
        OpenInode(inode, flags, std::move(cb));
      });
  }
  OpenInode(inode, flags, std::move(cb));
}

void Vfs::OpenInode(const InodeRef& inode, int flags, FileCallback cb) {
  std::unique_lock lock(inode->mu);
  switch (inode->kind) {
    case InodeKind::kLocal: {
      int f = (flags & ~(O_CREAT | O_EXCL | O_NOCTTY | O_NOFOLLOW)) | O_CLOEXEC;
      auto pfd = PathFdLocked(inode);
      if (!pfd) return cb(std::unexpected(pfd.error()));
      struct stat st;
      if (inode->replaced && fstat((*pfd)->get(), &st) == 0 && st.st_nlink == 0)
        return cb(Fail(ESTALE, "replaced by a refresh"));  // (no other name links it)
      int fd = open(ProcPath((*pfd)->get()).c_str(), f);
      lock.unlock();
      if (fd < 0) return cb(FailErrno("open"));
      return cb(FileRef{std::make_shared<UniqueFd>(fd), nullptr, 0});
    }
    case InodeKind::kOriginDir:
      return cb(Fail(EISDIR, "is a directory"));
    case InodeKind::kOriginFile:
      break;
  }
  auto flight = inode->OriginPart().flight;
  bool started = false;
  if (flight && flight->finished()) {
    if (auto done = flight->WaitDone(); !done) {
      // The attempt the lookup started failed after its head: this open is
      // told (as a read would be); the next one tries again.
      if (flight->ReportFailure()) {
        lock.unlock();
        return cb(std::unexpected(done.error()));
      }
      flight = nullptr;
    }
  }
  if (!flight) {
    flight = mirror_.Start(inode->key());  // none yet, or the last attempt failed
    inode->OriginPart().flight = flight;
    started = true;
  }
  lock.unlock();
  // The next lookup of the name must find this inode, also once it landed.
  if (started) WatchLanding(inode, flight);
  auto when_done = [this, inode, flags, cb](const Result<FetchedObject>& r) {
    OpenFetched(inode, flags, r, cb);
  };
  bool read_only = (flags & O_ACCMODE) == O_RDONLY && !(flags & O_TRUNC);
  if (!read_only) return flight->OnDone(when_done);
  // A reader need not wait for the whole object: it follows the download.
  flight->OnHead([this, inode, flight, cb, when_done](const Result<Resolution>& head) {
    if (!head || head->kind != OriginKind::kFile) return flight->OnDone(when_done);
    uint64_t size = head->size;
    bool changed = false;
    {
      // Shown from a listing until now: the origin's answer is what stat
      // says from here on, and the kernel is told to ask again, so a file
      // that grew since it was listed is not cut at the listed size.
      std::lock_guard lock(inode->mu);
      auto& res = inode->OriginPart().res;
      if (inode->kind == InodeKind::kOriginFile && inode->OriginPart().flight == flight &&
          (res.size != head->size || res.mtime != head->mtime)) {
        res.size = head->size;
        res.mtime = head->mtime;
        changed = true;
      }
    }
    if (changed && invalidate_attrs_) invalidate_attrs_(inode->ino);
    // The head is published just before the staging file exists: wait for that.
    flight->OnStreamOrDone([flight, cb, when_done, size] {
      if (auto src = flight->stream_file(); src && !flight->finished()) {
        // A read-only description of its own: the staging file becomes the
        // bucket file, and a writable descriptor held by a reader would make
        // exec of it fail with ETXTBSY (PassthroughTest.BucketProgramsRun...).
        int fd = open(ProcPath(src->get()).c_str(), O_RDONLY | O_CLOEXEC);
        if (fd >= 0) return cb(FileRef{std::make_shared<UniqueFd>(fd), flight, size});
      }
      flight->OnDone(when_done);
    });
  });
}

Result<FileRef> Vfs::LocalIoFile(const InodeRef& inode, bool write) {
  std::lock_guard lock(inode->mu);
  if (inode->kind != InodeKind::kLocal) return Fail(EIO, "not local");
  auto& io = inode->IoPart();
  auto& slot = write ? io.write_fd : io.read.fd;
  if (!slot) {
    auto pfd = PathFdLocked(inode);
    if (!pfd) return std::unexpected(pfd.error());
    std::string proc = ProcPath((*pfd)->get());
    int fd = open(proc.c_str(), (write ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    if (fd < 0 && write && errno == EACCES) fd = open(proc.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return FailErrno("open for I/O");
    slot = std::make_shared<UniqueFd>(fd);
  }
  return FileRef{slot, nullptr, 0};
}

Result<FileRef> Vfs::IoFileSync(uint64_t ino, bool write) {
  MaybeEvict();
  auto inode = Get(ino);
  if (!inode) return Fail(ESTALE, "stale inode");
  {
    std::lock_guard lock(inode->mu);
    if (inode->kind == InodeKind::kOriginDir) return Fail(EISDIR, "is a directory");
  }
  if (auto m = WaitLanded(inode); !m) return std::unexpected(m.error());
  return LocalIoFile(inode, write);
}

void Vfs::IoFileForRead(uint64_t ino, FileCallback cb) {
  MaybeEvict();
  auto inode = Get(ino);
  if (!inode) return cb(Fail(ESTALE, "stale inode"));
  std::unique_lock lock(inode->mu);
  if (inode->kind == InodeKind::kLocal) {
    lock.unlock();
    return cb(LocalIoFile(inode, false));
  }
  if (inode->kind == InodeKind::kOriginDir) return cb(Fail(EISDIR, "is a directory"));
  if (inode->io && inode->io->read.fd) {
    // A failed download stays failed for reads (the kernel retries a failed
    // page within one read(2)); the next lookup of the name asks again.
    return cb(inode->io->read);
  }
  if (inode->OriginPart().flight && inode->OriginPart().flight->finished()) {
    if (auto done = inode->OriginPart().flight->WaitDone(); !done)
      return cb(std::unexpected(done.error()));
  }
  lock.unlock();
  // First read of an origin-only file: what an open would do, kept for the next reads.
  Open(ino, O_RDONLY, [inode, cb](Result<FileRef> r) {
    if (!r) return cb(std::unexpected(r.error()));
    std::unique_lock lock(inode->mu);
    auto& part = inode->IoPart();
    if (!part.read.fd) part.read = std::move(*r);
    FileRef io = part.read;
    lock.unlock();
    cb(io);
  });
}

Result<std::pair<Entry, int>> Vfs::Create(const Caller& c, uint64_t parent_ino,
                                          std::string_view name, mode_t mode, int flags) {
  auto parent = Get(parent_ino);
  if (!parent) return Fail(ESTALE, "stale parent");
  if (Reserved(parent_ino, name)) return Fail(EPERM, "reserved name");
  auto dir = DirFd(parent);
  if (!dir) return std::unexpected(dir.error());
  std::string n(name);
  auto whiteout = ClearWhiteoutFor((*dir)->get(), n);
  if (!whiteout) return std::unexpected(whiteout.error());
  int fd;
  {
    FsIdGuard id(c);
    // The caller's O_NOFOLLOW stays: a symlink put in the bucket since the
    // kernel's lookup must not be followed (SecurityTest.CreateKeepsNoFollow...).
    fd = openat((*dir)->get(), n.c_str(), flags | O_CREAT | O_CLOEXEC, mode);
  }
  if (fd < 0) return FailErrno("create");
  UniqueFd file(fd);
  if (*whiteout) BucketStore::MarkOverWhiteout((*dir)->get(), n);
  int pfd = openat((*dir)->get(), n.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (pfd < 0) return FailErrno("open created file");
  auto e = EntryForFd(UniqueFd(pfd));
  if (!e) return std::unexpected(e.error());
  return std::make_pair(*e, file.Release());
}

}  // namespace originfs
