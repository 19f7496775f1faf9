// Filesystem semantics of an originfs mount, without libfuse: inode table,
// local pass-through to the bucket, and back-source of missing names through
// the Mirror. fs/ translates FUSE requests into these calls and replies once;
// tests/unit/vfs calls them directly.
//
// Glossary (with core/mirror/mirror.h's: key, bucket, origin, miss,
// download, head, staging file, land, listing):
//   inode        an entry of the inode table, numbered by its FUSE node id.
//                Its kind (InodeKind) is one of
//                  local        in the bucket, reached through a file handle
//                               and, while cached, an O_PATH descriptor;
//                  origin file  known from a download's head, not landed yet;
//                  origin dir   a directory the origin has and the bucket
//                               does not (yet).
//   become local an origin inode whose key is now in the bucket takes the
//                bucket's file (BecomeLocal): after its download landed
//                (NoteIfLanded), or when an operation needed the bytes first
//                (WaitLanded).
//   shown number the st_ino the kernel was first shown for an inode; it does
//                not change when the inode becomes local.
//   descriptor cache  at most fd_cache_size_ local inodes keep descriptors
//                open (descriptors.cc); the others reopen theirs from the
//                handle.
//   revalidate   a refresh (mirror.h) of a landed file that nobody asked for
//                by name: at an open, per the rule's revalidate, or by
//                `originfs refresh --recursive` (revalidate.cc).
//
// Files: vfs.cc (table, lookup, getattr), origin_ops.cc (origin inodes and
// landing), passthrough.cc (operations on local names), readdir.cc,
// descriptors.cc, control.cc (user.originfs.* attributes).
//
// Inode numbers are the FUSE node ids. Every successful entry result
// (Lookup, MkDir, Create, ... and each ReadDir entry in plus mode) counts one
// lookup, released by Forget, as the kernel protocol requires.
//
// Operations that may have to wait for an origin (Lookup, Open) answer through
// a callback, which runs either before the call returns or later on a download
// thread, so waiting never occupies a caller's thread. Operations that need
// an origin file's bytes in the bucket first (setattr, rename, link, xattr
// writes) block until it lands.
#pragma once

#include <dirent.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/common/counters.h"
#include "core/common/error.h"
#include "core/common/flat_set.h"
#include "core/common/unique_fd.h"
#include "core/mirror/mirror.h"
#include "core/store/bucket_store.h"
#include "core/vfs/backing_files.h"
#include "core/vfs/control_protocol.h"

namespace originfs {

constexpr uint64_t kRootIno = 1;

struct VfsOptions {
  double entry_timeout = 1.0;  // seconds the kernel may cache a name
  double attr_timeout = 1.0;   // seconds the kernel may cache attributes
  // The same for names and files in the bucket: longer where every change
  // to them reaches the kernel as an invalidation (the bucket is watched);
  // origin-only names keep the short ones (the origin tells no one).
  double local_entry_timeout = 1.0;
  double local_attr_timeout = 1.0;
  double negative_timeout = 1.0;  // seconds the kernel may cache "no such name"
};

// Who is asking: new files and directories are created as this user.
struct Caller {
  uid_t uid = 0;
  gid_t gid = 0;
  // Its supplementary groups, when known (files are created with them, as
  // the caller would on the bucket itself); nullopt: the daemon's own.
  std::optional<std::vector<gid_t>> groups;
};

struct Entry {
  uint64_t ino = 0;  // 0 with ENOENT-less reply means "negative entry"
  struct stat attr {};
  double entry_timeout = 0;
  double attr_timeout = 0;
};

// Bits for SetAttr's to_set.
enum SetAttrBits : int {
  kSetMode = 1 << 0,
  kSetUid = 1 << 1,
  kSetGid = 1 << 2,
  kSetSize = 1 << 3,
  kSetAtime = 1 << 4,
  kSetMtime = 1 << 5,
  kSetAtimeNow = 1 << 6,
  kSetMtimeNow = 1 << 7,
  kSetCtime = 1 << 8,
};

struct DirEntry {
  std::string name;
  ino_t ino = 0;  // as stat shows it
  unsigned char type = DT_UNKNOWN;
  off_t next_offset = 0;
  std::optional<Entry> entry;  // plus mode: full entry (counts a lookup), absent for . and ..
};

// An open directory (opendir .. releasedir). Its listing is read whole when
// the kernel asks from offset 0 (opendir, rewinddir); offsets are positions
// in it, so a listing continued after other changes neither skips nor
// repeats a name.
class DirHandle {
 public:
  DirHandle() = default;
  DirHandle(const DirHandle&) = delete;
  DirHandle& operator=(const DirHandle&) = delete;

