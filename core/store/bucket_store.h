// The bucket directory on disk and the staging area used to land fetched
// objects atomically: bytes go to a staging file (O_TMPFILE where the
// filesystem supports it, a named file otherwise) on the bucket's filesystem,
// and only a complete, verified file is linked into place. A crash at any
// point leaves either nothing or the whole object under its key.
#pragma once

#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/common/error.h"
#include "core/common/group_commit.h"
#include "core/common/unique_fd.h"

namespace originfs {

class BucketStore;

// A file being filled. Destroying an uncommitted StagingFile discards it.
class StagingFile {
 public:
  ~StagingFile();
  StagingFile(const StagingFile&) = delete;
  StagingFile& operator=(const StagingFile&) = delete;

  int fd() const { return fd_; }
  uint64_t size() const { return size_; }
  // Appends; ENOSPC / EDQUOT come back with that code.
  Result<void> Append(const char* data, std::size_t len);
  // Empties the file so a retried download can start over.
  Result<void> Reset();
  // Writes start again at offset 0 over what is there (a retry of the same
  // version: readers of the bytes already in keep reading them).
  void Rewind() { size_ = 0; }
  // The body is complete: the descriptor becomes read-only before the file
  // is linked into the bucket (ReopenReadOnly: no ETXTBSY for programs).
  void Seal() { (void)ReopenReadOnly(fd_); }
  // Records that the file holds n bytes written by other means (pwrite of
  // ranges fetched in parallel).
  void SetFilled(uint64_t n) { size_ = n; }

 private:
  friend class BucketStore;
  StagingFile(int fd, int dir_fd, std::string name)
      : fd_(fd), dir_fd_(dir_fd), name_(std::move(name)) {}
  int fd_ = -1;
  int dir_fd_ = -1;   // staging directory (not owned)
  std::string name_;  // empty for O_TMPFILE
  uint64_t size_ = 0;
  bool linked_ = false;
};

struct StoreOptions {
  // Landings durable before they are visible or recorded: fdatasync each
  // object before linking it, fsync the directories the link and its new
  // parents changed. Off only for tests of the old behaviour and for
  // buckets on tmpfs, where there is nothing to lose.
  bool fsync_objects = true;
  mode_t file_mode = 0644;
  mode_t dir_mode = 0755;
  // Several hosts share the bucket (NFS, CephFS, GlusterFS): a missing key is
  // fetched under an fcntl lock on a per-key lock file in the bucket, so one
  // host downloads it and the others find it in place.
  bool shared = false;
  // shared=auto on a local bucket: behave as shared while another live
  // instance (a lock in .originfs/instances) serves the same bucket.
  bool shared_when_others = false;
};

// True for NFS, SMB/CIFS, CephFS, GlusterFS and other FUSE, 9p, Lustre, ...
bool IsNetworkFilesystem(const std::string& path);

// What the host holding a key's lock tells the others of its download, in
// the key's lock file, so they can read along (shared buckets): its staging
// file, the object's size and mtime, and how many bytes from offset 0 are on
// the shared filesystem already (written and synced).
struct KeyProgress {
  std::string staging;  // file name in .originfs/staging
  uint64_t size = 0;
  int64_t mtime = 0;
  uint64_t received = 0;
  // The version's validators when they pin it (else empty): a host that
  // takes the download over asks for the rest of exactly that version.
  std::string etag, last_modified;
  bool operator==(const KeyProgress&) const = default;
};
// The lock file's record ("ofs1 RECEIVED SIZE MTIME NAME CHECK", padded to
// kProgressBytes); nullopt for anything else (empty, torn by a concurrent
// write, or not one).
inline constexpr std::size_t kProgressBytes = 256;
std::string FormatProgress(const KeyProgress& p);
std::optional<KeyProgress> ParseProgress(std::string_view record);

// Holds the cross-host lock of one key; releases (and removes the lock file) on destruction.
class KeyLock {
 public:
  KeyLock() = default;
  KeyLock(int dir_fd, std::string name, int fd)
      : dir_fd_(dir_fd), name_(std::move(name)), fd_(fd) {}
  ~KeyLock();
  KeyLock(KeyLock&& o) noexcept;
  KeyLock& operator=(KeyLock&&) = delete;
  KeyLock(const KeyLock&) = delete;
  // Tells the hosts waiting for this key how far the download is.
  void Publish(const KeyProgress& p) const;

