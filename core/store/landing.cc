// Landing: a complete staging file linked (or renamed) under its key.
//
// Durable landings (StoreOptions::fsync_objects, the default) are made in
// groups: landings that arrive while one group is being made durable form
// the next group, made by one of them (the leader) for all. For a group:
// every file's data is written out (sync_file_range starts them all, then
// fdatasync waits for each: the first wait commits the journal for all of
// them, the others find their data on disk), then every file is linked,
// then every directory that got a new name is fsynced once. So a file's
// bytes are on disk before its name, and its name before Commit returns
// (and before the index records it) — at a few flushes per group instead
// of two per file.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>
#include <utility>
#include <vector>

#include <spdlog/fmt/fmt.h>

#include "core/common/unique_fd.h"
#include "core/store/bucket_store.h"

namespace originfs {
namespace {

std::string ProcFdPath(int fd) { return fmt::format("/proc/self/fd/{}", fd); }

// Gives an O_TMPFILE file a name. AT_EMPTY_PATH links the descriptor itself
// (before Linux 6.10 only with CAP_DAC_READ_SEARCH, which a root daemon has);
// otherwise the /proc/self/fd path, a longer walk, does the same.
int LinkUnnamed(int fd, int dir_fd, const char* name) {
  static std::atomic<bool> empty_path_ok{true};
  if (empty_path_ok.load(std::memory_order_relaxed)) {
    if (linkat(fd, "", dir_fd, name, AT_EMPTY_PATH) == 0) return 0;
    if (errno != ENOENT && errno != EPERM && errno != EINVAL) return -1;
    // ENOENT is also what a missing capability looks like: try the other way
    // and remember only if that one works.
    int rc = linkat(AT_FDCWD, ProcFdPath(fd).c_str(), dir_fd, name, AT_SYMLINK_FOLLOW);
    if (rc == 0) empty_path_ok.store(false, std::memory_order_relaxed);
    return rc;
  }
  return linkat(AT_FDCWD, ProcFdPath(fd).c_str(), dir_fd, name, AT_SYMLINK_FOLLOW);
}

// Splits key into its directory key and base name.
std::pair<std::string_view, std::string> SplitLast(std::string_view key) {
  std::size_t slash = key.rfind('/');
  if (slash == std::string_view::npos) return {std::string_view(), std::string(key)};
  return {key.substr(0, slash), std::string(key.substr(slash + 1))};
}

}  // namespace

struct BucketStore::Landing {
  StagingFile* file;
  std::string_view key;
  bool replace;
  Result<void> result;
};

Result<void> BucketStore::Commit(StagingFile& file, std::string_view key,
                                 std::optional<int64_t> mtime) {
  return CommitImpl(file, key, mtime, false);
}

Result<void> BucketStore::CommitReplace(StagingFile& file, std::string_view key,
                                        std::optional<int64_t> mtime) {
  return CommitImpl(file, key, mtime, true);
}

Result<void> BucketStore::CommitImpl(StagingFile& file, std::string_view key,
                                     std::optional<int64_t> mtime, bool replace) {
  auto [dir_key, base] = SplitLast(key);
  if (base.empty() || base == "." || base == ".." || base.size() > NAME_MAX)
    return Fail(EINVAL, fmt::format("invalid key \"{}\"", key));

  if (fchmod(file.fd_, options_.file_mode) != 0) return FailErrno("chmod staging file");
  static const uid_t euid = geteuid();
  static const gid_t egid = getegid();
  if (euid == 0 && (owner_uid_ != euid || owner_gid_ != egid) &&
      fchown(file.fd_, owner_uid_, owner_gid_) != 0)
    return FailErrno("chown staging file");
  if (mtime) {
    timespec times[2];
    times[0].tv_sec = 0;
    times[0].tv_nsec = UTIME_NOW;
    times[1].tv_sec = *mtime;
    times[1].tv_nsec = 0;
    if (futimens(file.fd_, times) != 0) return FailErrno("setting mtime");
  }
  if (!options_.fsync_objects) {
    UniqueFd dir;
    return Link(file, key, replace, &dir);
  }
  Landing me{&file, key, replace, {}};
  group_.Join(
      &me, [this](const std::vector<Landing*>& batch) { LandGroup(batch); },
      [](const std::vector<Landing*>& batch, const std::exception& e) {
        for (Landing* l : batch) l->result = Fail(EIO, std::string("landing: ") + e.what());
      });
  return me.result;
}

void BucketStore::LandGroup(const std::vector<Landing*>& batch) {
  // Durable before visible: the bytes reach the disk before the name does,
  // so a power cut leaves either no file or the whole one under the key
  // (ext4's auto_da_alloc does not cover linking an O_TMPFILE or a new name).
  for (Landing* l : batch) (void)sync_file_range(l->file->fd_, 0, 0, SYNC_FILE_RANGE_WRITE);
  for (Landing* l : batch) {
    if (fdatasync(l->file->fd_) != 0) l->result = FailErrno("fdatasync");
  }
  // Linked, then each directory that got a name fsynced once: the names are
  // durable before Commit returns (and so before the index records them).
  struct Dir {
    UniqueFd fd;
    dev_t dev;
    ino_t ino;
    std::vector<Landing*> landings;
  };
  std::vector<Dir> dirs;
  for (Landing* l : batch) {
    if (!l->result) continue;
    UniqueFd dir;
    l->result = Link(*l->file, l->key, l->replace, &dir);
    struct stat st;
    if (!l->result || !dir || fstat(dir.get(), &st) != 0) continue;
    Dir* same = nullptr;
    for (Dir& d : dirs) {
      if (d.dev == st.st_dev && d.ino == st.st_ino) same = &d;
    }
    if (!same) same = &dirs.emplace_back(Dir{std::move(dir), st.st_dev, st.st_ino, {}});
    same->landings.push_back(l);
  }
  for (Dir& d : dirs) {
    if (SyncDir(d.fd.get()) == 0) continue;
    // The complete files are in place, but not known to be durable.
    Error e{errno, fmt::format("syncing a directory: {}", std::strerror(errno))};
    for (Landing* l : d.landings) l->result = std::unexpected(e);
  }
}

Result<void> BucketStore::Link(StagingFile& file, std::string_view key, bool replace,
                               UniqueFd* dir_out) {
  auto [dir_key, base] = SplitLast(key);
  auto dir = MakeDirs(dir_key, options_.fsync_objects);
  if (!dir) return std::unexpected(dir.error());
  UniqueFd held(*dir);
  // The directory and the file change with the link: until each is stamped,
  // a change seen in them is the landing's (no stat catches it half done).
  struct stat before, file_before;
  bool known = BeginLanding(held.get(), before);
  bool file_known = BeginLanding(file.fd_, file_before);
  struct Ended {
    const BucketStore& s;
    bool dir_known, file_known;
    const struct stat &dir_before, &file_before;
    int dir_fd, file_fd;
    ~Ended() {
      if (file_known) s.EndLanding(file_before, file_fd);
      if (dir_known) s.EndLanding(dir_before, dir_fd);
    }
  } ended{*this, known, file_known, before, file_before, held.get(), file.fd_};
  int rc;
  if (replace) {
    // Give an unnamed file a name in staging first; rename() then swaps it in.
    if (file.name_.empty()) {
      static std::atomic<uint64_t> counter{0};
      std::string name = fmt::format("{}.r{}.part", instance_id_, counter.fetch_add(1));
      if (LinkUnnamed(file.fd_, staging_fd_, name.c_str()) != 0)
        return FailErrno("naming staging file");
      file.name_ = name;
      file.dir_fd_ = staging_fd_;
    }
    rc = renameat(file.dir_fd_, file.name_.c_str(), held.get(), base.c_str());
  } else if (file.name_.empty()) {
    rc = LinkUnnamed(file.fd_, held.get(), base.c_str());
  } else {
    rc = renameat2(file.dir_fd_, file.name_.c_str(), held.get(), base.c_str(), RENAME_NOREPLACE);
    if (rc != 0 && errno == EINVAL) {  // filesystem without RENAME_NOREPLACE
      rc = linkat(file.dir_fd_, file.name_.c_str(), held.get(), base.c_str(), 0);
      if (rc == 0) unlinkat(file.dir_fd_, file.name_.c_str(), 0);
    }
  }
  if (rc != 0) return FailErrno(fmt::format("linking {}", key));
  file.linked_ = true;
  landings_.fetch_add(1, std::memory_order_release);
  *dir_out = std::move(held);
  return {};
}

}  // namespace originfs