 private:
  friend class Vfs;
  struct Listed {
    std::string name;
    ino_t ino = 0;  // as stat shows it
    unsigned char type = DT_UNKNOWN;
    uint64_t origin_ino = 0;   // an origin-only name: its Vfs inode (0: a bucket entry)
    bool listed_only = false;  // known from the origin's listing alone (no inode yet)
  };
  std::shared_ptr<void> inode;  // the Vfs inode, kept alive while open (not a counted lookup)
  UniqueFd fd;                  // the bucket directory; empty for one only the origin has
  std::vector<Listed> listing;
  bool listed = false;
  bool is_root = false;
};

struct VfsStats {
  std::atomic<uint64_t> hits{0};          // lookups answered from the bucket
  std::atomic<uint64_t> plus_entries{0};  // entries listed with attributes (readdirplus)
  // Revalidations (revalidate.cc): asked, files updated, files kept because
  // they changed locally since they landed.
  std::atomic<uint64_t> revalidations{0};
  std::atomic<uint64_t> revalidation_updates{0};
  std::atomic<uint64_t> revalidation_kept{0};
};

// A file to read or write: a descriptor and, while an origin file is still
// arriving, the download to follow (read only what it has received). From
// Open (a descriptor of its own) or FileRef* (the inode's own, for the
// kernel's zero-message open); valid while the holder keeps it.
struct FileRef {
  std::shared_ptr<UniqueFd> fd;
  std::shared_ptr<Flight> streaming;
  uint64_t size = 0;  // streaming: the object's final size
};

enum class InodeKind : uint8_t;  // inode.h

class Vfs {
 public:
  using EntryCallback = std::function<void(Result<Entry>)>;
  using FileCallback = std::function<void(Result<FileRef>)>;

  Vfs(BucketStore& store, Mirror& mirror, VfsOptions options);
  ~Vfs();
  Vfs(const Vfs&) = delete;
  Vfs& operator=(const Vfs&) = delete;

  // ENOENT results carry options.negative_timeout for the kernel.
  void Lookup(uint64_t parent, std::string_view name, EntryCallback cb);
  void Forget(uint64_t ino, uint64_t nlookup);

  // by_handle: asked through an open file (fstat), which keeps a file a
  // refresh replaced; by path such a file is ESTALE (NotReplaced).
  // attr_timeout: how long the kernel may keep the answer.
  Result<struct stat> GetAttr(uint64_t ino, bool by_handle = false, double* attr_timeout = nullptr);
  double local_attr_timeout() const { return options_.local_attr_timeout; }
  // fd: an open file handle of ino, if the kernel gave one.
  Result<struct stat> SetAttr(uint64_t ino, const struct stat& attr, int to_set,
                              std::optional<int> fd);
  Result<std::string> ReadLink(uint64_t ino);

  Result<Entry> MkNod(const Caller& c, uint64_t parent, std::string_view name, mode_t mode,
                      dev_t rdev);
  Result<Entry> MkDir(const Caller& c, uint64_t parent, std::string_view name, mode_t mode);
  Result<Entry> Symlink(const Caller& c, std::string_view target, uint64_t parent,
                        std::string_view name);
  Result<Entry> Link(uint64_t ino, uint64_t new_parent, std::string_view new_name);
  Result<void> Unlink(uint64_t parent, std::string_view name);
  Result<void> RmDir(uint64_t parent, std::string_view name);
  Result<void> Rename(uint64_t parent, std::string_view name, uint64_t new_parent,
                      std::string_view new_name, unsigned int flags);

  void Open(uint64_t ino, int flags, FileCallback cb);
  // Returns the entry and an open fd the caller owns.
  Result<std::pair<Entry, int>> Create(const Caller& c, uint64_t parent, std::string_view name,
                                       mode_t mode, int flags);

  // I/O without open: a read descriptor (an origin-only file is fetched or
  // followed as by Open), or a local descriptor for writing, syncing,
  // allocating (an origin-only file is downloaded first; blocks).
  void IoFileForRead(uint64_t ino, FileCallback cb);
  Result<FileRef> IoFileSync(uint64_t ino, bool write);

