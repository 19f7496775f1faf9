#include "core/bucket_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <spdlog/fmt/fmt.h>

namespace originfs {
namespace {

std::vector<std::string_view> SplitKey(std::string_view key) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  while (start <= key.size()) {
    std::size_t slash = key.find('/', start);
    std::size_t end = slash == std::string_view::npos ? key.size() : slash;
    if (end > start) parts.push_back(key.substr(start, end - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return parts;
}

bool BadComponent(std::string_view c) { return c == "." || c == ".." || c.size() > NAME_MAX; }

std::string ProcFdPath(int fd) { return fmt::format("/proc/self/fd/{}", fd); }

int MkdirAtP(int dir, const char* name, mode_t mode) {
  if (mkdirat(dir, name, mode) == 0 || errno == EEXIST) return 0;
  return -1;
}

}  // namespace

StagingFile::~StagingFile() {
  if (fd_ >= 0) close(fd_);
  if (!name_.empty() && !linked_) unlinkat(dir_fd_, name_.c_str(), 0);
}

Result<void> StagingFile::Append(const char* data, std::size_t len) {
  while (len > 0) {
    ssize_t n = write(fd_, data, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return FailErrno("writing staging file");
    }
    data += n;
    len -= static_cast<std::size_t>(n);
    size_ += static_cast<uint64_t>(n);
  }
  return {};
}

Result<void> StagingFile::Reset() {
  if (ftruncate(fd_, 0) != 0 || lseek(fd_, 0, SEEK_SET) != 0) return FailErrno("resetting staging file");
  size_ = 0;
  return {};
}

BucketStore::~BucketStore() {
  if (staging_fd_ >= 0) close(staging_fd_);
  if (root_fd_ >= 0) close(root_fd_);
}

Result<std::unique_ptr<BucketStore>> BucketStore::Open(const std::string& path, const StoreOptions& options) {
  std::unique_ptr<BucketStore> s(new BucketStore());
  s->options_ = options;
  char real[PATH_MAX];
  if (!realpath(path.c_str(), real)) return FailErrno(fmt::format("bucket {}", path));
  s->path_ = real;
  s->root_fd_ = open(real, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (s->root_fd_ < 0) return FailErrno(fmt::format("bucket {}", path));
  struct stat st;
  if (fstat(s->root_fd_, &st) != 0) return FailErrno(fmt::format("bucket {}", path));
  s->owner_uid_ = st.st_uid;
  s->owner_gid_ = st.st_gid;
  std::string state(kStateDirName);
  if (mkdirat(s->root_fd_, state.c_str(), 0700) != 0 && errno != EEXIST)
    return FailErrno(fmt::format("creating {}/{}", s->path_, state));
  std::string staging = state + "/staging";
  if (mkdirat(s->root_fd_, staging.c_str(), 0700) != 0 && errno != EEXIST)
    return FailErrno(fmt::format("creating {}/{}", s->path_, staging));
  s->staging_fd_ = openat(s->root_fd_, staging.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (s->staging_fd_ < 0) return FailErrno(fmt::format("opening {}/{}", s->path_, staging));
  s->CleanStaging();
  return s;
}

void BucketStore::CleanStaging() {
  int dfd = dup(staging_fd_);
  if (dfd < 0) return;
  DIR* d = fdopendir(dfd);
  if (!d) {
    close(dfd);
    return;
  }
  rewinddir(d);
  std::vector<std::string> names;
  while (dirent* e = readdir(d)) {
    std::string_view n = e->d_name;
    if (n != "." && n != "..") names.emplace_back(n);
  }
  closedir(d);
  for (const auto& n : names) unlinkat(staging_fd_, n.c_str(), 0);
}

Result<std::unique_ptr<StagingFile>> BucketStore::CreateStaging() {
  if (tmpfile_ok_) {
    int fd = openat(staging_fd_, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0) return std::unique_ptr<StagingFile>(new StagingFile(fd, staging_fd_, ""));
    if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) return FailErrno("creating staging file");
    tmpfile_ok_ = false;  // filesystem without O_TMPFILE: fall back to named files
  }
  static std::atomic<uint64_t> counter{0};
  std::string name = fmt::format("{}-{}.part", getpid(), counter.fetch_add(1));
  int fd = openat(staging_fd_, name.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) return FailErrno("creating staging file");
  return std::unique_ptr<StagingFile>(new StagingFile(fd, staging_fd_, std::move(name)));
}

Result<int> BucketStore::OpenKey(std::string_view key, int flags) const {
  auto parts = SplitKey(key);
  if (parts.empty()) {
    int fd = openat(root_fd_, ".", flags | O_CLOEXEC);
    if (fd < 0) return FailErrno("opening bucket root");
    return fd;
  }
  int dir = root_fd_;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    if (BadComponent(parts[i])) {
      if (dir != root_fd_) close(dir);
      return Fail(EINVAL, fmt::format("invalid key component in \"{}\"", key));
    }
    std::string comp(parts[i]);
    bool last = i + 1 == parts.size();
    int f = last ? (flags | O_NOFOLLOW | O_CLOEXEC) : (O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int fd = openat(dir, comp.c_str(), f);
    int saved = errno;
    if (dir != root_fd_) close(dir);
    if (fd < 0) {
      errno = saved;
      return FailErrno(fmt::format("opening {}", key));
    }
    dir = fd;
  }
  return dir;
}

Result<int> BucketStore::MakeDirs(std::string_view dir_key) const {
  auto parts = SplitKey(dir_key);
  // Refuse before creating anything: a bad key must leave no directories behind.
  for (std::string_view p : parts) {
    if (BadComponent(p)) return Fail(EINVAL, fmt::format("invalid key component in \"{}\"", dir_key));
  }
  int dir = fcntl(root_fd_, F_DUPFD_CLOEXEC, 0);
  if (dir < 0) return FailErrno("dup");
  for (std::string_view p : parts) {
    std::string comp(p);
    if (MkdirAtP(dir, comp.c_str(), options_.dir_mode) != 0) {
      int saved = errno;
      close(dir);
      errno = saved;
      return FailErrno(fmt::format("creating directory {}", dir_key));
    }
    int next = openat(dir, comp.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int saved = errno;
    close(dir);
    if (next < 0) {
      errno = saved;
      return FailErrno(fmt::format("opening directory {}", dir_key));
    }
    dir = next;
  }
  return dir;
}

Result<void> BucketStore::Commit(StagingFile& file, std::string_view key, std::optional<int64_t> mtime) {
  std::size_t slash = key.rfind('/');
  std::string_view dir_key = slash == std::string_view::npos ? std::string_view() : key.substr(0, slash);
  std::string base(slash == std::string_view::npos ? key : key.substr(slash + 1));
  if (base.empty() || BadComponent(base)) return Fail(EINVAL, fmt::format("invalid key \"{}\"", key));

  if (fchmod(file.fd_, options_.file_mode) != 0) return FailErrno("chmod staging file");
  if (geteuid() == 0 && fchown(file.fd_, owner_uid_, owner_gid_) != 0) return FailErrno("chown staging file");
  if (mtime) {
    timespec times[2];
    times[0].tv_sec = 0;
    times[0].tv_nsec = UTIME_NOW;
    times[1].tv_sec = *mtime;
    times[1].tv_nsec = 0;
    if (futimens(file.fd_, times) != 0) return FailErrno("setting mtime");
  }
  if (options_.fsync_objects && fdatasync(file.fd_) != 0) return FailErrno("fdatasync");

  auto dir = MakeDirs(dir_key);
  if (!dir) return std::unexpected(dir.error());
  int rc;
  if (file.name_.empty()) {
    rc = linkat(AT_FDCWD, ProcFdPath(file.fd_).c_str(), *dir, base.c_str(), AT_SYMLINK_FOLLOW);
  } else {
    rc = renameat2(file.dir_fd_, file.name_.c_str(), *dir, base.c_str(), RENAME_NOREPLACE);
    if (rc != 0 && errno == EINVAL) {  // filesystem without RENAME_NOREPLACE
      rc = linkat(file.dir_fd_, file.name_.c_str(), *dir, base.c_str(), 0);
      if (rc == 0) unlinkat(file.dir_fd_, file.name_.c_str(), 0);
    }
  }
  int saved = errno;
  close(*dir);
  if (rc != 0) {
    errno = saved;
    return FailErrno(fmt::format("linking {}", key));
  }
  file.linked_ = true;
  return {};
}

Result<void> BucketStore::CommitCopy(int src_fd, std::string_view key, std::optional<int64_t> mtime) {
  auto staging = CreateStaging();
  if (!staging) return std::unexpected(staging.error());
  char buf[1 << 16];
  off_t off = 0;
  for (;;) {
    ssize_t n = pread(src_fd, buf, sizeof buf, off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return FailErrno("reading cached copy");
    if (n == 0) break;
    if (auto a = (*staging)->Append(buf, static_cast<std::size_t>(n)); !a) return a;
    off += n;
  }
  return Commit(**staging, key, mtime);
}

}  // namespace originfs
