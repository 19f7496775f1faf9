#include "fs/notifier.h"

#include <cassert>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <linux/fuse.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

namespace originfs {
namespace {
thread_local bool t_notifier_thread = false;
constexpr int kNotifyIncEpoch = 8;  // FUSE_NOTIFY_INC_EPOCH (protocol 7.44)
constexpr uint64_t kRootIno = 1;
}  // namespace

Notifier::~Notifier() { Stop(); }

void Notifier::Start(fuse_session* se) {
  {
    std::lock_guard lock(mu_);
    se_ = se;
  }
  thread_ = std::thread([this] {
    t_notifier_thread = true;
    Loop();
  });
}

void Notifier::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Notifier::InvalidateEntry(uint64_t parent, const std::string& name) {
  {
    std::lock_guard lock(mu_);
    if (stopping_ || !se_) return;
    queue_.push_back(Note{parent, name});
  }
  cv_.notify_one();
}

void Notifier::InvalidatePages(uint64_t ino, int64_t off, int64_t len) {
  {
    std::lock_guard lock(mu_);
    if (stopping_ || !se_) return;
    queue_.push_back(Note{ino, "", off, len});
  }
  cv_.notify_one();
}

void Notifier::InvalidateEverything() {
  {
    std::lock_guard lock(mu_);
    if (stopping_ || !se_) return;
    Note n{kRootIno, ""};
    n.everything = true;
    queue_.push_back(std::move(n));
  }
  cv_.notify_one();
}

void Notifier::InvalidateAttributes(fuse_session* se, uint64_t ino) {
  int rc = fuse_lowlevel_notify_inval_inode(se, ino, -1, 0);
  if (rc != 0 && rc != -ENOENT) spdlog::debug("revalidate {}: {}", ino, std::strerror(-rc));
}

uint64_t Notifier::sent() const {
  std::lock_guard lock(mu_);
  return sent_;
}

void Notifier::Send(const Note& n) {
  // The one thread allowed to wait for the kernel's locks (see the class comment).
  if (!t_notifier_thread) {
    spdlog::critical("a kernel notification was about to be sent from a request thread");
    std::abort();
  }
  if (n.everything) {
    // libfuse 3.14 has no call for it: the notification is a bare header.
    fuse_out_header out{};
    out.len = sizeof out;
    out.error = kNotifyIncEpoch;
    if (write(fuse_session_fd(se_), &out, sizeof out) != static_cast<ssize_t>(sizeof out))
      spdlog::error("cannot make the kernel forget its cached names ({}): some may be stale",
                    std::strerror(errno));
    return;
  }
  int rc = n.name.empty()
               ? fuse_lowlevel_notify_inval_inode(se_, n.ino, n.off, n.len)
               : fuse_lowlevel_notify_inval_entry(se_, n.ino, n.name.c_str(), n.name.size());
  if (rc != 0 && rc != -ENOENT)
    spdlog::debug("invalidate {}/{}: {}", n.ino, n.name, std::strerror(-rc));
}

void Notifier::Loop() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (stopping_) return;
    Note n = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    Send(n);
    lock.lock();
    ++sent_;
  }
}

}  // namespace originfs