  // ---- I/O on a descriptor from Open, Create or FileRef* (file_io.cc): the
  // adapter makes no syscall of its own but the write from its buffer.
  // Calls ready once [off, off + size) of a file that may still be arriving
  // (streaming, of final size total) can be read from its descriptor, or the
  // download failed (EIO; ENOSPC for a full bucket): at once on this thread,
  // or later on a download thread.
  // Without waiting: the answer WhenReadable would give at once (a file not
  // arriving any more, or a failed download), or nullopt while it arrives.
  static std::optional<Result<void>> ReadableNow(const std::shared_ptr<Flight>& streaming);
  static void WhenReadable(const std::shared_ptr<Flight>& streaming, uint64_t total,
                           std::size_t size, off_t off, std::function<void(Result<void>)> ready);
  // Blocks until a file still arriving (f.streaming) has landed, durably,
  // or its download failed (EIO; ENOSPC for a full bucket); at once for
  // any other. Then f.fd holds the whole file.
  static Result<void> WaitComplete(const FileRef& f);
  // fsync without an open handle (zero-message open): a file still arriving
  // is waited for until it has landed; a local one is synced.
  Result<void> FsyncInode(uint64_t ino, bool datasync);
  static Result<void> Flush(int fd);  // a close's semantics for the bucket's filesystem
  static Result<void> Fsync(int fd, bool datasync);
  static Result<void> Fallocate(int fd, int mode, off_t off, off_t len);
  static Result<off_t> Lseek(int fd, off_t off, int whence);
  static Result<std::size_t> CopyFileRange(int in, off_t off_in, int out, off_t off_out,
                                           std::size_t len, unsigned flags);

  Result<std::unique_ptr<DirHandle>> OpenDir(uint64_t ino);
  // Calls emit for entries from offset on until it returns false or the
  // directory ends. In plus mode an entry emit rejects is not counted.
  Result<void> ReadDir(DirHandle& dir, off_t offset, bool plus,
                       const std::function<bool(const DirEntry&)>& emit);

  Result<void> FsyncDir(DirHandle& dir, bool datasync);

  Result<struct statvfs> StatFs(uint64_t ino);

  Result<std::string> GetXattr(uint64_t ino, std::string_view name);  // whole value
  Result<std::string> ListXattr(uint64_t ino);                        // NUL-separated names
  Result<void> SetXattr(uint64_t ino, std::string_view name, std::string_view value, int flags);
  Result<void> RemoveXattr(uint64_t ino, std::string_view name);

  // The key (path below the mount) of ino, "" for the root.
  Result<std::string> KeyOf(uint64_t ino);

  const VfsStats& stats() const { return stats_; }
  // True when some rule revalidates landed files at their opens.
  bool Revalidates() const { return mirror_.Revalidates(); }
  // Per rule (labelled): what it fetched, in all and in the last minute, and
  // whether it is retired (migration.cc). For the metrics file.
  std::vector<Counter> RuleCounters();

  // Which opens the kernel may serve from the bucket file (FUSE passthrough).
  BackingFiles& backing_files() { return backing_files_; }

  std::size_t OriginsDown() {
    std::size_t n = 0;
    for (const OriginState& o : mirror_.OriginStates()) n += !o.up;
    return n;
  }
  // Counters for the root's user.originfs.* attributes and the metrics file.
  std::vector<Counter> Counters();
  // More counters from the adapter (its channel's), appended to Counters().
  // Set before the mount starts.
  void SetExtraCounters(std::function<std::vector<Counter>()> f) { extra_counters_ = std::move(f); }

  // Handles setxattr of user.originfs.<name> on the root (e.g. "reload").
  using ControlHandler = std::function<Result<void>(std::string_view name, std::string_view value)>;
  void SetControlHandler(ControlHandler h);
  // Records the outcome of a reload not made through SetXattr (SIGHUP).
  void NoteReload(const Result<void>& r);

