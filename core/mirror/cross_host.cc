#include "core/mirror/cross_host.h"

#include <unistd.h>

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <thread>

#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

#include "core/mirror/record.h"

namespace originfs {

Announcer::Announcer(const Flight& flight, const KeyLock& lock) : flight_(flight), lock_(lock) {
  thread_ = std::thread([this] { Loop(); });
}

Announcer::~Announcer() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void Announcer::Loop() {
  std::unique_lock lock(mu_);
  while (!cv_.wait_for(lock, kInterval, [this] { return stop_; })) {
    lock.unlock();
    bool more = AnnounceOnce();
    lock.lock();
    if (!more) return;
  }
}

bool Announcer::AnnounceOnce() {
  auto head = flight_.head();
  if (!head) return true;  // not yet
  if (!*head || (*head)->kind != OriginKind::kFile) return false;
  auto file = flight_.stream_file();
  if (!file) return !flight_.finished();
  if (name_.empty()) {
    char buf[PATH_MAX];
    ssize_t n = readlink(fmt::format("/proc/self/fd/{}", file->get()).c_str(), buf, sizeof buf - 1);
    if (n <= 0) return false;
    std::string path(buf, static_cast<std::size_t>(n));
    if (!path.ends_with(".part")) return false;  // O_TMPFILE ("... (deleted)"): no name to give
    name_ = path.substr(path.rfind('/') + 1);
  }
  uint64_t received = flight_.received();
  if (any_ && received == announced_) return !flight_.finished();
  // The bytes announced must be readable by other hosts' clients first.
  if (fdatasync(file->get()) != 0) return false;
  lock_.Publish(KeyProgress{name_, (*head)->size, (*head)->mtime, received, (*head)->etag,
                            (*head)->last_modified});
  announced_ = received;
  any_ = true;
  return !flight_.finished();
}

bool Follower::operator()(const std::optional<KeyProgress>& p) {
  if (stop_.load()) return false;
  if (!allowed_ || !p || p->size == 0) return true;
  if (!file_) {
    auto fd = store_.OpenStaging(p->staging);
    if (!fd) return true;  // gone meanwhile (landed, or abandoned): the lock will tell
    file_ = std::make_shared<UniqueFd>(*fd);
    staging_ = p->staging;
    expected_size_ = p->size;
    spdlog::debug("fetch {}: reading along another host's download ({})", flight_.key(),
                  p->staging);
    flight_.PublishHead(Resolution{OriginKind::kFile, p->size, p->mtime, true, "",
                                   InoOf(file_->get()), p->etag, p->last_modified});
    flight_.SetStream(file_);
  }
  if (p->staging != staging_) return true;  // not the file we follow
  last_ = *p;
  // Only what this host's client of the shared filesystem shows of the file:
  // its reads stop at the size it knows (NFS's attribute cache, a FUSE
  // client's), so bytes announced beyond it would read as an early end.
  // fstat also refreshes that size where the cache has expired.
  struct stat st;
  if (fstat(file_->get(), &st) != 0) return true;
  flight_.Progress(std::min<uint64_t>(p->received, static_cast<uint64_t>(st.st_size)), false);
  return true;
}

void Follower::Landed(const std::string& key) {
  if (!file_) return;
  // Readers still read the followed descriptor (now the landed file): this
  // host's client must know its whole size. An open revalidates it (NFS's
  // close-to-open), an fstat where attributes have expired.
  for (int i = 0; i < 100; ++i) {
    struct stat st;
    if (auto fd = store_.OpenKey(key, O_RDONLY); fd) close(*fd);
    if (fstat(file_->get(), &st) == 0 && static_cast<uint64_t>(st.st_size) >= expected_size_)
      return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  spdlog::warn("fetch {}: this host still sees the landed file short", key);
}

}  // namespace originfs
