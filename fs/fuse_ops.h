// The libfuse low-level adapter: translates each request into a Vfs call and
// replies exactly once. Nothing here decides filesystem semantics.
#pragma once

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <optional>
#include <string>

#include "core/vfs/vfs.h"

namespace originfs {

class Notifier;

struct FuseContext {
  Vfs* vfs = nullptr;
  fuse_session* session = nullptr;
  Notifier* notifier = nullptr;  // every kernel notification but InvalidateAttributes
  double negative_timeout = 1.0;
  bool zero_open = true;  // answer OPEN with ENOSYS: the kernel then skips OPEN/RELEASE
  // With zero_open, FLUSH has nothing to do (writes go straight through to the
  // bucket file) and is answered ENOSYS so the kernel stops sending it; a
  // shared (network) bucket keeps it for close-to-open semantics.
  bool flush_on_close = false;
  // A shared bucket (close-to-open across hosts): each OPEN drops the
  // kernel's cached attributes of the file before it is answered, so the
  // first read (or stat) asks for them again and, the file having changed
  // (mtime, size), the kernel drops its cached pages too (auto_inval_data).
  // An open after another host's close thus reads that host's bytes. Needs
  // OPEN, so zero_open is off.
  bool revalidate_on_open = false;
  // FUSE passthrough where the kernel offers it (6.9+) and the daemon may
  // register backing files (CAP_SYS_ADMIN): opens of complete files are then
  // served by the kernel from the bucket file. Needs OPEN, so it turns
  // zero_open off; the init handler clears it where unavailable.
  bool passthrough = true;
  // FUSE over io_uring where the kernel offers it (-o io_uring): replies
  // are then copied into ring buffers, so libfuse must not splice them.
  bool io_uring = false;
  // uid=, gid=, umask= mount options: how attributes are presented.
  std::optional<uid_t> uid;
  std::optional<gid_t> gid;
  std::optional<mode_t> umask;
};

const fuse_lowlevel_ops& FuseOperations();

}  // namespace originfs
