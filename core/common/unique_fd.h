#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <string>
#include <utility>

namespace originfs {

// Owns a file descriptor; closes it on destruction. Movable, not copyable.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { Reset(); }
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) {
      Reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  int Release() { return std::exchange(fd_, -1); }
  void Reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// Makes descriptor number fd a read-only description of the same file (the
// swap is atomic for concurrent readers of fd). A file someone holds open for
// writing cannot be executed (ETXTBSY): what the daemon keeps open of a file
// it has finished writing must not count. False (fd unchanged) on failure.
inline bool ReopenReadOnly(int fd) {
  std::string proc = "/proc/self/fd/" + std::to_string(fd);
  int ro = ::open(proc.c_str(), O_RDONLY | O_CLOEXEC);
  if (ro < 0) return false;
  bool ok = ::dup3(ro, fd, O_CLOEXEC) == fd;
  ::close(ro);
  return ok;
}

}  // namespace originfs
