#include "fs/kernel_channel.h"

#define FUSE_USE_VERSION 312
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <linux/fuse.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstring>

#include <spdlog/spdlog.h>

namespace originfs {
namespace {

constexpr uint64_t kNoUnique = ~uint64_t{0};

std::atomic<uint64_t> g_init_unique{kNoUnique};
std::atomic<uint64_t> g_offered{0};
std::atomic<bool> g_parallel_dirops{true};
std::function<void()> g_on_disconnect;  // set before the loop starts
std::atomic<bool> g_disconnected{false};

ssize_t NoteDisconnect(ssize_t n) {
  if (n < 0 && errno == ENODEV && !g_disconnected.exchange(true) && g_on_disconnect) {
    int saved = errno;
    g_on_disconnect();
    errno = saved;
  }
  return n;
}

// Every request before INIT's reply arrives through read(): libfuse splices
// only once SPLICE_READ has been negotiated.
ssize_t ChannelRead(int fd, void* buf, size_t len, void*) {
  ssize_t n = NoteDisconnect(read(fd, buf, len));
  if (n >= static_cast<ssize_t>(sizeof(fuse_in_header) + offsetof(fuse_init_in, flags) +
                                sizeof(uint32_t))) {
    fuse_in_header in;
    std::memcpy(&in, buf, sizeof in);
    if (in.opcode == FUSE_INIT) {
      fuse_init_in init;
      std::memset(&init, 0, sizeof init);
      size_t body = static_cast<size_t>(n) - sizeof in;
      std::memcpy(&init, static_cast<const char*>(buf) + sizeof in, std::min(body, sizeof init));
      uint64_t offered = init.flags;
      if (body >= offsetof(fuse_init_in, flags2) + sizeof(uint32_t) &&
          (init.flags & FUSE_INIT_EXT)) {
        offered |= static_cast<uint64_t>(init.flags2) << 32;
      }
      g_offered.store(offered);
      g_init_unique.store(in.unique);
    }
  }
  return n;
}

ssize_t ChannelWritev(int fd, struct iovec* iov, int count, void*) {
  uint64_t init_unique = g_init_unique.load(std::memory_order_relaxed);
  if (init_unique != kNoUnique && count >= 2 && iov[0].iov_len >= sizeof(fuse_out_header) &&
      iov[1].iov_len >= offsetof(fuse_init_out, flags) + sizeof(uint32_t)) {
    auto* out = static_cast<fuse_out_header*>(iov[0].iov_base);
    if (out->unique == init_unique) {
      g_init_unique.store(kNoUnique);
      if (out->error == 0) {
        auto* reply = static_cast<fuse_init_out*>(iov[1].iov_base);
        if (g_parallel_dirops.load() && (g_offered.load() & FUSE_PARALLEL_DIROPS))
          reply->flags |= FUSE_PARALLEL_DIROPS;
        spdlog::debug("FUSE INIT: kernel offered {:#x}, granted {:#x}", g_offered.load(),
                      reply->flags);
      }
    }
  }
  return writev(fd, iov, count);
}

ssize_t ChannelSplice(int fdin, off_t* offin, int fdout, off_t* offout, size_t len,
                      unsigned int flags, void*) {
  return NoteDisconnect(splice(fdin, offin, fdout, offout, len, flags));
}

}  // namespace

int InstallKernelChannel(fuse_session* se, const KernelChannelOptions& opts) {
  g_parallel_dirops.store(opts.parallel_dirops);
  g_on_disconnect = opts.on_disconnect;
  g_disconnected.store(false);
  static const fuse_custom_io io = {
      .writev = ChannelWritev,
      .read = ChannelRead,
      .splice_receive = ChannelSplice,
      .splice_send = ChannelSplice,
  };
  return fuse_session_custom_io(se, &io, fuse_session_fd(se));
}

}  // namespace originfs