 private:
  int dir_fd_ = -1;
  std::string name_;
  int fd_ = -1;
};

class BucketStore {
 public:
  // Name reserved in the bucket root for originfs's own state; hidden from the mount.
  static constexpr std::string_view kStateDirName = ".originfs";
  // The state directory's layout, owned here alone. Below kStateDirName:
  static constexpr std::string_view kStagingDir = "staging";      // downloads in progress
  static constexpr std::string_view kLocksDir = "locks";          // per-key locks (shared)
  static constexpr std::string_view kInstancesDir = "instances";  // live instances' locks
  static constexpr std::string_view kCacheDir = "cache";          // writeback = false objects
  static constexpr std::string_view kEpochFile = "epoch";         // see epoch()
  // Below the state directory, or state_dir= when the index lives elsewhere:
  static constexpr std::string_view kIndexDir = "index";        // the LMDB index
  static constexpr std::string_view kLogFile = "originfs.log";  // where syslog is missing
  // The state directory of the bucket at bucket_path, or state_dir if set.
  static std::string StateDir(std::string_view bucket_path, std::string_view state_dir = "") {
    if (!state_dir.empty()) return std::string(state_dir);
    std::string s(bucket_path);
    s += '/';
    s += kStateDirName;
    return s;
  }

  ~BucketStore();
  BucketStore(const BucketStore&) = delete;
  BucketStore& operator=(const BucketStore&) = delete;

  // Opens (and creates the staging area of) the bucket at path, which must be
  // an existing directory. Removes staging files left by a previous run.
  static Result<std::unique_ptr<BucketStore>> Open(const std::string& path,
                                                   const StoreOptions& options);

  const std::string& path() const { return path_; }  // canonical absolute path
  // When the bucket was first mounted (seconds since the epoch; 0 if not
  // known): the times shown for directories only the origin has, the same
  // at every mount and on every host.
  int64_t epoch() const { return epoch_; }
  int root_fd() const { return root_fd_; }  // O_PATH | O_DIRECTORY

  // A new, empty staging file: one made ahead of time when there is one
  // (so a download's first byte does not wait for inode allocation), else a
  // fresh one.
  Result<std::unique_ptr<StagingFile>> CreateStaging();
  // Makes unnamed (O_TMPFILE) staging files ahead until `count` are spare;
  // nothing on filesystems without O_TMPFILE. Called off the critical path.
  void PrepareStaging(std::size_t count);

  // Stamps the staging file (mode, owner of the bucket root, mtime) and links
  // it at key, creating parent directories. Fails with EEXIST when a file is
  // already there: files in the bucket always win.
  Result<void> Commit(StagingFile& file, std::string_view key, std::optional<int64_t> mtime);
  // Like Commit, but atomically replaces whatever is at key (refresh).
  Result<void> CommitReplace(StagingFile& file, std::string_view key, std::optional<int64_t> mtime);

  // Copies src (from offset 0) into a new object at key, as Commit does.
  Result<void> CommitCopy(int src_fd, std::string_view key, std::optional<int64_t> mtime);

  // Opens key (relative, '/'-separated) without following any symlink and
  // without leaving the bucket. flags are added to O_NOFOLLOW | O_CLOEXEC.
  Result<int> OpenKey(std::string_view key, int flags) const;

  // mkdir -p for a directory key; returns an O_PATH fd for it. durable:
  // each directory made is made durable (its parent fsynced).
  Result<int> MakeDirs(std::string_view dir_key, bool durable = false) const;

  // Removes leftover named staging files of this and of dead instances
  // (at start, before any download of ours).
  void CleanStaging();
  // While running: removes the named staging files of instances that died
  // (their lock in .originfs/instances is free or gone: a host killed
  // mid-download that never comes back), keeping ours and live ones'.
  // Returns how many it removed. The daemon calls it every few seconds.
  std::size_t CleanDeadStaging();

