// The /dev/fuse channel, as libfuse's custom I/O: plain read/writev/splice,
// with one correction to the INIT reply that libfuse 3.14 builds.
//
// libfuse up to 3.16 keeps FUSE_CAP_PARALLEL_DIROPS in conn->want but never
// copies it into the INIT reply's flags (fixed upstream in 3.17), so the
// kernel serialises every LOOKUP and READDIR within one directory. The
// channel sets that bit in the reply when the kernel offered it and the
// filesystem asked for it; nothing else in the stream is touched.
#pragma once

#include <functional>

struct fuse_session;

namespace originfs {

struct KernelChannelOptions {
  bool parallel_dirops = true;
  // Ask for FUSE over io_uring in INIT (where offered) and start the rings
  // (fs/uring_channel.h) once INIT is answered.
  bool io_uring = false;
  // Called once, from the worker that notices, when the kernel has ended the
  // connection (unmount): work that holds a worker thread can stop early.
  std::function<void()> on_disconnect;
};

// Call after fuse_session_mount() and before the loop starts. Returns 0 or
// -errno from fuse_session_custom_io().
int InstallKernelChannel(fuse_session* se, const KernelChannelOptions& opts);

// ---- FUSE passthrough (kernel 6.9+), which libfuse 3.14 has no API for.
// Whether the kernel offered it in INIT (call from the init handler).
bool KernelOffersPassthrough();
// Whether the kernel offered FUSE over io_uring in INIT (enable_uring=1).
bool KernelOffersUringInInit();
// Whether this process may register backing files (CAP_SYS_ADMIN).
bool MayRegisterBackingFiles();
// From the init handler: the INIT reply asks for passthrough (FUSE_PASSTHROUGH,
// max_stack_depth 1: the bucket may not itself be a stacked filesystem).
// Not with the writeback cache, which the kernel would refuse it with.
void RequestPassthrough(bool on);
// Registers fd's file as a backing file: its id (> 0) or -errno (EPERM
// without CAP_SYS_ADMIN, ELOOP for a stacked bucket filesystem).
int OpenBackingFile(int fd);
void CloseBackingFile(int backing_id);
// The next OPEN or CREATE reply this thread sends opens the file in
// passthrough to backing_id (FOPEN_PASSTHROUGH and the id in fuse_open_out).
// Call right before fuse_reply_open / fuse_reply_create.
void PassThroughNextOpenReply(int backing_id);

}  // namespace originfs
