// I/O on an open file's descriptor (an open handle's, or an inode's own for
// the kernel's zero-message open): the waits for bytes still arriving and
// every syscall, so the FUSE adapter only translates and replies.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "core/vfs/inode.h"
#include "core/vfs/vfs.h"

namespace originfs {
namespace {

// A failed download reads as EIO, or ENOSPC when the bucket is full.
Error DownloadError(const Error& e) {
  return Error{e.code == ENOSPC ? ENOSPC : EIO, "download failed: " + e.message};
}

Result<void> Check(int rc, const char* what) {
  if (rc != 0) return FailErrno(what);
  return {};
}

}  // namespace

std::optional<Result<void>> Vfs::ReadableNow(const std::shared_ptr<Flight>& streaming) {
  if (streaming && !streaming->finished()) return std::nullopt;
  if (streaming) {
    if (auto done = streaming->WaitDone(); !done) {
      (void)streaming->ReportFailure();  // this reader is told: the next open tries again
      return std::unexpected(DownloadError(done.error()));
    }
  }
  return Result<void>{};
}

void Vfs::WhenReadable(const std::shared_ptr<Flight>& streaming, uint64_t total, std::size_t size,
                       off_t off, std::function<void(Result<void>)> ready) {
  if (auto now = ReadableNow(streaming)) return ready(std::move(*now));
  // The object is still arriving: ready runs once the requested range is in
  // the staging file (or the download ended), without holding the caller's
  // thread. The read that reaches the end is ready once all Content-Length
  // bytes are in (the transfer cannot fail any more; rules that verify a
  // checksum do not stream), without waiting for the commit into the bucket:
  // a reader that saw every byte never sees a failed download, and if the
  // commit fails the next open fetches again.
  uint64_t need = std::min<uint64_t>(static_cast<uint64_t>(off) + size, total);
  streaming->OnAvailable(need, [streaming, need, ready = std::move(ready)] {
    if (streaming->received() < need) {
      auto done = streaming->WaitDone();  // finished short: never blocks here
      if (!done) {
        (void)streaming->ReportFailure();
        return ready(std::unexpected(DownloadError(done.error())));
      }
    }
    ready({});
  });
}

Result<void> Vfs::WaitComplete(const FileRef& f) {
  if (!f.streaming) return {};
  if (auto done = f.streaming->WaitDone(); !done) {
    (void)f.streaming->ReportFailure();
    return std::unexpected(DownloadError(done.error()));
  }
  return {};
}

Result<void> Vfs::FsyncInode(uint64_t ino, bool datasync) {
  auto inode = Get(ino);
  if (!inode) return Fail(ESTALE, "stale inode");
  std::shared_ptr<Flight> flight;
  {
    std::lock_guard lock(inode->mu);
    if (inode->kind == InodeKind::kOriginDir) return {};
    if (inode->kind == InodeKind::kOriginFile) flight = inode->OriginPart().flight;
  }
  // A file still arriving: done once it has landed, durably (or failed).
  // Not a copy into the bucket: a writeback = false object stays out of it.
  if (flight) {
    if (auto done = flight->WaitDone(); !done) return std::unexpected(DownloadError(done.error()));
  }
  {
    std::lock_guard lock(inode->mu);
    if (inode->kind != InodeKind::kLocal) return {};  // nothing of it in the bucket to sync
  }
  auto io = LocalIoFile(inode, false);
  if (!io) return std::unexpected(io.error());
  return Fsync(io->fd->get(), datasync);
}

Result<void> Vfs::Flush(int fd) {
  // close(dup()) gives the backing filesystem its close-time semantics (NFS).
  int copy = dup(fd);
  if (copy < 0) return FailErrno("flush");
  return Check(close(copy), "flush");
}

Result<void> Vfs::Fsync(int fd, bool datasync) {
  return Check(datasync ? fdatasync(fd) : fsync(fd), "fsync");
}

Result<void> Vfs::Fallocate(int fd, int mode, off_t off, off_t len) {
  return Check(fallocate(fd, mode, off, len), "fallocate");
}

Result<off_t> Vfs::Lseek(int fd, off_t off, int whence) {
  off_t r = lseek(fd, off, whence);
  if (r < 0) return FailErrno("lseek");
  return r;
}

Result<std::size_t> Vfs::CopyFileRange(int in, off_t off_in, int out, off_t off_out,
                                       std::size_t len, unsigned flags) {
  loff_t i = off_in, o = off_out;
  ssize_t n = copy_file_range(in, &i, out, &o, len, flags);
  if (n < 0) return FailErrno("copy_file_range");
  return static_cast<std::size_t>(n);
}

}  // namespace originfs