  // Whether a miss must take the key's lock: always with `shared`; with
  // `shared_when_others`, while another live instance's lock is in
  // .originfs/instances (one fstat of that directory per call when nothing
  // changed there, a scan of it when something did).
  bool shared() const { return options_.shared || (options_.shared_when_others && OthersLive()); }
  // True if an instance other than this one holds its lock in .originfs/instances.
  bool OthersLive() const;
  // Counts files this store has landed (linked or renamed into place).
  uint64_t landings() const { return landings_.load(std::memory_order_acquire); }
  // The ctime a landed file, or a directory a landing changed, had right
  // after the landing (this process; the most recent ones). A file or
  // directory still at that ctime has not changed since it landed.
  // now (a file or directory a landing changed) is as the last landing left
  // it, or a landing is changing it right now.
  bool UnchangedSinceLanding(const struct stat& now) const;
  // A directory that landings changed (new entries, new subdirectories) and
  // nothing else since: its mtime, ctime, link count and size as they were
  // before the first of those landings, put into now; false (now as it is)
  // for any other.
  bool AsBeforeLandings(struct stat& now) const;
  // Waits until this host (process) holds key's lock (shared buckets),
  // polling every kFollowPoll and handing waiting what the lock's holder has
  // published meanwhile (nullopt: nothing yet). waiting returns false to
  // give up (shutting down, a holder that makes no progress): ECANCELED.
  using LockWait = std::function<bool(const std::optional<KeyProgress>&)>;
  static constexpr auto kFollowPoll = std::chrono::milliseconds(50);
  Result<KeyLock> LockKey(std::string_view key, const LockWait& waiting);
  // Another host's staging file, read-only (named by its KeyProgress).
  Result<int> OpenStaging(std::string_view name) const;
  // Takes over the staging file of a host that died mid-download: renamed
  // to one of ours (so no sweep removes it), with its first `received`
  // bytes kept and the rest to be written.
  Result<std::unique_ptr<StagingFile>> AdoptStaging(std::string_view name, uint64_t received);
  // True if key names an entry in the bucket now.
  bool Exists(std::string_view key) const;

  // ---- Whiteouts (whiteout.cc). A name removed through the mount that the
  // origin still has must stay removed: the bucket keeps a whiteout in its
  // place, a character device 0/0 (overlayfs's convention), so it survives a
  // remount and every host of a shared bucket sees it. A directory made (or
  // moved) where a whiteout was is opaque (the xattr kOpaqueXattr on it):
  // nothing below it comes from the origin. Operations that need mknod of a
  // device (root, or CAP_MKNOD) fail with EPERM without it.
  static constexpr const char* kOpaqueXattr = "user.originfs.opaque";
  // On a file made (or moved) where a whiteout was: its removal leaves one
  // again, whatever else is known. Linux refuses user attributes on
  // symlinks and devices; those carry kTrustedOverWhiteoutXattr (as
  // overlayfs marks its own, it needs CAP_SYS_ADMIN, which making the
  // whiteout needed as root anyway). Neither shows through the mount.
  static constexpr const char* kOverWhiteoutXattr = "user.originfs.over_whiteout";
  static constexpr const char* kTrustedOverWhiteoutXattr = "trusted.originfs.over_whiteout";
  static bool IsWhiteout(const struct stat& st);
  // Marks the entry at name in dir_fd (kOverWhiteoutXattr, else
  // kTrustedOverWhiteoutXattr); false, with one warning, when neither can
  // be set (the name's origin copy then comes back after a removal).
  static bool MarkOverWhiteout(int dir_fd, std::string_view name);
  // Marks whatever is at name in dir_fd as made where a whiteout was: a
  // directory opaque, anything else with MarkOverWhiteout.
  static void MarkMadeOverWhiteout(int dir_fd, std::string_view name);
  // True when the entry at name in dir_fd was made where a whiteout was:
  // one marked by MarkOverWhiteout, or an opaque directory.
  static bool MadeOverWhiteout(int dir_fd, std::string_view name);
  // Puts a whiteout at name in dir_fd in place of a file, symlink or nothing,
  // atomically (a reader sees the file or the whiteout, never neither).
  Result<void> PutWhiteout(int dir_fd, std::string_view name);
  // Moves a directory whose entries are all whiteouts (or none) out of the
  // way and leaves a whiteout at its name; ENOTEMPTY if anything else is in it.
  Result<void> ReplaceDirWithWhiteout(int dir_fd, std::string_view name);
  // Whether the directory at name in dir_fd holds nothing but whiteouts.
  static Result<bool> OnlyWhiteoutsIn(int dir_fd, std::string_view name);
  // Removes a whiteout at name, if one is there: true when one was.
  Result<bool> ClearWhiteout(int dir_fd, std::string_view name);
  // Marks the directory (an fd that is not O_PATH) opaque, or clears the mark.
  static Result<void> SetOpaque(int dir_fd, bool opaque);
  static bool IsOpaque(int dir_fd);
  // True when the origin must not be asked for key: key is a whiteout, or a
  // directory above it is one or is opaque. dir_itself: key is a directory
  // and the question is about the names below it (a listing).
  bool Shadowed(std::string_view key, bool dir_itself = false) const;