  // Tells the kernel to forget a name (after a refresh replaced the file, or
  // a download failed). Called from request handlers and download threads:
  // the adapter must send it asynchronously, never blocking the caller.
  using EntryInvalidator = std::function<void(uint64_t parent, const std::string& name)>;
  void SetEntryInvalidator(EntryInvalidator inv) { invalidate_ = std::move(inv); }
  // Drops the kernel's cached attributes of an inode, from any thread, at
  // once (it must take no lock a request holds): when the origin's answer
  // changes what stat showed (a file grown since a listing showed it).
  using AttrInvalidator = std::function<void(uint64_t ino)>;
  void SetAttrInvalidator(AttrInvalidator inv) { invalidate_attrs_ = std::move(inv); }
  // The inode the kernel knows for the bucket file or directory (dev, ino),
  // 0 if none: where a change another program made in the bucket
  // (fs/bucket_watch.h) is to be invalidated. One table lookup.
  uint64_t NodeOfBucketFile(dev_t dev, ino_t ino);

  // Attribute names originfs adds (prefix of every one of them).
  static constexpr std::string_view kXattrPrefix = control::kPrefix;
  std::size_t InodeCount();
  // What the inode table costs, in bytes of heap: its entries (with their
  // parts and allocator overhead) and its index arrays; and per inode.
  struct TableMemory {
    std::size_t inodes = 0;
    std::size_t bytes = 0;
    std::size_t bytes_per_inode = 0;
  };
  TableMemory InodeTableMemory();
  // Inodes whose descriptors are open now (bounded; see the descriptor cache).
  std::size_t CachedDescriptorInodes();
  static uint64_t HeapBytes();      // mallinfo2
  static uint64_t ResidentBytes();  // /proc/self/statm

 private:
  struct Inode;
  using InodeRef = std::shared_ptr<Inode>;

  InodeRef Get(uint64_t ino);
  Result<Entry> LookupLocal(const InodeRef& parent, std::string_view name, bool* missing);
  // An origin inode the kernel knows under key that can answer a lookup
  // again (counted), else nullopt.
  std::optional<Entry> KnownOriginEntry(const std::string& key);
  // What the fresh listing of key's directory (null: none) says of name, if
  // it decides. Where it lacks name but is too old to say it is absent,
  // *ask says what to ask the origin instead (else it stays kKnown).
  std::optional<Result<Entry>> EntryFromListing(const std::string& key, std::string_view name,
                                                const std::shared_ptr<const OriginListing>& listing,
                                                Mirror::Absence* ask);
  // Starts or joins key's download and answers cb from its response head.
  // unlisted: the directory's listing lacked name; if the origin has it
  // now, the listing is asked for again at its next use.
  void Miss(const InodeRef& parent, std::string_view name, const std::string& key,
            uint64_t landings, EntryCallback cb, bool unlisted = false);
  // The entry for an O_PATH descriptor, entering a new inode if needed.
  // known: its stat, if already taken. read_fd: the file opened for reading,
  // kept by a new inode (else closed).
  Result<Entry> EntryForFd(UniqueFd fd, const struct stat* known = nullptr,
                           UniqueFd read_fd = UniqueFd());
  // An origin-born inode's stat (taken from its landed file) as the kernel
  // was first shown it, while the file has not changed since it landed.
  void AsFirstShownLocked(const Inode& inode, struct stat& st) const;
  static constexpr off_t kOriginDirSize = 4096;  // as an empty ext4 directory
  // Whether a lookup should open this file for reading: a regular file not
  // entered yet, while descriptors are plenty.
  bool WantsReadFd(const struct stat& st);
  Entry EntryForOriginFile(const std::string& key, const Resolution& res,
                           std::shared_ptr<Flight> flight);
  Entry EntryForOriginDir(const std::string& key);
  // A file known from a fresh listing with its exact size and mtime.
  Entry EntryForListed(const std::string& key, const ListedEntry& listed);
  Result<std::string> ChildKey(const InodeRef& parent, std::string_view name);
  Result<struct stat> StatInode(const InodeRef& inode);
  Result<FileRef> LocalIoFile(const InodeRef& inode, bool write);
  // A remote inode whose download has landed in the bucket becomes local.
  void NoteIfLanded(const InodeRef& inode);
  void WatchLanding(const InodeRef& inode, const std::shared_ptr<Flight>& flight);
  void StopWatchingLandingLocked(Inode& inode);
  InodeRef KeyedInodeLocked(const std::string& key, InodeKind kind);
  // Local directory fd of parent, creating a virtual directory in the bucket.
  Result<std::shared_ptr<UniqueFd>> DirFd(const InodeRef& parent);
  // Turns an origin-only inode into a local one, waiting for its download.
  Result<void> WaitLanded(const InodeRef& inode);
  // Waits for a running download of parent/name so local ops see the file.
  // The download's error (EIO) when the name's origin file could not land.
  Result<void> WaitChildLanded(const InodeRef& parent, std::string_view name);
  Result<void> BecomeLocal(const InodeRef& inode, const std::string& key);
  void OpenFetched(const InodeRef& inode, int flags, const Result<FetchedObject>& r,
                   const FileCallback& cb);
  bool Reserved(uint64_t parent, std::string_view name) const;
  struct stat OriginFileAttr(const Inode& inode) const;
  Entry OriginEntry(const Inode& inode) const;  // caller holds inode.mu

