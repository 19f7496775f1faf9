#include "fs/fuse_ops.h"

#include "fs/kernel_channel.h"
#include "fs/notifier.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <vector>

#include <spdlog/spdlog.h>

namespace originfs {
namespace {

FuseContext& Ctx(fuse_req_t req) { return *static_cast<FuseContext*>(fuse_req_userdata(req)); }

// For the requests that create: the caller's supplementary groups too (from
// /proc, so only for callers other than root, and only when the daemon can
// take them on).
Caller CallerOf(fuse_req_t req) {
  const fuse_ctx* c = fuse_req_ctx(req);
  Caller caller{c->uid, c->gid, std::nullopt};
  if (c->uid == 0 || geteuid() != 0) return caller;
  std::vector<gid_t> groups(32);
  int n = fuse_req_getgroups(req, static_cast<int>(groups.size()), groups.data());
  if (n > static_cast<int>(groups.size())) {
    groups.resize(static_cast<std::size_t>(n));
    n = fuse_req_getgroups(req, n, groups.data());
  }
  if (n >= 0 && n <= static_cast<int>(groups.size())) {
    groups.resize(static_cast<std::size_t>(n));
    caller.groups = std::move(groups);
  }
  return caller;
}

// Runs body; an escaping exception becomes EIO (nothing may unwind into libfuse).
template <class F>
void Guarded(fuse_req_t req, const char* op, F&& body) {
  try {
    body();
  } catch (const std::exception& e) {
    spdlog::error("{}: internal error: {}", op, e.what());
    fuse_reply_err(req, EIO);
  } catch (...) {
    spdlog::error("{}: internal error", op);
    fuse_reply_err(req, EIO);
  }
}

void ReplyError(fuse_req_t req, const Error& e, const char* op) {
  if (e.code == ENOENT || e.code == EEXIST || e.code == ENOTEMPTY || e.code == ENODATA ||
      e.code == ENOTDIR || e.code == EISDIR || e.code == EACCES || e.code == EPERM ||
      e.code == EXDEV)
    spdlog::debug("{}: {}", op, e.message);
  else
    spdlog::warn("{}: {}", op, e.message);
  fuse_reply_err(req, e.code ? e.code : EIO);
}

// Applies the uid=, gid=, umask= presentation options.
void Present(const FuseContext& ctx, struct stat& st) {
  if (ctx.uid) st.st_uid = *ctx.uid;
  if (ctx.gid) st.st_gid = *ctx.gid;
  if (ctx.umask && !S_ISLNK(st.st_mode)) st.st_mode &= ~*ctx.umask;
}

// fi->fh of a regular file: the Vfs's FileRef (its descriptor is shared with
// reads still waiting for data), and whether the kernel passes it through.
struct FileHandle : FileRef {
  FileHandle(FileRef ref, BackingFiles::Decision d, bool w)
      : FileRef(std::move(ref)), backing(d), writer(w) {}
  BackingFiles::Decision backing;
  bool writer;  // opened for writing (counted in the inode's open_writers)
};

FileHandle* Handle(fuse_file_info* fi) {
  return fi ? reinterpret_cast<FileHandle*>(fi->fh) : nullptr;
}

// The descriptor for an operation on the whole file (copy_file_range, lseek,
// fsync, fallocate): the open handle's, or (zero-message open, fh == 0) the
// inode's own, which may first download an origin-only file. A handle on a
// file still arriving waits until it has landed (or failed): its descriptor
// holds only what has arrived, and a short copy or a hole at the end would be
// taken for the file. (Reads follow the download instead: WhenReadable.)
Result<std::shared_ptr<UniqueFd>> FdFor(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi,
                                        bool write) {
  if (FileHandle* h = Handle(fi)) {
    if (auto done = Vfs::WaitComplete(*h); !done) return std::unexpected(done.error());
    return h->fd;
  }
  auto io = Ctx(req).vfs->IoFileSync(ino, write);
  if (!io) return std::unexpected(io.error());
  return io->fd;
}

fuse_entry_param ToFuse(const FuseContext& ctx, const Entry& e) {
  fuse_entry_param p;
  std::memset(&p, 0, sizeof p);
  p.ino = e.ino;
  p.attr = e.attr;
  Present(ctx, p.attr);
  p.attr_timeout = e.attr_timeout;
  p.entry_timeout = e.entry_timeout;
  return p;
}

// libfuse frees req with every reply, sent or not (an interrupted request,
// an aborted connection): whatever is needed after a reply is taken from it
// before, never through req.
void ReplyEntry(fuse_req_t req, const Result<Entry>& r, const char* op) {
  if (r) {
    FuseContext& ctx = Ctx(req);
    fuse_entry_param p = ToFuse(ctx, *r);
    if (fuse_reply_entry(req, &p) != 0) {
      // The kernel did not take the reference (request interrupted).
      ctx.vfs->Forget(r->ino, 1);
    }
    return;
  }
  if (r.error().code == ENOENT && Ctx(req).negative_timeout > 0) {
    fuse_entry_param p;
    std::memset(&p, 0, sizeof p);
    p.entry_timeout = Ctx(req).negative_timeout;  // a negative entry the kernel may cache
    spdlog::debug("{}: {}", op, r.error().message);
    fuse_reply_entry(req, &p);
    return;
  }
  ReplyError(req, r.error(), op);
}

void OpInit(void* userdata, fuse_conn_info* conn) {
  auto want = [conn](unsigned cap) {
    if (conn->capable & cap) conn->want |= cap;
  };
  want(FUSE_CAP_SPLICE_READ);
  want(FUSE_CAP_SPLICE_WRITE);
  want(FUSE_CAP_SPLICE_MOVE);
  want(FUSE_CAP_AUTO_INVAL_DATA);
  want(FUSE_CAP_PARALLEL_DIROPS);
  want(FUSE_CAP_READDIRPLUS);
  conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;  // always send attributes with listings
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;   // write-through keeps the bucket current
  // The kernel clears setuid/setgid on a write, truncate or chown by a
  // caller without CAP_FSETID (as on ext4). With HANDLE_KILLPRIV it would
  // leave that to us, and this daemon writes as root, which keeps them.
  conn->want &= ~FUSE_CAP_HANDLE_KILLPRIV;
  auto* ctx = static_cast<FuseContext*>(userdata);
  if (ctx->passthrough && KernelOffersPassthrough() && MayRegisterBackingFiles()) {
    // Passthrough needs OPEN: that is where the backing file is named.
    RequestPassthrough(true);
    ctx->zero_open = false;
    ctx->vfs->backing_files().Enable(BackingFiles::Kernel{OpenBackingFile, CloseBackingFile});
    spdlog::info(
        "FUSE passthrough on: the kernel reads and writes complete files in the "
        "bucket directly");
  } else {
    if (ctx->passthrough)
      spdlog::info("FUSE passthrough unavailable ({}): files are served through the daemon",
                   KernelOffersPassthrough() ? "no CAP_SYS_ADMIN" : "the kernel does not offer it");
    ctx->passthrough = false;
  }
  if (ctx->io_uring) {
    if (KernelOffersUringInInit()) {
      conn->want &= ~(FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
    } else {
      spdlog::info(
          "FUSE over io_uring unavailable (the kernel does not offer it: "
          "/sys/module/fuse/parameters/enable_uring is off or missing); "
          "requests go through /dev/fuse");
      ctx->io_uring = false;
    }
  }
  if (ctx->zero_open && (conn->capable & FUSE_CAP_NO_OPEN_SUPPORT)) {
    conn->want |= FUSE_CAP_NO_OPEN_SUPPORT;
    // Without OPEN, O_TRUNC must reach us as a SETATTR, not folded into the open.
    conn->want &= ~FUSE_CAP_ATOMIC_O_TRUNC;
  } else {
    ctx->zero_open = false;
  }
  conn->max_readahead = 1 << 20;
}

void OpLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Guarded(req, "lookup", [&] {
    Ctx(req).vfs->Lookup(parent, name, [req](Result<Entry> r) {
      Guarded(req, "lookup", [&] { ReplyEntry(req, r, "lookup"); });
    });
  });
}

void OpForget(fuse_req_t req, fuse_ino_t ino, uint64_t n) {
  Ctx(req).vfs->Forget(ino, n);
  fuse_reply_none(req);
}

void OpForgetMulti(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  for (size_t i = 0; i < count; ++i) Ctx(req).vfs->Forget(forgets[i].ino, forgets[i].nlookup);
  fuse_reply_none(req);
}

void OpGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Guarded(req, "getattr", [&] {
    double timeout = 0;
    auto st = Ctx(req).vfs->GetAttr(ino, fi != nullptr, &timeout);
    if (!st) return ReplyError(req, st.error(), "getattr");
    Present(Ctx(req), *st);
    fuse_reply_attr(req, &*st, timeout);
  });
}

void OpSetattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int valid, fuse_file_info* fi) {
  Guarded(req, "setattr", [&] {
    int bits = 0;
    if (valid & FUSE_SET_ATTR_MODE) bits |= kSetMode;
    if (valid & FUSE_SET_ATTR_UID) bits |= kSetUid;
    if (valid & FUSE_SET_ATTR_GID) bits |= kSetGid;
    if (valid & FUSE_SET_ATTR_SIZE) bits |= kSetSize;
    if (valid & FUSE_SET_ATTR_ATIME) bits |= kSetAtime;
    if (valid & FUSE_SET_ATTR_MTIME) bits |= kSetMtime;
    if (valid & FUSE_SET_ATTR_ATIME_NOW) bits |= kSetAtimeNow;
    if (valid & FUSE_SET_ATTR_MTIME_NOW) bits |= kSetMtimeNow;
    if (valid & FUSE_SET_ATTR_CTIME) bits |= kSetCtime;
    std::optional<int> fh;
    if (FileHandle* h = Handle(fi)) fh = h->fd->get();
    auto st = Ctx(req).vfs->SetAttr(ino, *attr, bits, fh);
    if (!st) return ReplyError(req, st.error(), "setattr");
    Present(Ctx(req), *st);
    fuse_reply_attr(req, &*st, Ctx(req).vfs->local_attr_timeout());  // the file is local now
  });
}

