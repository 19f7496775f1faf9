// FUSE over io_uring (Linux 6.14+, Documentation/filesystems/fuse-io-uring.rst),
// which libfuse 3.14 does not have: requests arrive in buffers registered
// with the kernel through io_uring commands on /dev/fuse, one queue per CPU,
// and each reply is committed with the command that fetches the next one.
//
// Requests are handed to libfuse's own dispatcher (fuse_session_process_buf)
// on the ring's thread, so every handler in fs/fuse_ops.cc serves both
// channels; replies come back through the channel's writev hook
// (fs/kernel_channel.cc), which commits those of ring requests into their
// ring entry instead of writing them to /dev/fuse. FORGET and INTERRUPT
// still come through /dev/fuse, which libfuse's loop keeps reading.
//
// Threads: per queue, two threads pinned to the queue's CPU, each with its
// own ring and 64 entries (a request not answered yet holds one). Operations
// that may wait for a download to land or for the disk (setattr, rename,
// unlink, link, xattr writes, fsync, I/O without an open handle) run on a
// pool of 8 threads instead, so a ring's threads never wait.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>

struct fuse_session;

namespace originfs {

// The largest request or reply argument over the rings: the INIT reply caps
// max_write and max_pages to it, since every ring entry holds a buffer this big.
constexpr std::size_t kMaxUringPayload = 128 * 1024;

// Starts the ring threads for se once the INIT reply granted io_uring.
// max_payload: the largest request or reply argument (max_write, max_pages).
// Returns 0 or -errno (then requests keep coming through /dev/fuse).
int StartUring(fuse_session* se, int devfd, std::size_t max_payload);
// Stops and joins the ring threads (after the session is unmounted).
void StopUring();

// The channel's writev hook: if unique is a request that came through a
// ring, commits the reply (iov[0] the fuse_out_header, the rest its
// argument) and returns the bytes taken, else -1 with nothing done.
long CommitUringReply(uint64_t unique, const struct iovec* iov, int count);
bool UringActive();
uint64_t UringRequests();  // requests served through the rings so far

}  // namespace originfs