  // key's landed record if it is of the file inode stands for.
  std::optional<ObjectRecord> LandedHere(const InodeRef& inode, const std::string& key);
  Result<std::string> GetOwnXattr(const InodeRef& inode, std::string_view name);
  // The attributes `originfs verify` and `stats DIR` read (migration.cc);
  // nullopt for other names.
  std::optional<Result<std::string>> MigrationXattr(const InodeRef& inode, std::string_view name);
  std::string OwnXattrNames(const InodeRef& inode);

  BucketStore& store_;
  Mirror& mirror_;
  std::mutex control_mu_;
  ControlHandler control_;                                        // guarded by control_mu_
  std::string last_reload_ = "none";                              // guarded by control_mu_
  std::unordered_map<std::string, std::string> refresh_results_;  // key -> outcome; control_mu_
  EntryInvalidator invalidate_;                                   // set before the mount starts
  AttrInvalidator invalidate_attrs_;                              // set before the mount starts
  // value "force" of user.originfs.refresh: replace even a locally changed file.
  // refresh of a directory: its listing is asked for again.
  Result<void> RelistDirectory(const InodeRef& inode);
  void NoteRefresh(const std::string& key, uint64_t ino, const std::string& outcome);
  // outcome: what the mirror's refresh said, when it answered.
  Result<void> RefreshFile(const InodeRef& inode, bool force,
                           std::optional<Mirror::RefreshOutcome>* outcome = nullptr);
  // ---- Revalidation (revalidate.cc).
  enum class Revalidation { kNone, kBackground, kWait };
  // Whether an open of inode with flags revalidates it first (kWait: the
  // open waits for the answer) or beside it (kBackground).
  Revalidation RevalidationDue(const InodeRef& inode, int flags);
  // The conditional GET of a landed file; counted, never replaces a local
  // change; the outcome as user.originfs.refresh_result says it.
  Result<void> Revalidate(const InodeRef& inode);
  // refresh --recursive of one file: a local file (never fetched) is left
  // alone and said so.
  Result<void> RevalidateNamed(const InodeRef& inode);
  void OpenInode(const InodeRef& inode, int flags, FileCallback cb);
  std::mutex revalidated_mu_;
  // key -> when it was last revalidated (unix seconds); bounded.
  std::unordered_map<std::string, int64_t> revalidated_;  // guarded by revalidated_mu_
  VfsOptions options_;
  VfsStats stats_;
  BackingFiles backing_files_;
  std::function<std::vector<Counter>()> extra_counters_;
  uid_t root_uid_ = 0;
  gid_t root_gid_ = 0;
  int64_t mount_time_ = 0;
  dev_t bucket_dev_ = 0;  // the bucket's own filesystem (what the watch sees)
  // Times of directories only the origin has (stable across mounts).
  int64_t origin_dir_time_ = 0;

  // Lock order: table_mu_ may be held while taking an Inode::mu; never the reverse.
  std::mutex table_mu_;
  // The table keeps one slot per inode in flat arrays (core/common/flat_set.h):
  // with the inode itself about 200 bytes for each the kernel remembers.
  struct InodeNo {
    uint64_t operator()(const InodeRef& i) const;  // inode.h
  };
  class InodeTable {
   public:
    InodeRef Find(uint64_t ino) const {
      const InodeRef* r = set_.find(ino);
      return r ? *r : nullptr;
    }
    void Insert(InodeRef inode) { set_.insert(std::move(inode)); }
    InodeRef Take(uint64_t ino) { return set_.take(ino); }
    std::size_t size() const { return set_.size(); }
    std::size_t memory_bytes() const { return set_.memory_bytes(); }

