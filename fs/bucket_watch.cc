#include "fs/bucket_watch.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <set>
#include <utility>

#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

namespace originfs {
namespace {

constexpr unsigned long kExt4Magic = 0xEF53;
constexpr int kFileidIno32Gen = 1;  // the kernel's FILEID_INO32_GEN

// Events that make, remove or rename a name (the others change a file).
constexpr uint64_t kNameEvents = FAN_CREATE | FAN_DELETE | FAN_MOVED_FROM | FAN_MOVED_TO;
constexpr uint64_t kMask = FAN_CREATE | FAN_DELETE | FAN_MOVED_FROM | FAN_MOVED_TO | FAN_ATTRIB |
                           FAN_MODIFY | FAN_CLOSE_WRITE | FAN_ONDIR;

}  // namespace

Result<std::unique_ptr<BucketWatch>> BucketWatch::Start(const std::string& bucket, Callbacks cb) {
  std::unique_ptr<BucketWatch> w(new BucketWatch());
  w->cb_ = std::move(cb);
  w->self_ = getpid();
  w->bucket_ = UniqueFd(open(bucket.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!w->bucket_) return FailErrno("opening the bucket");
  struct stat st;
  struct statfs sf;
  if (fstat(w->bucket_.get(), &st) != 0 || fstatfs(w->bucket_.get(), &sf) != 0)
    return FailErrno("stat of the bucket");
  w->dev_ = st.st_dev;
  w->ext4_ = static_cast<unsigned long>(sf.f_type) == kExt4Magic;
  w->fan_ = UniqueFd(fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK |
                                       FAN_UNLIMITED_QUEUE | FAN_REPORT_DFID_NAME | FAN_REPORT_FID,
                                   O_RDONLY | O_CLOEXEC));
  if (!w->fan_) return FailErrno("fanotify_init");
  if (fanotify_mark(w->fan_.get(), FAN_MARK_ADD | FAN_MARK_FILESYSTEM, kMask, w->bucket_.get(),
                    nullptr) != 0)
    return FailErrno("fanotify_mark of the bucket's filesystem");
  w->wake_ = UniqueFd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!w->wake_) return FailErrno("eventfd");
  w->thread_ = std::thread([p = w.get()] { p->Loop(); });
  return w;
}

BucketWatch::~BucketWatch() {
  if (thread_.joinable()) {
    uint64_t one = 1;
    (void)!write(wake_.get(), &one, sizeof one);
    thread_.join();
  }
}

void BucketWatch::Loop() {
  alignas(fanotify_event_metadata) static thread_local char buf[64 << 10];
  for (;;) {
    pollfd fds[2] = {{fan_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      spdlog::error("watching the bucket: poll: {}", std::strerror(errno));
      return;
    }
    if (fds[1].revents) return;
    for (;;) {
      ssize_t n = read(fan_.get(), buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;  // EAGAIN: all read
      Handle(buf, static_cast<std::size_t>(n));
    }
  }
}

ino_t BucketWatch::InoOf(const void* h) const {
  const auto* handle = static_cast<const file_handle*>(h);
  if (ext4_ && handle->handle_type == kFileidIno32Gen && handle->handle_bytes >= 8) {
    uint32_t ino;
    std::memcpy(&ino, handle->f_handle, sizeof ino);
    return ino;
  }
  // Any other filesystem: ask it (the file may be gone: nothing to do then).
  std::size_t size = sizeof(file_handle) + handle->handle_bytes;
  alignas(file_handle) char copy[sizeof(file_handle) + MAX_HANDLE_SZ];
  if (size > sizeof copy) return 0;
  std::memcpy(copy, handle, size);
  UniqueFd fd(
      open_by_handle_at(bucket_.get(), reinterpret_cast<file_handle*>(copy), O_PATH | O_CLOEXEC));
  struct stat st;
  if (!fd || fstat(fd.get(), &st) != 0 || st.st_dev != dev_) return 0;
  return st.st_ino;
}

void BucketWatch::Handle(const char* buf, std::size_t len) {
  // A batch says each change once, however often it happened in it.
  std::set<std::pair<ino_t, std::string>> entries;
  std::set<ino_t> inodes;
  bool everything = false;
  const char* p = buf;
  while (len >= sizeof(fanotify_event_metadata)) {
    const auto* m = reinterpret_cast<const fanotify_event_metadata*>(p);
    if (m->event_len < sizeof *m || m->event_len > len) break;
    events_.fetch_add(1, std::memory_order_relaxed);
    if (m->mask & FAN_Q_OVERFLOW) {
      everything = true;
    } else if (m->pid != self_) {
      foreign_.fetch_add(1, std::memory_order_relaxed);
      // The records: the directory's handle and the name, the file's handle.
      const char* r = p + m->metadata_len;
      const char* end = p + m->event_len;
      while (r + sizeof(fanotify_event_info_header) <= end) {
        const auto* hdr = reinterpret_cast<const fanotify_event_info_header*>(r);
        if (hdr->len < sizeof *hdr || r + hdr->len > end) break;
        const auto* fid = reinterpret_cast<const fanotify_event_info_fid*>(r);
        const auto* handle = reinterpret_cast<const file_handle*>(fid->handle);
        const char* after = reinterpret_cast<const char*>(handle->f_handle) + handle->handle_bytes;
        if (hdr->info_type == FAN_EVENT_INFO_TYPE_DFID_NAME && after < r + hdr->len &&
            (m->mask & kNameEvents)) {
          std::string name(after, strnlen(after, static_cast<std::size_t>(r + hdr->len - after)));
          if (ino_t dir = InoOf(handle); dir && !name.empty() && name != ".") {
            entries.emplace(dir, std::move(name));
            inodes.insert(dir);  // its times and link count
          }
        } else if (hdr->info_type == FAN_EVENT_INFO_TYPE_FID ||
                   hdr->info_type == FAN_EVENT_INFO_TYPE_DFID) {
          if (ino_t ino = InoOf(handle)) inodes.insert(ino);
        }
        r += hdr->len;
      }
    }
    if (m->fd >= 0) close(m->fd);
    p += m->event_len;
    len -= m->event_len;
  }
  if (everything && cb_.everything) cb_.everything();
  for (const auto& [dir, name] : entries) {
    if (cb_.entry) cb_.entry(dev_, dir, name);
  }
  for (ino_t ino : inodes) {
    if (cb_.inode) cb_.inode(dev_, ino);
  }
}

}  // namespace originfs
