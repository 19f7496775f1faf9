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
  // Called once, from the worker that notices, when the kernel has ended the
  // connection (unmount): work that holds a worker thread can stop early.
  std::function<void()> on_disconnect;
};

// Call after fuse_session_mount() and before the loop starts. Returns 0 or
// -errno from fuse_session_custom_io().
int InstallKernelChannel(fuse_session* se, const KernelChannelOptions& opts);

}  // namespace originfs