   private:
    FlatSet<InodeRef, InodeNo, std::hash<uint64_t>> set_;
  };
  // (dev, backing ino) of a bucket file (or of a download's staging file) ->
  // the inode shown for it. Files of the bucket's own filesystem (all but
  // those below a mount point inside the bucket) take 16 bytes a slot.
  class BackingTable {
   public:
    explicit BackingTable(dev_t main_dev = 0) : main_dev_(main_dev) {}
    void SetMainDevice(dev_t dev) { main_dev_ = dev; }
    uint64_t Find(dev_t dev, ino_t ino) const {
      if (dev != main_dev_) {
        auto it = other_.find({dev, ino});
        return it == other_.end() ? 0 : it->second;
      }
      const Slot* s = main_.find(ino);
      return s ? s->node : 0;
    }
    // Enters node unless the file has an inode; true if it was entered.
    bool Insert(dev_t dev, ino_t ino, uint64_t node) {
      if (dev != main_dev_) return other_.try_emplace({dev, ino}, node).second;
      return main_.insert(Slot{ino, node}).second;
    }
    void Set(dev_t dev, ino_t ino, uint64_t node) {
      if (dev != main_dev_) {
        other_[{dev, ino}] = node;
        return;
      }
      auto [s, added] = main_.insert(Slot{ino, node});
      if (!added) s->node = node;
    }
    // Removes the file's entry if it is node's.
    void EraseIf(dev_t dev, ino_t ino, uint64_t node) {
      if (Find(dev, ino) != node) return;
      if (dev != main_dev_)
        other_.erase({dev, ino});
      else
        main_.erase(ino);
    }
    std::size_t memory_bytes() const { return main_.memory_bytes(); }

   private:
    struct Slot {
      ino_t ino = 0;
      uint64_t node = 0;
      explicit operator bool() const { return node != 0; }
    };
    struct SlotKey {
      ino_t operator()(const Slot& s) const { return s.ino; }
    };
    dev_t main_dev_;
    FlatSet<Slot, SlotKey, std::hash<uint64_t>> main_;
    std::map<std::pair<dev_t, ino_t>, uint64_t> other_;
  };
  InodeTable inodes_;                       // guarded by table_mu_
  BackingTable by_backing_;                 // guarded by table_mu_
  std::map<std::string, uint64_t> by_key_;  // origin-only inodes; table_mu_
  std::size_t read_ahead_open_below_ = 0;   // see the constructor
  uint64_t next_ino_ = kRootIno + 1;        // guarded by table_mu_

  // A directory only the origin had is shown with a number of its own; once
  // it is made in the bucket (something is created or lands in it), the
  // bucket directory is shown with that same number, for as long as the
  // mount lives: a process whose cwd is inside it (pwd, getcwd, git, bash)
  // must find it in its parent's listing under the number it started with.
  // The descriptor cache (see PathFdLocked): local inodes keep a file handle;
  // at most fd_cache_size_ of them keep descriptors open, most recently used
  // first. lru_mu_ is a leaf lock (taken with any other held); eviction only
  // try-locks an inode, so it keeps no lock order.
  std::mutex lru_mu_;
  // Strong references: an inode forgotten while cached (Forget uncaches it,
  // but a holder may use it once more) lives until the cache evicts it.
  std::list<InodeRef> lru_;  // guarded by lru_mu_
  std::size_t fd_cache_size_ = 1024;
  std::atomic<bool> evict_wanted_{false};
  UniqueFd mount_fd_;  // the bucket, for open_by_handle_at
  bool handles_ok_ = false;
  bool HandlesWork();
  // Keeps fd's file handle in inode (false, none kept, if it has none).
  bool TakeHandle(Inode& inode, int fd) const;
  int OpenHandle(const Inode& inode) const;
  // The inode's O_PATH descriptor (inode.mu held), reopened from its handle
  // if the cache closed it; ESTALE once the file is gone from the bucket.
  Result<std::shared_ptr<UniqueFd>> PathFdLocked(const InodeRef& inode);
  void Cached(const InodeRef& inode);
  void Uncache(Inode& inode);
  // Closes the descriptors of the least recently used inodes beyond the
  // bound. Called where the caller holds no inode lock.
  void EvictDescriptors();
  // Is fd's file the one inode stands for? Only in doubt when the cache
  // closed the inode's descriptor: then by its file handle (a recycled inode
  // number has another generation). table_mu_ held; tries inode.mu.
  bool SameFileLocked(Inode& inode, int fd) const;
  // ESTALE for a file a refresh replaced under its name whose old copy no
  // name links any more: requests by path (stat, chmod, xattrs) then make the
  // kernel look the name up again and find the new file; requests on an open
  // handle go on with the old copy.
  Result<void> NotReplaced(const InodeRef& inode);