void OpReadlink(fuse_req_t req, fuse_ino_t ino) {
  Guarded(req, "readlink", [&] {
    auto r = Ctx(req).vfs->ReadLink(ino);
    if (!r) return ReplyError(req, r.error(), "readlink");
    fuse_reply_readlink(req, r->c_str());
  });
}

void OpMknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  Guarded(req, "mknod", [&] {
    ReplyEntry(req, Ctx(req).vfs->MkNod(CallerOf(req), parent, name, mode, rdev), "mknod");
  });
}

void OpMkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  Guarded(req, "mkdir", [&] {
    ReplyEntry(req, Ctx(req).vfs->MkDir(CallerOf(req), parent, name, mode), "mkdir");
  });
}

void OpSymlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name) {
  Guarded(req, "symlink", [&] {
    ReplyEntry(req, Ctx(req).vfs->Symlink(CallerOf(req), link, parent, name), "symlink");
  });
}

void OpLink(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent, const char* name) {
  Guarded(req, "link", [&] { ReplyEntry(req, Ctx(req).vfs->Link(ino, parent, name), "link"); });
}

void OpUnlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Guarded(req, "unlink", [&] {
    auto r = Ctx(req).vfs->Unlink(parent, name);
    if (!r) return ReplyError(req, r.error(), "unlink");
    fuse_reply_err(req, 0);
  });
}

void OpRmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Guarded(req, "rmdir", [&] {
    auto r = Ctx(req).vfs->RmDir(parent, name);
    if (!r) return ReplyError(req, r.error(), "rmdir");
    fuse_reply_err(req, 0);
  });
}

void OpRename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
              const char* newname, unsigned int flags) {
  Guarded(req, "rename", [&] {
    auto r = Ctx(req).vfs->Rename(parent, name, newparent, newname, flags);
    if (!r) return ReplyError(req, r.error(), "rename");
    fuse_reply_err(req, 0);
  });
}

// Decides how the kernel serves an open of ino (passthrough or page cache)
// and replies: reply(info) sends the OPEN or CREATE reply. False if the
// kernel did not take the open (an error was sent, or the request was interrupted).
template <class Reply>
bool ReplyOpened(fuse_req_t req, fuse_ino_t ino, FileRef ref, fuse_file_info& info, Reply&& reply) {
  bool write = (info.flags & O_ACCMODE) != O_RDONLY;
  bool arriving = ref.streaming != nullptr;
  FuseContext& ctx = Ctx(req);  // req is freed by the reply (see ReplyEntry)
  auto d = ctx.vfs->backing_files().Open(ino, ref.fd->get(), !arriving, write);
  if (!d) {
    ReplyError(req, d.error(), "open");
    return false;
  }
  auto* h = new FileHandle(std::move(ref), *d, write);
  info.fh = reinterpret_cast<uint64_t>(h);
  // The page cache may be kept while the bucket file is as the last open
  // saw it (BackingFiles::Decision; changes of other programs also reach
  // the kernel through the watch, and mtime/size through auto_inval_data).
  // (Passthrough keeps none: the bucket file's own page cache serves it.)
  // A file still arriving drops what the kernel cached of the inode: pages
  // of an earlier, failed download may be of another version (found by the
  // differential fuzzer: a whole read that matched no version).
  info.keep_cache = d->backing_id == 0 && !arriving && d->keep_cache;
  info.noflush = !write;
  if (d->backing_id) PassThroughNextOpenReply(d->backing_id);
  bool sent = reply(info);
  PassThroughNextOpenReply(0);
  if (!sent) {
    ctx.vfs->backing_files().Release(ino, h->backing);
    delete h;
  } else {
    ctx.vfs->NoteOpen(ino, true, write);
  }
  return sent;
}

void OpOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  if (Ctx(req).zero_open && !Ctx(req).vfs->Revalidates()) {
    // The kernel then stops sending OPEN/RELEASE: reads and writes arrive
    // with fh == 0 and use the inode's own descriptors (two requests fewer per file).
    // Not while a rule revalidates files at their opens: it needs them.
    fuse_reply_err(req, ENOSYS);
    return;
  }
  Guarded(req, "open", [&] {
    fuse_file_info info = *fi;  // fi does not outlive this call; the reply may come later
    Ctx(req).vfs->Open(ino, fi->flags, [req, ino, info](Result<FileRef> r) mutable {
      Guarded(req, "open", [&] {
        if (!r) return ReplyError(req, r.error(), "open");
        if (Ctx(req).revalidate_on_open) {
          Notifier::InvalidateAttributes(Ctx(req).session, ino);  // takes no lock the opener holds
        }
        (void)ReplyOpened(req, ino, std::move(*r), info,
                          [req](fuse_file_info& i) { return fuse_reply_open(req, &i) == 0; });
      });
    });
  });
}

void OpCreate(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
              fuse_file_info* fi) {
  Guarded(req, "create", [&] {
    FuseContext& ctx = Ctx(req);  // req is freed by the reply (see ReplyEntry)
    auto r = ctx.vfs->Create(CallerOf(req), parent, name, mode, fi->flags);
    if (!r) return ReplyError(req, r.error(), "create");
    fuse_entry_param p = ToFuse(ctx, r->first);
    FileRef ref{std::make_shared<UniqueFd>(r->second), nullptr, 0};
    // Not taken: the kernel holds no reference to the new entry.
    if (!ReplyOpened(req, p.ino, std::move(ref), *fi,
                     [&](fuse_file_info& i) { return fuse_reply_create(req, &p, &i) == 0; }))
      ctx.vfs->Forget(p.ino, 1);
  });
}