 private:
  BucketStore() = default;
  Result<void> CommitImpl(StagingFile& file, std::string_view key, std::optional<int64_t> mtime,
                          bool replace);
  // landing.cc: durable landings in groups (see there).
  struct Landing;
  void LandGroup(const std::vector<Landing*>& batch);
  // Links (or renames) file at key; *dir gets the directory it was linked in.
  Result<void> Link(StagingFile& file, std::string_view key, bool replace, UniqueFd* dir);
  // fsync of a directory held as an O_PATH descriptor (which fsync refuses).
  static int SyncDir(int path_fd);
  GroupCommit<Landing> group_{{.full = 64,
                               .stream = std::chrono::milliseconds(10),
                               .linger = std::chrono::milliseconds(1)}};
  std::string path_;
  int root_fd_ = -1;
  int64_t epoch_ = 0;
  std::size_t SweepStaging(bool running);  // CleanStaging (false), CleanDeadStaging (true)
  std::string NewStagingName();            // "<instance>.<n>.part": unique, swept if left
  int staging_fd_ = -1;
  int locks_fd_ = -1;          // .originfs/locks: per-key lock files
  int instances_fd_ = -1;      // .originfs/instances: one locked file per live instance
  int instance_lock_fd_ = -1;  // ours, write-locked while we live
  std::string instance_id_;    // host-pid-random: prefix of our named staging files
  uid_t owner_uid_ = 0;
  gid_t owner_gid_ = 0;
  StoreOptions options_;
  std::atomic<uint64_t> landings_{0};
  // Around a landing's change of a file or directory: Begin (fstat of fd
  // into before, taken under stamps_mu_ so that no landing ends between the
  // two), change, End with the same fd. False: fd could not be stat'ed.
  bool BeginLanding(int fd, struct stat& before) const;
  void EndLanding(const struct stat& before, int fd) const;
  // A directory a landing made (name in dir): its ctime from now on is a
  // landing's. just_made right after the mkdir, false after each change the
  // making adds (its owner).
  void NoteMade(int dir, const char* name, bool just_made) const;
  // What OthersLive last found, and the instances directory's state then.
  mutable std::mutex others_mu_;
  mutable bool others_live_ = false;     // guarded by others_mu_
  mutable bool others_known_ = false;    // guarded by others_mu_
  mutable bool others_settled_ = false;  // guarded by others_mu_; changed long before the scan
  bool own_clock_fs_ = false;  // the instances directory's times are this host's (OwnClockFs)
  mutable timespec others_dir_mtime_{};    // guarded by others_mu_
  mutable timespec others_dir_ctime_{};    // guarded by others_mu_
  mutable int64_t others_scanned_ms_ = 0;  // guarded by others_mu_; steady clock
  static constexpr std::size_t kMaxStamps = 1 << 16;
  mutable std::mutex stamps_mu_;
  struct Stamp {
    // Every ctime landings gave it since the last change of anyone else's
    // (a stat taken between two landings in a row falls inside).
    timespec lo{}, hi{};
    bool has_range = false;
    int pending = 0;  // landings changing it now
    bool has_before = false;
    timespec mtime_before{}, ctime_before{};
    nlink_t nlink_before = 0;
    off_t size_before = 0;
  };
  mutable std::map<std::pair<dev_t, ino_t>, Stamp> stamps_;  // guarded by stamps_mu_
  // Directories being made by landings right now (mkdir to NoteMade): a
  // directory without a stamp seen meanwhile may be one of them.
  mutable std::atomic<int> making_dirs_{0};
  std::atomic<bool> tmpfile_ok_{true};  // written by download threads
  std::mutex spare_mu_;
  std::vector<int> spare_staging_;  // guarded by spare_mu_; unnamed, empty, ours
};

}  // namespace originfs