 public:
  // An open handle of ino was made (the kernel took it) or released;
  // writer: it was opened for writing.
  void NoteOpen(uint64_t ino, bool opened, bool writer = false);

 private:
  std::size_t AliasCount() const {
    std::lock_guard lock(alias_mu_);
    return dir_alias_.size();
  }
  void MaybeEvict() {
    if (evict_wanted_.load(std::memory_order_relaxed)) EvictDescriptors();
  }
  // Keeps the inode's descriptor open for good (unlinked while maybe open).
  void PinLocked(const InodeRef& inode);
  void PinChild(const InodeRef& parent, std::string_view name, const Result<std::string>& key);

  // A leaf lock: taken with any other lock held, never held while taking one.
  mutable std::mutex alias_mu_;
  std::map<std::pair<dev_t, ino_t>, ino_t> dir_alias_;  // guarded by alias_mu_
  std::atomic<bool> any_alias_{false};
  ino_t ShownIno(dev_t dev, ino_t ino) const;
  void ShowAs(struct stat& st) const;  // applies an alias to st.st_ino
  // Fills dir.listing: the bucket's entries and the origin-only names the
  // kernel has been shown in this directory (downloads still running, origin
  // directories), with . and .. as stat shows them.
  Result<void> List(DirHandle& dir);
  Result<void> ListBucket(DirHandle& h, const struct stat& self,
                          std::unordered_set<std::string>& names);
  void ListDotsOfOriginDir(DirHandle& h, const struct stat& self);
  // Names a lookup has shown in the directory that the bucket does not have
  // yet: a file still downloading (or kept outside it), an origin directory.
  void ListShownFromOrigin(DirHandle& h, const std::string& prefix,
                           std::unordered_set<std::string>& names);
  // Whether the directory inode began at the origin (see Rename, RmDir).
  bool OriginDirectory(const InodeRef& inode);
  InodeRef ChildInode(const InodeRef& parent, std::string_view name,
                      const Result<std::string>& key);
  // Origin directories above key that are now in the bucket become local.
  void AncestorsBecomeLocal(std::string_view key);

  // ---- Removal of origin names (removal.cc): whiteouts (bucket_store.h).
  // Whether the origin has key, as far as anything known says: an origin
  // inode, a landed record, a listing of any age (Mirror::OriginHadName).
  bool OriginHasName(const std::string& key);
  // Origin inodes at key and below are no longer shown under their names.
  void ForgetOriginNames(const std::string& key);
  Result<void> UnlinkLeavingWhiteout(int dir, std::string_view name, const std::string& key);
  // child: the inode the kernel knows (its listing must be empty).
  Result<void> RmDirLeavingWhiteout(const InodeRef& child, int dir, std::string_view name,
                                    const std::string& key);
  Result<void> RenameLeavingWhiteout(int from, std::string_view a, int to, std::string_view b,
                                     unsigned flags, const std::string& key);
  // Before a name is made where a whiteout is: removes it (true if one was).
  Result<bool> ClearWhiteoutFor(int dir, std::string_view name);
  // ---- Type changes at the origin (removal.cc).
  // True (and the origin inodes at key forgotten by name) when the fresh
  // listing of key's directory says the origin no longer has key as shown
  // (a directory that is now a file or gone, or the reverse).
  bool ContradictedByListing(const std::string& key, std::string_view name,
                             const struct stat& shown);
  // After a new listing of dir_key: the kernel forgets the names it
  // contradicts that have nothing local under them.
  void ForgetContradicted(uint64_t dir_ino, const std::string& dir_key);
  // Undoes a removal of parent/name (user.originfs.restore on the parent).
  Result<void> RestoreName(const InodeRef& parent, std::string_view name);
};

}  // namespace originfs