void ReplyRead(fuse_req_t req, int fd, size_t size, off_t off) {
  fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
  buf.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
  buf.buf[0].fd = fd;
  buf.buf[0].pos = off;
  fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
}

void ReadFrom(fuse_req_t req, std::shared_ptr<UniqueFd> fd, const std::shared_ptr<Flight>& flight,
              uint64_t total, size_t size, off_t off) {
  if (auto now = Vfs::ReadableNow(flight)) {  // most reads: no callback to make
    if (!*now) return (void)fuse_reply_err(req, now->error().code);
    return ReplyRead(req, fd->get(), size, off);
  }
  Vfs::WhenReadable(flight, total, size, off, [req, fd, size, off](Result<void> r) {
    Guarded(req, "read", [&] {
      if (!r) return (void)fuse_reply_err(req, r.error().code);
      ReplyRead(req, fd->get(), size, off);
    });
  });
}

void OpRead(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  Guarded(req, "read", [&] {
    if (FileHandle* h = Handle(fi)) return ReadFrom(req, h->fd, h->streaming, h->size, size, off);
    Ctx(req).vfs->IoFileForRead(ino, [req, size, off](Result<FileRef> io) {
      Guarded(req, "read", [&] {
        if (!io) return ReplyError(req, io.error(), "read");
        ReadFrom(req, io->fd, io->streaming, io->size, size, off);
      });
    });
  });
}

void OpWriteBuf(fuse_req_t req, fuse_ino_t ino, fuse_bufvec* in, off_t off, fuse_file_info* fi) {
  auto fd = FdFor(req, ino, fi, true);
  if (!fd) return ReplyError(req, fd.error(), "write");
  fuse_bufvec out = FUSE_BUFVEC_INIT(fuse_buf_size(in));
  out.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
  out.buf[0].fd = (*fd)->get();
  out.buf[0].pos = off;
  ssize_t n = fuse_buf_copy(&out, in, static_cast<fuse_buf_copy_flags>(0));
  if (n < 0) {
    fuse_reply_err(req, static_cast<int>(-n));
  } else {
    fuse_reply_write(req, static_cast<size_t>(n));
  }
}

void OpFlush(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  if (!Handle(fi)) {
    // Zero-message open: nothing to flush. ENOSYS makes the kernel stop
    // sending FLUSH on every close (one round trip fewer per file).
    return (void)fuse_reply_err(req, Ctx(req).flush_on_close ? 0 : ENOSYS);
  }
  auto r = Vfs::Flush(Handle(fi)->fd->get());
  fuse_reply_err(req, r ? 0 : r.error().code);
}

void OpRelease(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  if (FileHandle* h = Handle(fi)) {
    if (Ctx(req).vfs->backing_files().Release(ino, h->backing)) {
      // Written by passthrough: pages an earlier page-cached open left in the
      // kernel's cache of this inode no longer match the bucket file.
      if (Ctx(req).notifier) Ctx(req).notifier->InvalidatePages(ino, 0, 0);
    }
    Ctx(req).vfs->NoteOpen(ino, false, h->writer);
    delete h;
  }
  fuse_reply_err(req, 0);
}

void OpFsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi) {
  if (!Handle(fi)) {
    auto r = Ctx(req).vfs->FsyncInode(ino, datasync != 0);
    return (void)fuse_reply_err(req, r ? 0 : r.error().code);
  }
  auto file = FdFor(req, ino, fi, false);
  if (!file) return ReplyError(req, file.error(), "fsync");
  auto r = Vfs::Fsync((*file)->get(), datasync != 0);
  fuse_reply_err(req, r ? 0 : r.error().code);
}

void OpOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Guarded(req, "opendir", [&] {
    auto h = Ctx(req).vfs->OpenDir(ino);
    if (!h) return ReplyError(req, h.error(), "opendir");
    DirHandle* raw = h->release();
    fi->fh = reinterpret_cast<uint64_t>(raw);
    if (fuse_reply_open(req, fi) != 0) delete raw;
  });
}

void DoReaddir(fuse_req_t req, size_t size, off_t off, fuse_file_info* fi, bool plus) {
  Guarded(req, plus ? "readdirplus" : "readdir", [&] {
    auto* h = reinterpret_cast<DirHandle*>(fi->fh);
    std::string buf(size, '\0');
    size_t used = 0;
    auto emit = [&](const DirEntry& de) -> bool {
      size_t room = size - used;
      size_t n;
      if (plus) {
        fuse_entry_param p;
        std::memset(&p, 0, sizeof p);
        if (de.entry) {
          p = ToFuse(Ctx(req), *de.entry);
        } else {
          p.attr.st_ino = de.ino;
          p.attr.st_mode = static_cast<mode_t>(de.type) << 12;
        }
        n = fuse_add_direntry_plus(req, buf.data() + used, room, de.name.c_str(), &p,
                                   de.next_offset);
      } else {
        struct stat st;
        std::memset(&st, 0, sizeof st);
        st.st_ino = de.ino;
        st.st_mode = static_cast<mode_t>(de.type) << 12;
        n = fuse_add_direntry(req, buf.data() + used, room, de.name.c_str(), &st, de.next_offset);
      }
      if (n > room) return false;
      used += n;
      return true;
    };
    auto r = Ctx(req).vfs->ReadDir(*h, off, plus, emit);
    if (!r && used == 0) return ReplyError(req, r.error(), "readdir");
    fuse_reply_buf(req, buf.data(), used);
  });
}

void OpReaddir(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  DoReaddir(req, size, off, fi, false);
}

void OpReaddirplus(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  DoReaddir(req, size, off, fi, true);
}

void OpReleasedir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  delete reinterpret_cast<DirHandle*>(fi->fh);
  fuse_reply_err(req, 0);
}

void OpFsyncdir(fuse_req_t req, fuse_ino_t, int datasync, fuse_file_info* fi) {
  Guarded(req, "fsyncdir", [&] {
    auto r = Ctx(req).vfs->FsyncDir(*reinterpret_cast<DirHandle*>(fi->fh), datasync != 0);
    if (!r) return ReplyError(req, r.error(), "fsyncdir");
    fuse_reply_err(req, 0);
  });
}

void OpStatfs(fuse_req_t req, fuse_ino_t ino) {
  Guarded(req, "statfs", [&] {
    auto r = Ctx(req).vfs->StatFs(ino);
    if (!r) return ReplyError(req, r.error(), "statfs");
    fuse_reply_statfs(req, &*r);
  });
}

void OpSetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
                int flags) {
  Guarded(req, "setxattr", [&] {
    auto r = Ctx(req).vfs->SetXattr(ino, name, std::string_view(value, size), flags);
    if (!r) return ReplyError(req, r.error(), "setxattr");
    fuse_reply_err(req, 0);
  });
}

void OpGetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  Guarded(req, "getxattr", [&] {
    auto r = Ctx(req).vfs->GetXattr(ino, name);
    if (!r) return ReplyError(req, r.error(), "getxattr");
    if (size == 0) return (void)fuse_reply_xattr(req, r->size());
    if (size < r->size()) return (void)fuse_reply_err(req, ERANGE);
    fuse_reply_buf(req, r->data(), r->size());
  });
}

void OpListxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  Guarded(req, "listxattr", [&] {
    auto r = Ctx(req).vfs->ListXattr(ino);
    if (!r) return ReplyError(req, r.error(), "listxattr");
    if (size == 0) return (void)fuse_reply_xattr(req, r->size());
    if (size < r->size()) return (void)fuse_reply_err(req, ERANGE);
    fuse_reply_buf(req, r->data(), r->size());
  });
}

void OpRemovexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  Guarded(req, "removexattr", [&] {
    auto r = Ctx(req).vfs->RemoveXattr(ino, name);
    if (!r) return ReplyError(req, r.error(), "removexattr");
    fuse_reply_err(req, 0);
  });
}

void OpFallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
                 fuse_file_info* fi) {
  auto file = FdFor(req, ino, fi, true);
  if (!file) return ReplyError(req, file.error(), "fallocate");
  auto r = Vfs::Fallocate((*file)->get(), mode, off, len);
  fuse_reply_err(req, r ? 0 : r.error().code);
}

void OpLseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, fuse_file_info* fi) {
  auto file = FdFor(req, ino, fi, false);
  if (!file) return ReplyError(req, file.error(), "lseek");
  auto r = Vfs::Lseek((*file)->get(), off, whence);
  if (!r) return (void)fuse_reply_err(req, r.error().code);
  fuse_reply_lseek(req, *r);
}

void OpCopyFileRange(fuse_req_t req, fuse_ino_t ino_in, off_t off_in, fuse_file_info* fi_in,
                     fuse_ino_t ino_out, off_t off_out, fuse_file_info* fi_out, size_t len,
                     int flags) {
  auto src = FdFor(req, ino_in, fi_in, false);
  if (!src) return ReplyError(req, src.error(), "copy_file_range");
  auto dst = FdFor(req, ino_out, fi_out, true);
  if (!dst) return ReplyError(req, dst.error(), "copy_file_range");
  auto n = Vfs::CopyFileRange((*src)->get(), off_in, (*dst)->get(), off_out, len,
                              static_cast<unsigned>(flags));
  if (!n) return (void)fuse_reply_err(req, n.error().code);
  fuse_reply_write(req, *n);
}

fuse_lowlevel_ops MakeOps() {
  fuse_lowlevel_ops ops;
  std::memset(&ops, 0, sizeof ops);
  ops.init = OpInit;
  ops.lookup = OpLookup;
  ops.forget = OpForget;
  ops.forget_multi = OpForgetMulti;
  ops.getattr = OpGetattr;
  ops.setattr = OpSetattr;
  ops.readlink = OpReadlink;
  ops.mknod = OpMknod;
  ops.mkdir = OpMkdir;
  ops.symlink = OpSymlink;
  ops.link = OpLink;
  ops.unlink = OpUnlink;
  ops.rmdir = OpRmdir;
  ops.rename = OpRename;
  ops.open = OpOpen;
  ops.create = OpCreate;
  ops.read = OpRead;
  ops.write_buf = OpWriteBuf;
  ops.flush = OpFlush;
  ops.release = OpRelease;
  ops.fsync = OpFsync;
  ops.opendir = OpOpendir;
  ops.readdir = OpReaddir;
  ops.readdirplus = OpReaddirplus;
  ops.releasedir = OpReleasedir;
  ops.fsyncdir = OpFsyncdir;
  ops.statfs = OpStatfs;
  ops.setxattr = OpSetxattr;
  ops.getxattr = OpGetxattr;
  ops.listxattr = OpListxattr;
  ops.removexattr = OpRemovexattr;
  ops.fallocate = OpFallocate;
  ops.lseek = OpLseek;
  ops.copy_file_range = OpCopyFileRange;
  return ops;
}

}  // namespace

const fuse_lowlevel_ops& FuseOperations() {
  static const fuse_lowlevel_ops ops = MakeOps();
  return ops;
}

}  // namespace originfs
