#include "fs/bucket_watch.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <set>
#include <utility>

#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

namespace originfs {
namespace {

constexpr unsigned long kExt4Magic = 0xEF53;
constexpr int kFileidIno32Gen = 1;  // the kernel's FILEID_INO32_GEN
constexpr int kCoalesceMs = 2;      // between two reads of events

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
    if (poll(fds, 2, -1) < 0 && errno != EINTR) break;
    if (fds[1].revents) return;
    // A batch at a time, and a stop checked between batches (a steady
    // stream of events must not hold up the unmount).
    ssize_t n = read(fan_.get(), buf, sizeof buf);
    if (n > 0) {
      Handle(buf, static_cast<std::size_t>(n));
    } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
      break;
    }
    // Most events are the daemon's own (a landing makes several, one per
    // system call): waking for each would cost a thread switch per call on
    // the bucket. Waiting kCoalesceMs lets them gather into one read (and
    // delays what others change by as much, well under the 100 ms aimed at).
    pollfd stop{wake_.get(), POLLIN, 0};
    if (poll(&stop, 1, kCoalesceMs) > 0) return;
  }
  // Changes are no longer seen: the kernel forgets what it has, once.
  spdlog::error(
      "watching the bucket failed ({}): changes other programs make in it may be "
      "seen late",
      std::strerror(errno));
  if (cb_.everything) cb_.everything();
}

ino_t BucketWatch::InoOf(const char* h) const {
  file_handle handle;
  std::memcpy(&handle, h, sizeof handle);
  if (ext4_ && handle.handle_type == kFileidIno32Gen && handle.handle_bytes >= 8) {
    uint32_t ino;
    std::memcpy(&ino, h + sizeof(file_handle), sizeof ino);
    return ino;
  }
  // Any other filesystem: ask it (the file may be gone: nothing to do then).
  std::size_t size = sizeof(file_handle) + handle.handle_bytes;
  alignas(file_handle) char copy[sizeof(file_handle) + MAX_HANDLE_SZ];
  if (size > sizeof copy) return 0;
  std::memcpy(copy, h, size);
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
    fanotify_event_metadata m;  // copied: records are only 4-byte aligned
    std::memcpy(&m, p, sizeof m);
    if (m.event_len < sizeof m || m.event_len > len || m.metadata_len > m.event_len) break;
    events_.fetch_add(1, std::memory_order_relaxed);
    if (m.mask & FAN_Q_OVERFLOW) {
      everything = true;
    } else if (m.pid != self_) {
      foreign_.fetch_add(1, std::memory_order_relaxed);
      // The records: the directory's handle with a name (".": the directory
      // itself), the file's handle.
      const char* r = p + m.metadata_len;
      const char* end = p + m.event_len;
      while (r + sizeof(fanotify_event_info_fid) + sizeof(file_handle) <= end) {
        fanotify_event_info_header hdr;
        std::memcpy(&hdr, r, sizeof hdr);
        if (hdr.len < sizeof hdr || r + hdr.len > end) break;
        const char* rec_end = r + hdr.len;
        const char* h = r + offsetof(fanotify_event_info_fid, handle);
        file_handle fh;
        std::memcpy(&fh, h, sizeof fh);
        const char* after = h + sizeof(file_handle) + fh.handle_bytes;
        if (after > rec_end || fh.handle_bytes > MAX_HANDLE_SZ) break;
        if (hdr.info_type == FAN_EVENT_INFO_TYPE_DFID_NAME) {
          std::string name(after, strnlen(after, static_cast<std::size_t>(rec_end - after)));
          ino_t dir = InoOf(h);
          if (dir && name == ".") {
            inodes.insert(dir);  // the directory's own change (mode, owner, times)
          } else if (dir && !name.empty() && (m.mask & kNameEvents)) {
            entries.emplace(dir, std::move(name));
            inodes.insert(dir);  // its times and link count
          }
        } else if (hdr.info_type == FAN_EVENT_INFO_TYPE_FID ||
                   hdr.info_type == FAN_EVENT_INFO_TYPE_DFID) {
          if (ino_t ino = InoOf(h)) inodes.insert(ino);
        }
        r = rec_end;
      }
    }
    if (m.fd >= 0) close(m.fd);
    p += m.event_len;
    len -= m.event_len;
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
