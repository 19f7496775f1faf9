#include "fs/kernel_channel.h"

#include "fs/uring_channel.h"

#define FUSE_USE_VERSION 312
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <linux/capability.h>
#include <linux/fuse.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
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

// Protocol 7.40 (Linux 6.9), newer than this system's <linux/fuse.h>.
constexpr uint64_t kFusePassthrough = uint64_t{1} << 37;  // INIT: flags2 bit 5
constexpr uint32_t kFopenPassthrough = 1u << 7;
constexpr uint64_t kFuseOverIoUring = uint64_t{1} << 41;  // 7.42: flags2 bit 9
struct BackingMap {                                       // struct fuse_backing_map
  int32_t fd;
  uint32_t flags;
  uint64_t padding;
};
constexpr unsigned long kIocBackingOpen = _IOW(229, 1, BackingMap);
constexpr unsigned long kIocBackingClose = _IOW(229, 2, uint32_t);
// fuse_init_out's max_stack_depth: the first of 3.14's unused words.
constexpr std::size_t kMaxStackDepthOffset = offsetof(fuse_init_out, unused);
// struct fuse_open_out: fh, open_flags, backing_id (3.14: padding).
struct OpenOut {
  uint64_t fh;
  uint32_t open_flags;
  int32_t backing_id;
};
static_assert(sizeof(OpenOut) == sizeof(fuse_open_out));

std::atomic<uint64_t> g_init_unique{kNoUnique};
std::atomic<uint64_t> g_offered{0};
std::atomic<bool> g_parallel_dirops{true};
std::function<void()> g_on_disconnect;  // set before the loop starts
std::atomic<bool> g_disconnected{false};
std::atomic<bool> g_want_passthrough{false};
std::atomic<bool> g_want_uring{false};
int g_devfd = -1;
fuse_session* g_session = nullptr;
thread_local int t_reply_backing = 0;

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

// Marks the OPEN/CREATE reply PassThroughNextOpenReply announced; the
// fuse_open_out ends the reply's argument in both.
void MarkPassthrough(struct iovec* iov, int count) {
  int id = t_reply_backing;
  t_reply_backing = 0;
  if (count < 2 || iov[0].iov_len < sizeof(fuse_out_header) || iov[1].iov_len < sizeof(OpenOut))
    return;
  if (static_cast<fuse_out_header*>(iov[0].iov_base)->error != 0) return;
  auto* out = reinterpret_cast<OpenOut*>(static_cast<char*>(iov[1].iov_base) + iov[1].iov_len -
                                         sizeof(OpenOut));
  out->open_flags &= ~FOPEN_KEEP_CACHE;  // the kernel refuses the two together
  out->open_flags |= kFopenPassthrough;
  out->backing_id = id;
}

ssize_t ChannelWritev(int fd, struct iovec* iov, int count, void*) {
  if (t_reply_backing) MarkPassthrough(iov, count);
  if (UringActive() && count >= 1 && iov[0].iov_len >= sizeof(fuse_out_header)) {
    // A reply to a request that came through a ring goes back into its entry.
    uint64_t unique = static_cast<fuse_out_header*>(iov[0].iov_base)->unique;
    if (unique != 0) {
      long n = CommitUringReply(unique, iov, count);
      if (n >= 0) return n;
    }
  }
  bool start_uring = false;
  std::size_t uring_payload = 0;
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
        if (g_want_passthrough.load() && (g_offered.load() & kFusePassthrough) &&
            !(reply->flags & FUSE_WRITEBACK_CACHE) &&
            iov[1].iov_len >= kMaxStackDepthOffset + sizeof(uint32_t)) {
          reply->flags |= FUSE_INIT_EXT;
          reply->flags2 |= static_cast<uint32_t>(kFusePassthrough >> 32);
          uint32_t depth = 1;
          std::memcpy(static_cast<char*>(iov[1].iov_base) + kMaxStackDepthOffset, &depth,
                      sizeof depth);
        }
        if (g_want_uring.load() && (g_offered.load() & kFuseOverIoUring)) {
          reply->flags |= FUSE_INIT_EXT;
          reply->flags2 |= static_cast<uint32_t>(kFuseOverIoUring >> 32);
          start_uring = true;
          // Every ring entry holds a buffer for the largest argument
          // (max_write, max_pages pages): kept small, as entries are many.
          reply->max_write = std::min<uint32_t>(reply->max_write, kMaxUringPayload);
          reply->max_pages = static_cast<uint16_t>(
              std::min<std::size_t>(reply->max_pages, kMaxUringPayload / 4096));
          uring_payload = std::max<std::size_t>(
              {8192, reply->max_write, static_cast<std::size_t>(reply->max_pages) * 4096});
        }
        spdlog::debug("FUSE INIT: kernel offered {:#x}, granted {:#x}", g_offered.load(),
                      reply->flags | (uint64_t{reply->flags2} << 32));
      }
    }
  }
  ssize_t n = writev(fd, iov, count);
  if (start_uring && n >= 0) {
    // Entries may be registered only once the kernel has INIT's reply.
    if (int rc = StartUring(g_session, fd, uring_payload); rc != 0)
      spdlog::warn("FUSE over io_uring not started ({}): requests go through /dev/fuse",
                   std::strerror(-rc));
  }
  return n;
}

ssize_t ChannelSplice(int fdin, off_t* offin, int fdout, off_t* offout, size_t len,
                      unsigned int flags, void*) {
  return NoteDisconnect(splice(fdin, offin, fdout, offout, len, flags));
}

}  // namespace

bool KernelOffersUringInInit() { return (g_offered.load() & kFuseOverIoUring) != 0; }

bool KernelOffersPassthrough() { return (g_offered.load() & kFusePassthrough) != 0; }

bool MayRegisterBackingFiles() {
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (syscall(SYS_capget, &hdr, data) != 0) return false;
  return (data[CAP_SYS_ADMIN / 32].effective & (1u << (CAP_SYS_ADMIN % 32))) != 0;
}

void RequestPassthrough(bool on) { g_want_passthrough.store(on); }

int OpenBackingFile(int fd) {
  BackingMap map{fd, 0, 0};
  int id = ioctl(g_devfd, kIocBackingOpen, &map);
  return id < 0 ? -errno : id;
}

void CloseBackingFile(int backing_id) {
  uint32_t id = static_cast<uint32_t>(backing_id);
  if (ioctl(g_devfd, kIocBackingClose, &id) != 0)
    spdlog::debug("closing backing file {}: {}", backing_id, std::strerror(errno));
}

void PassThroughNextOpenReply(int backing_id) { t_reply_backing = backing_id; }

int InstallKernelChannel(fuse_session* se, const KernelChannelOptions& opts) {
  g_devfd = fuse_session_fd(se);
  g_session = se;
  g_want_uring.store(opts.io_uring);
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
