#include "fs/notifier.h"

#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

namespace originfs {

thread_local fuse_session* t_handler_session = nullptr;

Notifier::~Notifier() { Stop(); }

void Notifier::Start(fuse_session* se) {
  {
    std::lock_guard lock(mu_);
    se_ = se;
  }
  thread_ = std::thread([this] { Loop(); });
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
  if (t_handler_session) {
    // In a setxattr handler: the kernel holds only the file's lock, not its
    // directory's, so this cannot wait on us.
    int rc = fuse_lowlevel_notify_inval_entry(t_handler_session, parent, name.c_str(), name.size());
    if (rc != 0 && rc != -ENOENT) spdlog::debug("invalidate {}: {}", name, std::strerror(-rc));
    return;
  }
  {
    std::lock_guard lock(mu_);
    if (stopping_ || !se_) return;
    queue_.emplace_back(parent, name);
  }
  cv_.notify_one();
}

void Notifier::Loop() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (stopping_) return;
    auto [parent, name] = std::move(queue_.front());
    queue_.pop_front();
    fuse_session* se = se_;
    lock.unlock();
    // May wait for the kernel's directory lock: never on a request or download thread.
    int rc = fuse_lowlevel_notify_inval_entry(se, parent, name.c_str(), name.size());
    if (rc != 0 && rc != -ENOENT) spdlog::debug("invalidate {}: {}", name, std::strerror(-rc));
    lock.lock();
  }
}

}  // namespace originfs
