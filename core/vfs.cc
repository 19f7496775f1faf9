#include "core/vfs.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/fsuid.h>
#include <sys/resource.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <unordered_set>
#include <utility>

#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

namespace originfs {

enum class InodeKind { kLocal, kRemote, kVirtualDir };

struct Vfs::Inode : std::enable_shared_from_this<Vfs::Inode> {
  explicit Inode(uint64_t n) : ino(n) {}
  const uint64_t ino;
  uint64_t nlookup = 0;  // guarded by Vfs::table_mu_

  std::mutex mu;  // guards everything below
  InodeKind kind = InodeKind::kLocal;
  // Local inodes: an O_PATH descriptor, open while the inode is in the
  // descriptor cache (see Vfs::PathFdLocked), reopened from its file handle
  // after that closed it. Without a handle the descriptor stays open (pinned).
  std::shared_ptr<UniqueFd> fd;
  std::string handle;   // struct file_handle, as name_to_handle_at filled it
  bool cached = false;  // in Vfs::lru_; guarded by Vfs::lru_mu_
  std::list<std::weak_ptr<Inode>>::iterator lru_pos;  // guarded by Vfs::lru_mu_
  dev_t dev = 0;
  ino_t backing_ino = 0;
  std::string key;                 // origin-only inodes
  std::shared_ptr<Flight> flight;  // kRemote: the download that answered the lookup
  Resolution res;                  // kRemote: size and mtime from the origin
  // Descriptors for I/O without an open (zero-message open): opened on first
  // use, closed with the inode or by the descriptor cache (local inodes).
  std::shared_ptr<UniqueFd> read_fd, write_fd;
  std::shared_ptr<Flight> read_streaming;  // set while read_fd follows a download
  uint64_t read_size = 0;
  int64_t landed_ns = 0;  // wall-clock time its download landed (this mount), 0: never
  // kRemote: the staging file its download writes. dev/backing_ino name it in
  // by_backing_, so a lookup that finds the committed file (same inode, linked
  // into the bucket) returns this inode; holding it open keeps the number
  // from being reused until the mapping is gone.
  std::shared_ptr<UniqueFd> landing_file;
  const Flight* landing_flight = nullptr;  // whose staging file landing_file is (identity only)
  // What the kernel was first shown: kRemote or kVirtualDir for an inode
  // that began at the origin (kLocal otherwise), even once it has landed.
  // Set at creation under Vfs::table_mu_ and never changed.
  InodeKind born = InodeKind::kLocal;
};

namespace {

std::string ProcPath(int fd) { return fmt::format("/proc/self/fd/{}", fd); }

// Within this long of landing, a bucket file that a lookup does not see is
// taken to be hidden by a client cache, not removed.
bool LandedMomentsAgo(int64_t landed_ns) {
  timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  int64_t now_ns = static_cast<int64_t>(now.tv_sec) * 1'000'000'000 + now.tv_nsec;
  return landed_ns > 0 && now_ns - landed_ns < 5'000'000'000;
}

int64_t Now() { return static_cast<int64_t>(std::time(nullptr)); }

constexpr ino_t kSyntheticInoBit = ino_t(1) << 62;
constexpr ino_t kListedInoBit = ino_t(1) << 61;  // with kSyntheticInoBit: listed, not looked up

uint64_t KeyHash(std::string_view key) {  // FNV-1a
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : key) h = (h ^ c) * 1099511628211ull;
  return h;
}

bool DotOrDotDot(std::string_view n) { return n == "." || n == ".."; }

// New names get exactly the mode the kernel sent, which already has the
// caller's umask applied (the kernel does that unless FUSE_DONT_MASK): the
// creating thread's own umask must not mask it a second time. A thread of
// its own filesystem context (unshare(CLONE_FS)) has a umask of its own, so
// the rest of the daemon (log files, the state directory) keeps the
// process's umask.
void UseCallersUmask() {
  thread_local bool done = false;
  if (done) return;
  done = true;
  if (unshare(CLONE_FS) != 0) {
    spdlog::warn("unshare(CLONE_FS): {}; new files get the daemon's umask too",
                 std::strerror(errno));
    return;
  }
  umask(0);
}

// Creates files as the calling user (per-thread fsuid/fsgid), with the mode asked.
class FsIdGuard {
 public:
  explicit FsIdGuard(const Caller& c) {
    UseCallersUmask();
    if (geteuid() != 0) return;
    active_ = true;
    old_gid_ = setfsgid(c.gid);
    old_uid_ = setfsuid(c.uid);
  }
  ~FsIdGuard() {
    if (!active_) return;
    setfsuid(old_uid_);
    setfsgid(old_gid_);
  }
  FsIdGuard(const FsIdGuard&) = delete;
  FsIdGuard& operator=(const FsIdGuard&) = delete;

 private:
  bool active_ = false;
  int old_uid_ = 0, old_gid_ = 0;
};

Result<void> Check(int rc, std::string_view what) {
  if (rc != 0) return FailErrno(std::string(what));
  return {};
}

}  // namespace

Vfs::Vfs(BucketStore& store, Mirror& mirror, VfsOptions options)
    : store_(store), mirror_(mirror), options_(options), mount_time_(Now()) {
  auto root = std::make_shared<Inode>(kRootIno);
  root->fd = std::make_shared<UniqueFd>(fcntl(store_.root_fd(), F_DUPFD_CLOEXEC, 0));
  struct stat st;
  if (fstat(root->fd->get(), &st) == 0) {
    root->dev = st.st_dev;
    root->backing_ino = st.st_ino;
    root_uid_ = st.st_uid;
    root_gid_ = st.st_gid;
  }
  root->nlookup = 1;  // the kernel never forgets the root
  // Opening looked-up files for reading ahead spends a second descriptor per
  // file inode: only while they are plenty (a quarter of the limit in use).
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
    read_ahead_open_below_ = rl.rlim_cur == RLIM_INFINITY ? SIZE_MAX : rl.rlim_cur / 4;
  // Descriptors held for inodes the kernel remembers are bounded: each inode
  // keeps a file handle (a few bytes, no descriptor), and at most this many
  // inodes keep their descriptors open (up to three each: path, read,
  // write), whatever the kernel remembers. A quarter of the limit leaves the
  // rest to downloads, open files and curl.
  std::size_t limit = rl.rlim_cur == RLIM_INFINITY ? 1u << 20 : rl.rlim_cur;
  fd_cache_size_ = std::max<std::size_t>(64, limit / 4 / 3);
  mount_fd_.Reset(open(store_.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  handles_ok_ = HandlesWork();
  if (!handles_ok_)
    spdlog::warn(
        "file handles unavailable on {} (name_to_handle_at/open_by_handle_at): every "
        "inode the kernel remembers holds a descriptor",
        store_.path());
  by_backing_[{root->dev, root->backing_ino}] = kRootIno;
  inodes_[kRootIno] = std::move(root);
}

Vfs::~Vfs() = default;

std::size_t Vfs::InodeCount() {
  std::lock_guard lock(table_mu_);
  return inodes_.size();
}

Vfs::InodeRef Vfs::Get(uint64_t ino) {
  std::lock_guard lock(table_mu_);
  auto it = inodes_.find(ino);
  return it == inodes_.end() ? nullptr : it->second;
}

bool Vfs::Reserved(uint64_t parent, std::string_view name) const {
  return parent == kRootIno && name == BucketStore::kStateDirName;
}

bool Vfs::HandlesWork() {
  if (!mount_fd_) return false;
  std::string h = HandleOf(store_.root_fd());
  if (h.empty()) return false;
  UniqueFd fd(OpenHandle(h));
  return static_cast<bool>(fd);
}

std::string Vfs::HandleOf(int fd) const {
  alignas(file_handle) char buf[sizeof(file_handle) + MAX_HANDLE_SZ];
  auto* fh = reinterpret_cast<file_handle*>(buf);
  fh->handle_bytes = MAX_HANDLE_SZ;
  int mount_id = 0;
  if (name_to_handle_at(fd, "", fh, &mount_id, AT_EMPTY_PATH) != 0) return "";
  return std::string(buf, sizeof(file_handle) + fh->handle_bytes);
}

int Vfs::OpenHandle(const std::string& handle) const {
  alignas(file_handle) char buf[sizeof(file_handle) + MAX_HANDLE_SZ];
  std::memcpy(buf, handle.data(), std::min(handle.size(), sizeof buf));
  return open_by_handle_at(mount_fd_.get(), reinterpret_cast<file_handle*>(buf),
                           O_PATH | O_CLOEXEC);
}

Result<std::shared_ptr<UniqueFd>> Vfs::PathFdLocked(Inode& inode) {
  if (!inode.fd) {
    if (inode.handle.empty()) return Fail(ESTALE, "no descriptor for this inode");
    int fd = OpenHandle(inode.handle);
    if (fd < 0) return FailErrno("reopen by handle");  // ESTALE: gone from the bucket
    inode.fd = std::make_shared<UniqueFd>(fd);
  }
  if (!inode.handle.empty()) Cached(inode);
  return inode.fd;
}

void Vfs::Cached(Inode& inode) {
  std::lock_guard lock(lru_mu_);
  if (inode.cached) {
    lru_.splice(lru_.begin(), lru_, inode.lru_pos);
    return;
  }
  lru_.push_front(inode.weak_from_this());
  inode.lru_pos = lru_.begin();
  inode.cached = true;
  evict_wanted_ = lru_.size() > fd_cache_size_;
}

void Vfs::Uncache(Inode& inode) {
  std::lock_guard lock(lru_mu_);
  if (!inode.cached) return;
  lru_.erase(inode.lru_pos);
  inode.cached = false;
}

void Vfs::EvictDescriptors() {
  // Victims come from the cold end; one whose lock is taken (in use right
  // now) is moved to the front instead of waited for: no lock order to keep.
  for (int tries = 0; tries < 64; ++tries) {
    InodeRef victim;
    {
      std::lock_guard lock(lru_mu_);
      if (lru_.size() <= fd_cache_size_) {
        evict_wanted_ = false;
        return;
      }
      victim = lru_.back().lock();
      if (!victim) {
        lru_.pop_back();
        continue;
      }
    }
    std::unique_lock il(victim->mu, std::try_to_lock);
    std::lock_guard lock(lru_mu_);
    if (!victim->cached) continue;
    if (!il.owns_lock()) {
      lru_.splice(lru_.begin(), lru_, victim->lru_pos);
      continue;
    }
    lru_.erase(victim->lru_pos);
    victim->cached = false;
    victim->fd.reset();  // users still holding it keep theirs until done
    victim->read_fd.reset();
    victim->write_fd.reset();
  }
}

void Vfs::PinLocked(Inode& inode) {
  // A file unlinked (or renamed over) through the mount may still be open:
  // its handle would go stale once no descriptor is left, so it keeps one.
  if (inode.kind != InodeKind::kLocal || inode.handle.empty()) return;
  if (auto fd = PathFdLocked(inode); !fd) return;
  Uncache(inode);
  inode.handle.clear();
}

std::size_t Vfs::CachedDescriptorInodes() {
  std::lock_guard lock(lru_mu_);
  return lru_.size();
}

Result<Entry> Vfs::EntryForFd(UniqueFd fd, const struct stat* known, UniqueFd read_fd) {
  Entry e;
  if (known) {
    e.attr = *known;
  } else if (fstatat(fd.get(), "", &e.attr, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) {
    return FailErrno("fstat");
  }
  e.entry_timeout = options_.entry_timeout;
  e.attr_timeout = options_.attr_timeout;
  const ino_t backing_ino = e.attr.st_ino;
  std::lock_guard lock(table_mu_);
  auto it = by_backing_.find({e.attr.st_dev, backing_ino});
  if (it != by_backing_.end()) {
    auto in = inodes_.find(it->second);
    if (in != inodes_.end()) {
      in->second->nlookup++;
      e.ino = it->second;
      // (born is set once, under table_mu_: only origin-born inodes need more.)
      if (in->second->born != InodeKind::kLocal) {
        std::lock_guard il(in->second->mu);
        PresentLandedLocked(*in->second, e.attr);
      }
      ShowAs(e.attr);
      return e;  // (read_fd, if any, is closed by the caller's side, unlocked)
    }
  }
  uint64_t ino = next_ino_++;
  auto inode = std::make_shared<Inode>(ino);
  if (read_fd) inode->read_fd = std::make_shared<UniqueFd>(read_fd.Release());
  if (handles_ok_) inode->handle = HandleOf(fd.get());
  inode->fd = std::make_shared<UniqueFd>(fd.Release());
  inode->dev = e.attr.st_dev;
  inode->backing_ino = backing_ino;
  inode->nlookup = 1;
  by_backing_[{inode->dev, inode->backing_ino}] = ino;
  if (!inode->handle.empty()) Cached(*inode);
  inodes_.emplace(ino, std::move(inode));
  e.ino = ino;
  ShowAs(e.attr);
  return e;
}

ino_t Vfs::ShownIno(dev_t dev, ino_t ino) const {
  if (!any_alias_.load(std::memory_order_acquire)) return ino;
  std::lock_guard lock(alias_mu_);
  auto it = dir_alias_.find({dev, ino});
  return it == dir_alias_.end() ? ino : it->second;
}

void Vfs::ShowAs(struct stat& st) const { st.st_ino = ShownIno(st.st_dev, st.st_ino); }

void Vfs::PresentLandedLocked(const Inode& inode, struct stat& st) const {
  if (inode.born == InodeKind::kLocal) return;
  auto stamp = store_.LandingCtime(st.st_dev, st.st_ino);
  if (!stamp || stamp->tv_sec != st.st_ctim.tv_sec || stamp->tv_nsec != st.st_ctim.tv_nsec)
    return;  // changed since it landed (or landed too long ago to tell): as it is
  // Unchanged since its landing, which only made real what was shown before:
  // the times (and a directory's size) stay as the kernel first saw them.
  // Programs that compare a file's ctime before and after reading it (tar:
  // "file changed as we read it") would otherwise see every first read of
  // an origin file, or of a directory filled by such reads, as a change.
  if (S_ISDIR(st.st_mode)) {
    st.st_mtim = st.st_ctim = timespec{mount_time_, 0};
    st.st_size = kVirtualDirSize;
  } else {
    st.st_ctim = timespec{inode.res.mtime, 0};
  }
}

struct stat Vfs::RemoteAttr(const Inode& inode) const {
  struct stat st {};
  // A file being downloaded shows the inode number of the file its body
  // goes to, which the landed file keeps; anything else gets one that never
  // collides with a bucket inode number.
  st.st_ino = inode.kind == InodeKind::kRemote && inode.res.ino ? inode.res.ino
                                                                : kSyntheticInoBit | inode.ino;
  st.st_uid = root_uid_;
  st.st_gid = root_gid_;
  st.st_blksize = 4096;
  if (inode.kind == InodeKind::kVirtualDir) {
    st.st_mode = S_IFDIR | 0755;
    st.st_nlink = 2;
    st.st_size = kVirtualDirSize;
    st.st_mtim.tv_sec = st.st_ctim.tv_sec = st.st_atim.tv_sec = mount_time_;
  } else {
    st.st_mode = S_IFREG | 0644;
    st.st_nlink = 1;
    st.st_size = static_cast<off_t>(inode.res.size);
    st.st_blocks = static_cast<blkcnt_t>((inode.res.size + 511) / 512);
    st.st_mtim.tv_sec = st.st_ctim.tv_sec = st.st_atim.tv_sec = inode.res.mtime;
  }
  return st;
}

Entry Vfs::OriginOnlyEntry(const Inode& inode) const {
  Entry e;
  e.ino = inode.ino;
  e.attr = RemoteAttr(inode);
  // While the body is still arriving the name is not cached: if the download
  // then fails, the next open must look the name up (and ask the origin)
  // again, whether or not the kernel has processed our invalidation yet.
  bool arriving = inode.flight && !inode.flight->finished();
  e.entry_timeout = arriving ? 0 : options_.entry_timeout;
  e.attr_timeout = options_.attr_timeout;
  return e;
}

Entry Vfs::EntryForRemote(const std::string& key, const Resolution& res,
                          std::shared_ptr<Flight> flight) {
  InodeRef inode;
  Entry e;
  bool new_flight = false;
  {
    std::lock_guard lock(table_mu_);
    inode = KeyedInodeLocked(key, InodeKind::kRemote);
    std::lock_guard il(inode->mu);
    if (inode->kind != InodeKind::kLocal) {
      inode->kind = InodeKind::kRemote;
      if (inode->flight != flight) {  // a new download: forget the old one's descriptors
        inode->read_fd.reset();
        inode->read_streaming.reset();
        DropLandingLocked(*inode);
        new_flight = true;
      }
      inode->flight = flight;
      inode->res = res;
    }
    e = OriginOnlyEntry(*inode);
  }
  if (new_flight) TrackLanding(inode, flight);
  return e;
}

Entry Vfs::EntryForListed(const std::string& key, const ListedEntry& listed) {
  std::lock_guard lock(table_mu_);
  InodeRef inode = KeyedInodeLocked(key, InodeKind::kRemote);
  std::lock_guard il(inode->mu);
  if (inode->kind == InodeKind::kRemote && !inode->flight) {
    inode->res.kind = RemoteKind::kFile;
    inode->res.size = *listed.size;
    inode->res.mtime = *listed.mtime;
  }
  return OriginOnlyEntry(*inode);
}

// Removes a remote inode's staging-file entry from by_backing_ (table_mu_ and
// inode.mu held).
void Vfs::DropLandingLocked(Inode& inode) {
  if (!inode.landing_file) return;
  if (auto b = by_backing_.find({inode.dev, inode.backing_ino});
      b != by_backing_.end() && b->second == inode.ino)
    by_backing_.erase(b);
  inode.dev = 0;
  inode.backing_ino = 0;
  inode.landing_file.reset();
  inode.landing_flight = nullptr;
}

// The next lookup of a name whose body is arriving (such entries are not
// cached by the kernel) must find this same inode, also once the object has
// landed in the bucket: the staging file is the committed file's inode, so it
// is entered in by_backing_ as soon as it exists (and the inode becomes a
// local one on its next getattr, as before).
void Vfs::TrackLanding(const InodeRef& inode, const std::shared_ptr<Flight>& flight) {
  std::weak_ptr<Inode> weak = inode;
  std::weak_ptr<Flight> weak_flight = flight;
  flight->OnStreamOrDone([this, weak, weak_flight] {
    InodeRef in = weak.lock();
    auto fl = weak_flight.lock();
    if (!in || !fl || fl->finished()) return;
    auto file = fl->stream_file();
    struct stat st;
    if (!file || fstat(file->get(), &st) != 0) return;
    std::lock_guard lock(table_mu_);
    std::lock_guard il(in->mu);
    if (in->kind != InodeKind::kRemote || in->flight != fl || in->landing_file) return;
    if (!by_backing_.try_emplace({st.st_dev, st.st_ino}, in->ino).second) return;
    in->dev = st.st_dev;
    in->backing_ino = st.st_ino;
    in->landing_file = std::move(file);
    in->landing_flight = fl.get();
    if (in->res.ino == 0) {  // shown with a number of its own (known from a listing)
      std::lock_guard al(alias_mu_);
      dir_alias_[{st.st_dev, st.st_ino}] = kSyntheticInoBit | in->ino;
      any_alias_ = true;
    }
  });
  const Flight* owner = flight.get();
  flight->OnDone([this, weak, owner, key = flight->key()](const Result<FetchedObject>& r) {
    if (r && r->in_bucket) {
      // Landing made the origin directories above it in the bucket: they
      // become those bucket directories, under the numbers already shown.
      AdoptAncestors(key);
      return;  // the mapping now names the bucket file
    }
    InodeRef in = weak.lock();
    if (!in) return;
    // Failed, or kept outside the bucket: the staging inode is not a bucket
    // file. Only this flight's entry goes (a newer download may have its own).
    std::lock_guard lock(table_mu_);
    std::lock_guard il(in->mu);
    if (in->kind == InodeKind::kRemote && in->landing_flight == owner) DropLandingLocked(*in);
  });
}

Entry Vfs::EntryForVirtualDir(const std::string& key) {
  std::lock_guard lock(table_mu_);
  InodeRef inode = KeyedInodeLocked(key, InodeKind::kVirtualDir);
  std::lock_guard il(inode->mu);
  return OriginOnlyEntry(*inode);
}

// The origin-only inode the kernel knows under key, made (as kind) if there
// is none, with one more lookup counted (table_mu_ held).
Vfs::InodeRef Vfs::KeyedInodeLocked(const std::string& key, InodeKind kind) {
  InodeRef inode;
  if (auto it = by_key_.find(key); it != by_key_.end()) inode = inodes_.at(it->second);
  if (!inode) {
    inode = std::make_shared<Inode>(next_ino_++);
    inode->key = key;
    inode->kind = kind;
    inode->born = kind;
    inodes_.emplace(inode->ino, inode);
    by_key_[key] = inode->ino;
  }
  inode->nlookup++;
  return inode;
}

void Vfs::Forget(uint64_t ino, uint64_t n) {
  InodeRef doomed;  // destroyed (fd closed) outside the lock
  std::lock_guard lock(table_mu_);
  auto it = inodes_.find(ino);
  if (it == inodes_.end()) return;
  Inode& inode = *it->second;
  if (inode.nlookup < n) {
    spdlog::critical("forget({}, {}) with lookup count {}", ino, n, inode.nlookup);
    std::abort();
  }
  inode.nlookup -= n;
  if (inode.nlookup > 0 || ino == kRootIno) return;
  doomed = it->second;
  inodes_.erase(it);
  Uncache(*doomed);
  if (auto b = by_backing_.find({doomed->dev, doomed->backing_ino});
      b != by_backing_.end() && b->second == ino)
    by_backing_.erase(b);
  if (!doomed->key.empty()) {
    if (auto k = by_key_.find(doomed->key); k != by_key_.end() && k->second == ino)
      by_key_.erase(k);
  }
}

Result<std::string> Vfs::KeyOf(uint64_t ino) {
  auto inode = Get(ino);
  if (!inode) return Fail(ESTALE, "stale inode");
  std::unique_lock lock(inode->mu);
  if (inode->kind != InodeKind::kLocal) return inode->key;
  if (ino == kRootIno) return std::string();
  auto fd = PathFdLocked(*inode);
  if (!fd) return std::unexpected(fd.error());
  struct stat st;
  if (fstatat((*fd)->get(), "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0)
    return FailErrno("fstat");
  if (S_ISDIR(st.st_mode) && st.st_nlink == 0) return Fail(ENOENT, "directory was removed");
  char buf[PATH_MAX + 1];
  ssize_t n = readlink(ProcPath((*fd)->get()).c_str(), buf, PATH_MAX);
  if (n < 0) return FailErrno("readlink");
  std::string_view path(buf, static_cast<std::size_t>(n));
  const std::string& root = store_.path();
  if (path == root) return std::string();
  if (path.size() > root.size() && path.starts_with(root) && path[root.size()] == '/')
    return std::string(path.substr(root.size() + 1));
  return Fail(ENOENT, fmt::format("{} is no longer below the bucket", path));
}

Result<std::string> Vfs::ChildKey(const InodeRef& parent, std::string_view name) {
  auto k = KeyOf(parent->ino);
  if (!k) return k;
  if (!k->empty()) *k += '/';
  *k += name;
  return k;
}

bool Vfs::WantsReadFd(const struct stat& st) {
  if (!S_ISREG(st.st_mode)) return false;
  std::lock_guard lock(table_mu_);
  return (handles_ok_ || inodes_.size() < read_ahead_open_below_) &&
         !by_backing_.contains({st.st_dev, st.st_ino});
}

Result<Entry> Vfs::LookupLocal(const InodeRef& parent, std::string_view name, bool* missing) {
  *missing = false;
  std::string n(name);
  int fd = -1;
  std::shared_ptr<UniqueFd> dir_fd;  // the parent's descriptor, held while used
  int dir = -1;
  {
    std::lock_guard lock(parent->mu);
    switch (parent->kind) {
      case InodeKind::kLocal: {
        auto pfd = PathFdLocked(*parent);
        if (!pfd) return std::unexpected(pfd.error());
        dir_fd = *pfd;
        dir = dir_fd->get();
        fd = openat(dir, n.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
        break;
      }
      case InodeKind::kVirtualDir: {
        auto r = store_.OpenKey(parent->key + "/" + n, O_PATH);
        if (r)
          fd = *r;
        else
          errno = r.error().code;
        break;
      }
      case InodeKind::kRemote:
        return Fail(ENOTDIR, "not a directory");
    }
  }
  if (fd < 0) {
    if (errno == ENOENT) *missing = true;
    return FailErrno(fmt::format("lookup {}", name));
  }
  UniqueFd owned(fd);
  if (dir < 0) return EntryForFd(std::move(owned));
  struct stat st;
  if (fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) return FailErrno("fstat");
  UniqueFd read_fd;
  if (WantsReadFd(st)) {
    // A file looked up is usually read next. Opening it for reading now, by
    // its name in the directory at hand, is a fraction of what reopening the
    // O_PATH descriptor through /proc costs at the first read. O_NONBLOCK:
    // should the name have become a FIFO meanwhile, the open must not wait;
    // the inode check drops whatever is not the file just seen, and the flag
    // goes once it is (splice(2) would carry it over to its pipe).
    read_fd.Reset(
        openat(dir, n.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
    struct stat rst;
    if (read_fd && !(fstat(read_fd.get(), &rst) == 0 && rst.st_dev == st.st_dev &&
                     rst.st_ino == st.st_ino && fcntl(read_fd.get(), F_SETFL, 0) == 0))
      read_fd.Reset();
  }
  return EntryForFd(std::move(owned), &st, std::move(read_fd));
}

void Vfs::Lookup(uint64_t parent_ino, std::string_view name, EntryCallback cb) {
  MaybeEvict();
  auto parent = Get(parent_ino);
  if (!parent) return cb(Fail(ESTALE, "stale parent"));
  if (Reserved(parent_ino, name)) return cb(Fail(ENOENT, "reserved name"));
  if (name.size() > NAME_MAX) return cb(Fail(ENAMETOOLONG, "name too long"));
  // Read before looking in the bucket: Start then knows whether a download
  // may have landed the file since (and only then looks again).
  uint64_t landings = mirror_.landings();
  bool missing = false;
  auto local = LookupLocal(parent, name, &missing);
  if (!missing) {
    if (local) stats_.hits++;
    return cb(std::move(local));
  }
  auto key = ChildKey(parent, name);
  if (!key) return cb(std::unexpected(key.error()));

  // An origin-only inode the kernel already knows under this key.
  {
    std::lock_guard lock(table_mu_);
    if (auto it = by_key_.find(*key); it != by_key_.end()) {
      InodeRef inode = inodes_.at(it->second);
      std::lock_guard il(inode->mu);
      // Reusable: a directory, a download still running, or a landed copy
      // kept outside the bucket (writeback = false). A landed in-bucket file
      // that the local lookup missed was removed: ask the origin again --
      // unless it landed moments ago, when a network filesystem's client
      // cache may simply not show it yet (this inode is the file).
      bool healthy = inode->kind == InodeKind::kVirtualDir;
      if (inode->kind == InodeKind::kRemote && inode->flight) {
        if (!inode->flight->finished()) {
          healthy = true;
        } else {
          auto done = inode->flight->WaitDone();
          healthy = done && (!done->in_bucket || LandedMomentsAgo(done->landed_ns));
        }
      }
      if (healthy) {
        inode->nlookup++;
        return cb(OriginOnlyEntry(*inode));
      }
    }
  }
  if (mirror_.ImpliedDirectory(*key)) return cb(EntryForVirtualDir(*key));
  if (!mirror_.HasRule(*key)) return cb(Fail(ENOENT, "no rule matches"));
  // A fresh listing of the directory from the origin answers without a
  // request: a name it lacks is not there, a directory needs no probe.
  {
    std::size_t slash = key->rfind('/');
    auto listing = mirror_.FreshListing(slash == std::string::npos ? "" : key->substr(0, slash));
    if (listing) {
      const ListedEntry* e = listing->Find(name);
      // Servers leave dot names out of index pages (nginx always, Apache's
      // IndexIgnore .??*): their absence says nothing, so they are asked for.
      if (!e && !name.starts_with('.')) return cb(Fail(ENOENT, "not in the origin's listing"));
      if (e && e->is_dir) return cb(EntryForVirtualDir(*key));
      // An exact size and time (nginx JSON, a manifest): stat needs no
      // request; the download starts at the first read.
      if (e && e->size && e->mtime) return cb(EntryForListed(*key, *e));
    }
  }

  mirror_.StartHere(*key, landings, [&](const std::shared_ptr<Flight>& flight) {
    flight->OnHead([this, parent, n = std::string(name), k = *key, flight,
                    cb = std::move(cb)](const Result<Resolution>& r) {
      if (!r) return cb(std::unexpected(r.error()));
      switch (r->kind) {
        case RemoteKind::kFile:
          if (invalidate_) {
            // If the body then fails, make the kernel forget the name so the
            // next open looks it up (and asks the origin) again.
            uint64_t parent_ino = parent->ino;
            flight->OnDone([this, parent_ino, n](const Result<FetchedObject>& done) {
              if (!done) invalidate_(parent_ino, n);
            });
          }
          return cb(EntryForRemote(k, *r, flight));
        case RemoteKind::kDirectory:
          return cb(EntryForVirtualDir(k));
        case RemoteKind::kNotFound:
          return cb(Fail(ENOENT, "not found at origin"));
        case RemoteKind::kLocal: {
          bool gone = false;
          auto e = LookupLocal(parent, n, &gone);
          if (e) stats_.hits++;
          return cb(std::move(e));
        }
      }
    });
  });
}

Result<void> Vfs::AdoptLocal(const InodeRef& inode, const std::string& key) {
  auto fd = store_.OpenKey(key, O_PATH);
  if (!fd) return std::unexpected(fd.error());
  UniqueFd owned(*fd);
  struct stat st;
  if (fstatat(owned.get(), "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0)
    return FailErrno("fstat");
  std::lock_guard lock(table_mu_);
  std::lock_guard il(inode->mu);
  if (inode->kind == InodeKind::kLocal) return {};
  // Shown so far with a number of its own (an origin directory, a file
  // known from a listing before any download): it keeps that number.
  bool own_number =
      (inode->kind == InodeKind::kVirtualDir && S_ISDIR(st.st_mode)) ||
      (inode->kind == InodeKind::kRemote && inode->res.ino == 0 && !S_ISDIR(st.st_mode));
  if (own_number) {
    std::lock_guard al(alias_mu_);
    dir_alias_[{st.st_dev, st.st_ino}] = kSyntheticInoBit | inode->ino;
    any_alias_ = true;
  }
  // The staging inode it was entered under may not be the bucket file (a
  // local file won, or a refresh replaced it): that entry goes before the
  // staging file, which pins its number, is closed.
  DropLandingLocked(*inode);
  inode->kind = InodeKind::kLocal;
  if (handles_ok_) inode->handle = HandleOf(owned.get());
  inode->fd = std::make_shared<UniqueFd>(owned.Release());
  if (!inode->handle.empty()) Cached(*inode);
  inode->dev = st.st_dev;
  inode->backing_ino = st.st_ino;
  if (inode->flight && inode->flight->finished()) {
    if (auto done = inode->flight->WaitDone(); done) inode->landed_ns = done->landed_ns;
  }
  inode->flight.reset();
  // A copy-up may have changed the backing file: reopen on next use.
  inode->read_fd.reset();
  inode->write_fd.reset();
  inode->read_streaming.reset();
  by_backing_.try_emplace({st.st_dev, st.st_ino}, inode->ino);
  if (auto k = by_key_.find(inode->key); k != by_key_.end() && k->second == inode->ino)
    by_key_.erase(k);
  return {};
}

Result<void> Vfs::Materialize(const InodeRef& inode) {
  std::unique_lock lock(inode->mu);
  InodeKind kind = inode->kind;
  std::string key = inode->key;
  if (kind == InodeKind::kLocal) return {};
  if (kind == InodeKind::kVirtualDir) {
    lock.unlock();
    auto fd = store_.MakeDirs(key);
    if (!fd) return std::unexpected(fd.error());
    close(*fd);
    AdoptAncestors(key);
    return AdoptLocal(inode, key);
  }
  auto flight = inode->flight;
  bool started = false;
  if (!flight || (flight->finished() && !flight->WaitDone())) {
    flight = mirror_.Start(key);
    inode->flight = flight;
    started = true;
  }
  lock.unlock();
  if (started) TrackLanding(inode, flight);
  auto done = flight->WaitDone();
  if (!done) return std::unexpected(done.error());
  if (!done->in_bucket) {
    // writeback = false: a change makes it a local file (copy-up).
    auto c = store_.CommitCopy(done->temp_file->get(), key, inode->res.mtime);
    if (!c && c.error().code != EEXIST) return c;
  }
  return AdoptLocal(inode, key);
}

void Vfs::SettleChild(const InodeRef& parent, std::string_view name) {
  auto key = ChildKey(parent, name);
  if (!key) return;
  InodeRef child;
  {
    std::lock_guard lock(table_mu_);
    if (auto it = by_key_.find(*key); it != by_key_.end()) child = inodes_.at(it->second);
  }
  if (child) (void)Materialize(child);
}

Result<std::shared_ptr<UniqueFd>> Vfs::DirFd(const InodeRef& parent) {
  if (auto m = Materialize(parent); !m) return std::unexpected(m.error());
  std::lock_guard lock(parent->mu);
  return PathFdLocked(*parent);
}

void Vfs::SettleLanded(const InodeRef& inode) {
  std::string key;
  {
    std::lock_guard lock(inode->mu);
    if (inode->kind != InodeKind::kRemote || !inode->flight || !inode->flight->finished()) return;
    auto done = inode->flight->WaitDone();
    if (!done || !done->in_bucket) return;
    key = inode->key;
  }
  (void)AdoptLocal(inode, key);
}

Result<struct stat> Vfs::StatInode(const InodeRef& inode) {
  {
    std::lock_guard lock(inode->mu);
    if (inode->kind == InodeKind::kLocal) {
      auto fd = PathFdLocked(*inode);
      if (!fd) return std::unexpected(fd.error());
      struct stat st;
      if (fstatat((*fd)->get(), "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0)
        return FailErrno("fstat");
      PresentLandedLocked(*inode, st);
      ShowAs(st);
      return st;
    }
    if (inode->kind == InodeKind::kVirtualDir) return RemoteAttr(*inode);
    // A remote file: once its download has landed, it is a local file.
    if (!inode->flight || !inode->flight->finished()) return RemoteAttr(*inode);
    auto done = inode->flight->WaitDone();
    if (!done || !done->in_bucket) return RemoteAttr(*inode);
  }
  if (auto a = AdoptLocal(inode, inode->key); !a) {
    std::lock_guard lock(inode->mu);
    return RemoteAttr(*inode);
  }
  return StatInode(inode);
}

Result<struct stat> Vfs::GetAttr(uint64_t ino) {
  MaybeEvict();
  auto inode = Get(ino);
  if (!inode) return Fail(ESTALE, "stale inode");
  return StatInode(inode);
}

Result<struct stat> Vfs::SetAttr(uint64_t ino, const struct stat& attr, int to_set,
                                 std::optional<int> fh) {
  auto inode = Get(ino);
  if (!inode) return Fail(ESTALE, "stale inode");
  if (auto m = Materialize(inode); !m) return std::unexpected(m.error());
  std::shared_ptr<UniqueFd> held;  // the inode's descriptor, held while used
  {
    std::lock_guard lock(inode->mu);
    auto fd = PathFdLocked(*inode);
    if (!fd) return std::unexpected(fd.error());
    held = *fd;
  }
  int ifd = held->get();
  std::string proc = ProcPath(ifd);
  if (to_set & kSetMode) {
    auto r =
        Check(fh ? fchmod(*fh, attr.st_mode) : fchmodat(AT_FDCWD, proc.c_str(), attr.st_mode, 0),
              "chmod");
    if (!r) return std::unexpected(r.error());
  }
  if (to_set & (kSetUid | kSetGid)) {
    uid_t uid = (to_set & kSetUid) ? attr.st_uid : static_cast<uid_t>(-1);
    gid_t gid = (to_set & kSetGid) ? attr.st_gid : static_cast<gid_t>(-1);
    auto r = Check(fchownat(ifd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW), "chown");
    if (!r) return std::unexpected(r.error());
  }
  if (to_set & kSetSize) {
    auto r =
        Check(fh ? ftruncate(*fh, attr.st_size) : truncate(proc.c_str(), attr.st_size), "truncate");
    if (!r) return std::unexpected(r.error());
  }
  if (to_set & (kSetAtime | kSetMtime | kSetAtimeNow | kSetMtimeNow)) {
    timespec tv[2];
    tv[0].tv_sec = tv[1].tv_sec = 0;
    tv[0].tv_nsec = tv[1].tv_nsec = UTIME_OMIT;
    if (to_set & kSetAtimeNow)
      tv[0].tv_nsec = UTIME_NOW;
    else if (to_set & kSetAtime)
      tv[0] = attr.st_atim;
    if (to_set & kSetMtimeNow)
      tv[1].tv_nsec = UTIME_NOW;
    else if (to_set & kSetMtime)
      tv[1] = attr.st_mtim;
    int rc;
    if (fh) {
      rc = futimens(*fh, tv);
    } else {
      struct stat st;
      rc = fstatat(ifd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
      if (rc == 0)
        rc = S_ISLNK(st.st_mode) ? utimensat(ifd, "", tv, AT_EMPTY_PATH)
                                 : utimensat(AT_FDCWD, proc.c_str(), tv, 0);
    }
    auto r = Check(rc, "utimens");
    if (!r) return std::unexpected(r.error());
  }
  return StatInode(inode);
}

Result<std::string> Vfs::ReadLink(uint64_t ino) {
  auto inode = Get(ino);
  if (!inode) return Fail(ESTALE, "stale inode");
  std::lock_guard lock(inode->mu);
  if (inode->kind != InodeKind::kLocal) return Fail(EINVAL, "not a symlink");
  char buf[PATH_MAX + 1];
  auto fd = PathFdLocked(*inode);
  if (!fd) return std::unexpected(fd.error());
  ssize_t n = readlinkat((*fd)->get(), "", buf, PATH_MAX);
  if (n < 0) return FailErrno("readlink");
  return std::string(buf, static_cast<std::size_t>(n));
}

Result<Entry> Vfs::MkNod(const Caller& c, uint64_t parent_ino, std::string_view name, mode_t mode,
                         dev_t rdev) {
  auto parent = Get(parent_ino);
  if (!parent) return Fail(ESTALE, "stale parent");
  if (Reserved(parent_ino, name)) return Fail(EPERM, "reserved name");
  auto dir = DirFd(parent);
  if (!dir) return std::unexpected(dir.error());
  std::string n(name);
  {
    FsIdGuard id(c);
    if (mknodat((*dir)->get(), n.c_str(), mode, rdev) != 0) return FailErrno("mknod");
  }
  int fd = openat((*dir)->get(), n.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return FailErrno("open new node");
  return EntryForFd(UniqueFd(fd));
}

Result<Entry> Vfs::MkDir(const Caller& c, uint64_t parent_ino, std::string_view name, mode_t mode) {
  auto parent = Get(parent_ino);
  if (!parent) return Fail(ESTALE, "stale parent");
  if (Reserved(parent_ino, name)) return Fail(EPERM, "reserved name");
  auto dir = DirFd(parent);
  if (!dir) return std::unexpected(dir.error());
  std::string n(name);
  {
    FsIdGuard id(c);
    if (mkdirat((*dir)->get(), n.c_str(), mode) != 0) return FailErrno("mkdir");
  }
  int fd = openat((*dir)->get(), n.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return FailErrno("open new directory");
  return EntryForFd(UniqueFd(fd));
}

Result<Entry> Vfs::Symlink(const Caller& c, std::string_view target, uint64_t parent_ino,
                           std::string_view name) {
  auto parent = Get(parent_ino);
  if (!parent) return Fail(ESTALE, "stale parent");
  if (Reserved(parent_ino, name)) return Fail(EPERM, "reserved name");
  auto dir = DirFd(parent);
  if (!dir) return std::unexpected(dir.error());
  std::string n(name), t(target);
  {
    FsIdGuard id(c);
    if (symlinkat(t.c_str(), (*dir)->get(), n.c_str()) != 0) return FailErrno("symlink");
  }
  int fd = openat((*dir)->get(), n.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return FailErrno("open new symlink");
  return EntryForFd(UniqueFd(fd));
}

Result<Entry> Vfs::Link(uint64_t ino, uint64_t new_parent_ino, std::string_view new_name) {
  auto inode = Get(ino);
  auto parent = Get(new_parent_ino);
  if (!inode || !parent) return Fail(ESTALE, "stale inode");
  if (Reserved(new_parent_ino, new_name)) return Fail(EPERM, "reserved name");
  if (auto m = Materialize(inode); !m) return std::unexpected(m.error());
  auto dir = DirFd(parent);
  if (!dir) return std::unexpected(dir.error());
  std::shared_ptr<UniqueFd> held;  // the inode's descriptor, held while used
  {
    std::lock_guard lock(inode->mu);
    auto fd = PathFdLocked(*inode);
    if (!fd) return std::unexpected(fd.error());
    held = *fd;
  }
  int ifd = held->get();
  std::string n(new_name);
  if (linkat(AT_FDCWD, ProcPath(ifd).c_str(), (*dir)->get(), n.c_str(), AT_SYMLINK_FOLLOW) != 0)
    return FailErrno("link");
  int fd = fcntl(ifd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return FailErrno("dup");
  return EntryForFd(UniqueFd(fd));
}

Result<void> Vfs::Unlink(uint64_t parent_ino, std::string_view name) {
  auto parent = Get(parent_ino);
  if (!parent) return Fail(ESTALE, "stale parent");
  if (Reserved(parent_ino, name)) return Fail(EPERM, "reserved name");
  SettleChild(parent, name);
  auto key = ChildKey(parent, name);
  auto dir = DirFd(parent);
  if (!dir) return std::unexpected(dir.error());
  PinChild(parent, name, key);
  std::string n(name);
  if (unlinkat((*dir)->get(), n.c_str(), 0) != 0) return FailErrno("unlink");
  if (key) {
    if (auto r = mirror_.index().Erase(*key); !r) spdlog::warn("index: {}", r.error().message);
  }
  return {};
}

void Vfs::PinChild(const InodeRef& parent, std::string_view name, const Result<std::string>& key) {
  if (auto child = ChildInode(parent, name, key)) {
    std::lock_guard lock(child->mu);
    PinLocked(*child);
  }
}

bool Vfs::OriginDirectory(const InodeRef& inode) {
  std::lock_guard lock(inode->mu);
  return inode->kind == InodeKind::kVirtualDir || inode->born == InodeKind::kVirtualDir;
}

// The inode the kernel knows for parent/name, if any: an origin-only one by
// its key, else a bucket entry by its backing inode.
Vfs::InodeRef Vfs::ChildInode(const InodeRef& parent, std::string_view name,
                              const Result<std::string>& key) {
  if (key) {
    std::lock_guard lock(table_mu_);
    if (auto it = by_key_.find(*key); it != by_key_.end()) return inodes_.at(it->second);
  }
  std::string n(name);
  struct stat st;
  {
    std::lock_guard lock(parent->mu);
    if (parent->kind != InodeKind::kLocal) return nullptr;
    auto pfd = PathFdLocked(*parent);
    if (!pfd || fstatat((*pfd)->get(), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return nullptr;
  }
  std::lock_guard lock(table_mu_);
  if (auto it = by_backing_.find({st.st_dev, st.st_ino}); it != by_backing_.end()) {
    if (auto in = inodes_.find(it->second); in != inodes_.end()) return in->second;
  }
  return nullptr;
}

void Vfs::AdoptAncestors(std::string_view key) {
  for (std::size_t slash = key.find('/'); slash != std::string_view::npos;
       slash = key.find('/', slash + 1)) {
    std::string dir(key.substr(0, slash));
    InodeRef inode;
    {
      std::lock_guard lock(table_mu_);
      if (auto it = by_key_.find(dir); it != by_key_.end()) inode = inodes_.at(it->second);
    }
    if (!inode) continue;
    {
      std::lock_guard lock(inode->mu);
      if (inode->kind != InodeKind::kVirtualDir) continue;
    }
    (void)AdoptLocal(inode, dir);
  }
}

Result<void> Vfs::RmDir(uint64_t parent_ino, std::string_view name) {
  auto parent = Get(parent_ino);
  if (!parent) return Fail(ESTALE, "stale parent");
  if (Reserved(parent_ino, name)) return Fail(EPERM, "reserved name");
  auto key = ChildKey(parent, name);
  // A directory the origin has keeps its content there: removing the
  // bucket's part would leave the name (and the origin's files) in place.
  if (auto child = ChildInode(parent, name, key); child && OriginDirectory(child))
    return Fail(ENOTEMPTY, fmt::format("rmdir {}: the origin has this directory",
                                       key ? *key : std::string(name)));
  auto dir = DirFd(parent);
  if (!dir) return std::unexpected(dir.error());
  std::string n(name);
  struct stat st;
  bool known = fstatat((*dir)->get(), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
  if (unlinkat((*dir)->get(), n.c_str(), AT_REMOVEDIR) != 0) return FailErrno("rmdir");
  if (known && any_alias_) {
    std::lock_guard lock(alias_mu_);
    dir_alias_.erase({st.st_dev, st.st_ino});
  }
  return {};
}

Result<void> Vfs::Rename(uint64_t parent_ino, std::string_view name, uint64_t new_parent_ino,
                         std::string_view new_name, unsigned int flags) {
  auto parent = Get(parent_ino);
  auto new_parent = Get(new_parent_ino);
  if (!parent || !new_parent) return Fail(ESTALE, "stale parent");
  if (Reserved(parent_ino, name) || Reserved(new_parent_ino, new_name))
    return Fail(EPERM, "reserved name");
  auto key = ChildKey(parent, name);
  // The origin's part of a directory cannot move with it (its files would
  // stay under the old name): EXDEV, as overlayfs answers for lower
  // directories; mv then copies what the directory shows and removes it.
  if (auto child = ChildInode(parent, name, key); child && OriginDirectory(child))
    return Fail(EXDEV, fmt::format("rename {}: the origin has this directory",
                                   key ? *key : std::string(name)));
  // Nor can one be replaced: it is not empty (its files are at the origin).
  if (auto target = ChildInode(new_parent, new_name, ChildKey(new_parent, new_name));
      target && OriginDirectory(target))
    return Fail(ENOTEMPTY, fmt::format("rename onto {}: the origin has this directory",
                                       std::string(new_name)));
  SettleChild(parent, name);
  SettleChild(new_parent, new_name);
  auto from = DirFd(parent);
  if (!from) return std::unexpected(from.error());
  auto to = DirFd(new_parent);
  if (!to) return std::unexpected(to.error());
  PinChild(new_parent, new_name, ChildKey(new_parent, new_name));
  std::string a(name), b(new_name);
  if (renameat2((*from)->get(), a.c_str(), (*to)->get(), b.c_str(), flags) != 0)
    return FailErrno("rename");
  if (key) {
    if (auto r = mirror_.index().Erase(*key); !r) spdlog::warn("index: {}", r.error().message);
  }
  return {};
}

void Vfs::OpenFetched(const InodeRef& inode, int flags, const Result<FetchedObject>& r,
                      const OpenCallback& cb) {
  if (!r) return cb(std::unexpected(r.error()));
  bool writes = (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
  if (r->in_bucket || writes) {
    auto m = Materialize(inode);
    if (!m) return cb(std::unexpected(m.error()));
    return Open(inode->ino, flags, cb);
  }
  int fd = open(ProcPath(r->temp_file->get()).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return cb(FailErrno("open fetched copy"));
  cb(OpenFile{fd, nullptr, 0});
}

void Vfs::Open(uint64_t ino, int flags, OpenCallback cb) {
  auto inode = Get(ino);
  if (!inode) return cb(Fail(ESTALE, "stale inode"));
  std::unique_lock lock(inode->mu);
  switch (inode->kind) {
    case InodeKind::kLocal: {
      int f = (flags & ~(O_CREAT | O_EXCL | O_NOCTTY | O_NOFOLLOW)) | O_CLOEXEC;
      auto pfd = PathFdLocked(*inode);
      if (!pfd) return cb(std::unexpected(pfd.error()));
      int fd = open(ProcPath((*pfd)->get()).c_str(), f);
      lock.unlock();
      if (fd < 0) return cb(FailErrno("open"));
      return cb(OpenFile{fd, nullptr, 0});
    }
    case InodeKind::kVirtualDir:
      return cb(Fail(EISDIR, "is a directory"));
    case InodeKind::kRemote:
      break;
  }
  auto flight = inode->flight;
  bool started = false;
  if (!flight || (flight->finished() && !flight->WaitDone())) {
    flight = mirror_.Start(inode->key);  // none yet, or the last attempt failed
    inode->flight = flight;
    started = true;
  }
  lock.unlock();
  // The next lookup of the name must find this inode, also once it landed.
  if (started) TrackLanding(inode, flight);
  auto when_done = [this, inode, flags, cb](const Result<FetchedObject>& r) {
    OpenFetched(inode, flags, r, cb);
  };
  bool read_only = (flags & O_ACCMODE) == O_RDONLY && !(flags & O_TRUNC);
  if (!read_only) return flight->OnDone(when_done);
  // A reader need not wait for the whole object: it follows the download.
  flight->OnHead([flight, cb, when_done](const Result<Resolution>& head) {
    if (!head || head->kind != RemoteKind::kFile) return flight->OnDone(when_done);
    uint64_t size = head->size;
    // The head is published just before the staging file exists: wait for that.
    flight->OnStreamOrDone([flight, cb, when_done, size] {
      if (auto src = flight->stream_file(); src && !flight->finished()) {
        // Readers only use positional I/O, so the staging file's description can be shared.
        int fd = fcntl(src->get(), F_DUPFD_CLOEXEC, 0);
        if (fd >= 0) return cb(OpenFile{fd, flight, size});
      }
      flight->OnDone(when_done);
    });
  });
}

Result<IoFile> Vfs::LocalIoFile(const InodeRef& inode, bool write) {
  std::lock_guard lock(inode->mu);
  if (inode->kind != InodeKind::kLocal) return Fail(EIO, "not local");
  auto& slot = write ? inode->write_fd : inode->read_fd;
  if (!slot) {
    auto pfd = PathFdLocked(*inode);
    if (!pfd) return std::unexpected(pfd.error());
    std::string proc = ProcPath((*pfd)->get());
    int fd = open(proc.c_str(), (write ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    if (fd < 0 && write && errno == EACCES) fd = open(proc.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return FailErrno("open for I/O");
    slot = std::make_shared<UniqueFd>(fd);
  }
  return IoFile{slot, nullptr, 0};
}

Result<IoFile> Vfs::IoFileSync(uint64_t ino, bool write) {
  MaybeEvict();
  auto inode = Get(ino);
  if (!inode) return Fail(ESTALE, "stale inode");
  {
    std::lock_guard lock(inode->mu);
    if (inode->kind == InodeKind::kVirtualDir) return Fail(EISDIR, "is a directory");
  }
  if (auto m = Materialize(inode); !m) return std::unexpected(m.error());
  return LocalIoFile(inode, write);
}

void Vfs::IoFileForRead(uint64_t ino, IoCallback cb) {
  MaybeEvict();
  auto inode = Get(ino);
  if (!inode) return cb(Fail(ESTALE, "stale inode"));
  std::unique_lock lock(inode->mu);
  if (inode->kind == InodeKind::kLocal) {
    lock.unlock();
    return cb(LocalIoFile(inode, false));
  }
  if (inode->kind == InodeKind::kVirtualDir) return cb(Fail(EISDIR, "is a directory"));
  if (inode->read_fd) {
    // A failed download stays failed for reads (the kernel retries a failed
    // page within one read(2)); the next lookup of the name asks again.
    return cb(IoFile{inode->read_fd, inode->read_streaming, inode->read_size});
  }
  if (inode->flight && inode->flight->finished()) {
    if (auto done = inode->flight->WaitDone(); !done) return cb(std::unexpected(done.error()));
  }
  lock.unlock();
  // First read of an origin-only file: what an open would do, kept for the next reads.
  Open(ino, O_RDONLY, [inode, cb](Result<OpenFile> r) {
    if (!r) return cb(std::unexpected(r.error()));
    auto file = std::make_shared<UniqueFd>(r->fd);
    std::unique_lock lock(inode->mu);
    if (!inode->read_fd) {
      inode->read_fd = file;
      inode->read_streaming = r->streaming;
      inode->read_size = r->size;
    }
    IoFile io{inode->read_fd, inode->read_streaming, inode->read_size};
    lock.unlock();
    cb(io);
  });
}

Result<std::pair<Entry, int>> Vfs::Create(const Caller& c, uint64_t parent_ino,
                                          std::string_view name, mode_t mode, int flags) {
  auto parent = Get(parent_ino);
  if (!parent) return Fail(ESTALE, "stale parent");
  if (Reserved(parent_ino, name)) return Fail(EPERM, "reserved name");
  auto dir = DirFd(parent);
  if (!dir) return std::unexpected(dir.error());
  std::string n(name);
  int fd;
  {
    FsIdGuard id(c);
    fd = openat((*dir)->get(), n.c_str(), (flags | O_CREAT | O_CLOEXEC) & ~O_NOFOLLOW, mode);
  }
  if (fd < 0) return FailErrno("create");
  UniqueFd file(fd);
  int pfd = openat((*dir)->get(), n.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (pfd < 0) return FailErrno("open created file");
  auto e = EntryForFd(UniqueFd(pfd));
  if (!e) return std::unexpected(e.error());
  return std::make_pair(*e, file.Release());
}

Result<std::unique_ptr<DirHandle>> Vfs::OpenDir(uint64_t ino) {
  MaybeEvict();
  auto inode = Get(ino);
  if (!inode) return Fail(ESTALE, "stale inode");
  auto h = std::make_unique<DirHandle>();
  h->inode = inode;
  h->is_root = ino == kRootIno;
  std::string key;
  {
    std::lock_guard lock(inode->mu);
    if (inode->kind == InodeKind::kRemote) return Fail(ENOTDIR, "not a directory");
    key = inode->key;
    if (inode->kind == InodeKind::kVirtualDir) {
      auto fd = store_.OpenKey(key, O_PATH);
      if (!fd) return h;  // only at the origin: the names the kernel has been shown
      close(*fd);
    }
  }
  if (auto a = AdoptLocal(inode, key); !a && inode->kind != InodeKind::kLocal) return h;
  {
    std::lock_guard lock(inode->mu);
    auto pfd = PathFdLocked(*inode);
    if (!pfd) return std::unexpected(pfd.error());
    h->fd.Reset(openat((*pfd)->get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  }
  if (!h->fd) return FailErrno("opendir");
  return h;
}

Result<void> Vfs::List(DirHandle& h) {
  auto dir = std::static_pointer_cast<Inode>(h.inode);
  h.listing.clear();
  auto self = StatInode(dir);
  if (!self) return std::unexpected(self.error());
  std::unordered_set<std::string> names;
  if (h.fd) {
    int fd = openat(h.fd.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return FailErrno("opendir");
    DIR* dp = fdopendir(fd);
    if (!dp) {
      close(fd);
      return FailErrno("fdopendir");
    }
    std::unique_ptr<DIR, int (*)(DIR*)> closer(dp, closedir);
    for (;;) {
      errno = 0;
      dirent* d = readdir(dp);
      if (!d) {
        if (errno) return FailErrno("readdir");
        break;
      }
      std::string_view name = d->d_name;
      if (h.is_root && name == BucketStore::kStateDirName) continue;
      ino_t ino = d->d_ino;
      if (name == ".")
        ino = self->st_ino;
      else
        ino = ShownIno(self->st_dev, ino);
      h.listing.push_back({std::string(name), ino, d->d_type, 0});
      names.emplace(name);
    }
  } else {
    // Only at the origin: . and .. as stat shows them.
    ino_t up = self->st_ino;
    if (auto k = KeyOf(dir->ino); k) {
      std::size_t slash = k->rfind('/');
      std::string parent_key = slash == std::string::npos ? "" : k->substr(0, slash);
      std::lock_guard lock(table_mu_);
      if (parent_key.empty()) {
        const Inode& root = *inodes_.at(kRootIno);
        up = ShownIno(root.dev, root.backing_ino);
      } else if (auto it = by_key_.find(parent_key); it != by_key_.end()) {
        up = kSyntheticInoBit | it->second;
      }
    }
    h.listing.push_back({".", self->st_ino, DT_DIR, 0});
    h.listing.push_back({"..", up, DT_DIR, 0});
  }
  // Every name a lookup has shown here and the bucket does not have yet: a
  // file still downloading (or kept outside the bucket), an origin directory.
  auto key = KeyOf(dir->ino);
  if (!key) return {};
  std::string prefix = key->empty() ? "" : *key + "/";
  std::unique_lock lock(table_mu_);
  for (auto it = by_key_.lower_bound(prefix);
       it != by_key_.end() && std::string_view(it->first).starts_with(prefix); ++it) {
    std::string_view name = std::string_view(it->first).substr(prefix.size());
    if (name.empty() || name.find('/') != std::string_view::npos) continue;
    if (names.contains(std::string(name))) continue;
    auto in = inodes_.find(it->second);
    if (in == inodes_.end()) continue;
    Inode& child = *in->second;
    std::lock_guard il(child.mu);
    bool shown = child.kind == InodeKind::kVirtualDir;
    if (child.kind == InodeKind::kRemote && child.flight) {
      if (!child.flight->finished()) {
        shown = true;
      } else {
        auto done = child.flight->WaitDone();
        shown = done && !done->in_bucket;
      }
    }
    if (!shown) continue;
    h.listing.push_back(
        {std::string(name), RemoteAttr(child).st_ino,
         static_cast<unsigned char>(child.kind == InodeKind::kVirtualDir ? DT_DIR : DT_REG),
         child.ino});
    names.emplace(name);
  }
  lock.unlock();
  // Then what the origin lists (the bucket and names already shown win).
  auto listed = mirror_.ListDir(*key);
  if (!listed) return std::unexpected(listed.error());
  if (!*listed) return {};
  for (const ListedEntry& e : (*listed)->entries) {
    if (names.contains(e.name)) continue;
    // A number of its own per key until a lookup enters the name.
    ino_t ino = kSyntheticInoBit | kListedInoBit | (KeyHash(prefix + e.name) & (kListedInoBit - 1));
    h.listing.push_back(
        {e.name, ino, static_cast<unsigned char>(e.is_dir ? DT_DIR : DT_REG), 0, true});
  }
  return {};
}

Result<void> Vfs::ReadDir(DirHandle& h, off_t offset, bool plus,
                          const std::function<bool(const DirEntry&)>& emit) {
  MaybeEvict();
  if (offset == 0 || !h.listed) {  // opendir or rewinddir: read it anew
    if (auto r = List(h); !r) return r;
    h.listed = true;
  }
  auto dir = std::static_pointer_cast<Inode>(h.inode);
  for (std::size_t i = static_cast<std::size_t>(std::max<off_t>(offset, 0)); i < h.listing.size();
       ++i) {
    const DirHandle::Listed& l = h.listing[i];
    DirEntry de{l.name, l.ino, l.type, static_cast<off_t>(i + 1), std::nullopt};
    if (plus && !DotOrDotDot(l.name) && !l.listed_only) {
      std::optional<Entry> e;
      if (l.origin_ino) {
        std::lock_guard lock(table_mu_);
        auto in = inodes_.find(l.origin_ino);
        if (in != inodes_.end()) {
          std::lock_guard il(in->second->mu);
          if (in->second->kind != InodeKind::kLocal) {
            in->second->nlookup++;
            e = OriginOnlyEntry(*in->second);
          }
        }
      }
      if (!e) {
        bool missing = false;
        auto local = LookupLocal(dir, l.name, &missing);
        if (!local) continue;  // vanished between the listing and now
        e = *local;
      }
      de.entry = *e;
    }
    if (!emit(de)) {
      if (de.entry) Forget(de.entry->ino, 1);
      return {};
    }
  }
  return {};
}

Result<void> Vfs::FsyncDir(DirHandle& h, bool datasync) {
  if (!h.fd) return {};
  return Check(datasync ? fdatasync(h.fd.get()) : fsync(h.fd.get()), "fsyncdir");
}

Result<struct statvfs> Vfs::StatFs(uint64_t) {
  struct statvfs sv;
  if (fstatvfs(store_.root_fd(), &sv) != 0) return FailErrno("statfs");
  return sv;
}

std::vector<Counter> Vfs::Counters() {
  const MirrorStats& m = mirror_.stats();
  uint64_t uptime = static_cast<uint64_t>(std::max<int64_t>(0, Now() - mount_time_));
  return {
      {"hits", "Lookups answered from the bucket.", stats_.hits.load(), false},
      {"misses", "Lookups of names missing from the bucket that went to the rules.",
       m.misses.load(), false},
      {"fetches", "Objects downloaded from an origin.", m.fetches.load(), false},
      {"fetched_bytes", "Bytes downloaded from origins.", m.fetched_bytes.load(), false},
      {"not_found", "Keys every matching origin answered 404 for.", m.not_found.load(), false},
      {"origin_errors", "Failed back-source transfers (EIO).", m.origin_errors.load(), false},
      {"requests", "HTTP requests sent to origins.", m.requests.load(), false},
      {"inflight", "Downloads in progress.",
       static_cast<uint64_t>(std::max<int64_t>(0, m.inflight.load())), true},
      {"uptime", "Seconds since mount.", uptime, true},
      {"rules", "Back-source rules in force.", mirror_.rules()->rules().size(), true},
      {"inodes", "Inodes the kernel holds.", InodeCount(), true},
      {"descriptor_inodes", "Inodes holding open descriptors now (bounded by the cache).",
       CachedDescriptorInodes(), true},
  };
}

// What `originfs refresh` reads back (user.originfs.refresh_result), by key
// and by inode: right after a replace the caller may still reach the old file.
void Vfs::NoteRefresh(const std::string& key, uint64_t ino, const std::string& outcome) {
  std::lock_guard lock(control_mu_);
  if (refresh_results_.size() > 10000) refresh_results_.clear();  // a report, not a history
  refresh_results_[key] = outcome;
  refresh_results_["#" + std::to_string(ino)] = outcome;
}

Result<void> Vfs::RelistDirectory(const InodeRef& inode) {
  auto key = KeyOf(inode->ino);
  if (!key) return std::unexpected(key.error());
  mirror_.ForgetListing(*key);
  auto l = mirror_.ListDir(*key);
  std::string outcome = !l   ? "error: " + l.error().message
                        : *l ? fmt::format("listed {} entries", (*l)->entries.size())
                             : std::string("no listing at the origin");
  NoteRefresh(*key, inode->ino, outcome);
  if (!l) return std::unexpected(l.error());
  return {};
}

Result<void> Vfs::RefreshFile(const InodeRef& inode, bool force) {
  if (auto m = Materialize(inode); !m) return m;
  auto key = KeyOf(inode->ino);
  if (!key) return std::unexpected(key.error());
  auto r = mirror_.Refresh(*key, force);
  std::string outcome;
  if (!r) {
    outcome = "error: " + r.error().message;
  } else if (*r == Mirror::RefreshOutcome::kUpdated) {
    outcome = "updated";
  } else if (*r == Mirror::RefreshOutcome::kUnchanged) {
    outcome = "unchanged";
  } else if (*r == Mirror::RefreshOutcome::kChangedLocally) {
    outcome = "changed locally, kept";
  } else if (*r == Mirror::RefreshOutcome::kLocalFile) {
    outcome = "local file (never fetched), kept";
  } else {
    outcome = "gone at origin (local copy kept)";
  }
  // Kept because replacing it would lose local data: the setxattr fails
  // (EBUSY), so a caller that did not ask for force knows nothing was refreshed.
  if (r &&
      (*r == Mirror::RefreshOutcome::kChangedLocally || *r == Mirror::RefreshOutcome::kLocalFile))
    r = Fail(EBUSY, fmt::format("refresh {}: {}", *key, outcome));
  NoteRefresh(*key, inode->ino, outcome);
  if (!r) return std::unexpected(r.error());
  if (*r == Mirror::RefreshOutcome::kUpdated && invalidate_) {
    // The name now points at a new file: make the kernel look it up again.
    std::size_t slash = key->rfind('/');
    std::string parent_key = slash == std::string::npos ? "" : key->substr(0, slash);
    std::string name = slash == std::string::npos ? *key : key->substr(slash + 1);
    uint64_t parent = 0;
    if (parent_key.empty()) {
      parent = kRootIno;
    } else {
      struct stat st;
      std::lock_guard lock(table_mu_);
      if (fstatat(store_.root_fd(), parent_key.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (auto it = by_backing_.find({st.st_dev, st.st_ino}); it != by_backing_.end())
          parent = it->second;
      }
      if (!parent) {  // the kernel may know the directory as an origin-only one
        if (auto it = by_key_.find(parent_key); it != by_key_.end()) parent = it->second;
      }
    }
    if (parent) invalidate_(parent, name);
  }
  return {};
}

void Vfs::NoteReload(const Result<void>& r) {
  std::lock_guard lock(control_mu_);
  last_reload_ = r ? "ok" : "error: " + r.error().message;
}

void Vfs::SetControlHandler(ControlHandler h) {
  std::lock_guard lock(control_mu_);
  control_ = std::move(h);
}

std::string Vfs::OwnXattrNames(const InodeRef& inode) {
  std::string names;
  auto add = [&](std::string_view n) {
    names += kXattrPrefix;
    names += n;
    names += '\0';
  };
  if (inode->ino == kRootIno) {
    for (const auto& c : Counters()) add(c.name);
    return names;
  }
  auto key = KeyOf(inode->ino);
  if (!key) return names;
  InodeKind kind;
  {
    std::lock_guard lock(inode->mu);
    kind = inode->kind;
  }
  if (kind == InodeKind::kRemote) {
    add("origin");
  } else if (kind == InodeKind::kLocal) {
    auto rec = mirror_.index().Get(*key);
    if (rec && *rec) {
      add("origin");
      add("fetched_at");
    }
  }
  return names;
}

Result<std::string> Vfs::GetOwnXattr(const InodeRef& inode, std::string_view name) {
  if (inode->ino == kRootIno) {
    for (const auto& c : Counters()) {
      if (c.name == name) return std::to_string(c.value);
    }
    if (name == "refresh_result") {  // unlisted; `originfs refresh MNT .` re-lists the root
      std::lock_guard lock(control_mu_);
      if (auto it = refresh_results_.find(""); it != refresh_results_.end()) return it->second;
      return Fail(ENODATA, "not refreshed");
    }
    if (name == "last_reload") {  // unlisted; read by `originfs reload`
      std::lock_guard lock(control_mu_);
      return last_reload_;
    }
    return Fail(ENODATA, "no such attribute");
  }
  if (name == "refresh_result") {  // unlisted; read by `originfs refresh`
    // By key, or by inode: right after a replace the caller may still reach the old file.
    auto key = KeyOf(inode->ino);
    std::lock_guard lock(control_mu_);
    auto it = key ? refresh_results_.find(*key) : refresh_results_.end();
    if (it == refresh_results_.end()) it = refresh_results_.find("#" + std::to_string(inode->ino));
    if (it == refresh_results_.end()) return Fail(ENODATA, "not refreshed");
    return it->second;
  }
  if (name == "state") {  // unlisted; used by `originfs warm`
    std::lock_guard lock(inode->mu);
    return std::string(inode->kind == InodeKind::kRemote ? "remote" : "local");
  }
  if (name == "landed_ns") {  // unlisted; when this mount landed it (used by `originfs warm`)
    std::lock_guard lock(inode->mu);
    if (inode->landed_ns <= 0) return Fail(ENODATA, "not fetched by this mount");
    return std::to_string(inode->landed_ns);
  }
  if (name != "origin" && name != "fetched_at") return Fail(ENODATA, "no such attribute");
  {
    std::lock_guard lock(inode->mu);
    if (inode->kind == InodeKind::kRemote) {
      if (name == "origin" && !inode->res.url.empty()) return inode->res.url;
      return Fail(ENODATA, "not fetched yet");
    }
    if (inode->kind == InodeKind::kVirtualDir) return Fail(ENODATA, "no such attribute");
  }
  auto key = KeyOf(inode->ino);
  if (!key) return Fail(ENODATA, "no such attribute");
  auto rec = mirror_.index().Get(*key);
  if (!rec || !*rec) return Fail(ENODATA, "written locally");
  if (name == "origin") return (*rec)->url;
  char buf[64];
  time_t t = static_cast<time_t>((*rec)->fetched_at);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return std::string(buf);
}

Result<std::string> Vfs::GetXattr(uint64_t ino, std::string_view name) {
  auto inode = Get(ino);
  if (!inode) return Fail(ESTALE, "stale inode");
  SettleLanded(inode);
  if (name.starts_with(kXattrPrefix)) return GetOwnXattr(inode, name.substr(kXattrPrefix.size()));
  std::shared_ptr<UniqueFd> held;
  {
    std::lock_guard lock(inode->mu);
    if (inode->kind != InodeKind::kLocal) return Fail(ENODATA, "no such attribute");
    auto fd = PathFdLocked(*inode);
    if (!fd) return std::unexpected(fd.error());
    held = *fd;
  }
  int ifd = held->get();
  std::string proc = ProcPath(ifd), n(name);
  for (;;) {
    ssize_t size = getxattr(proc.c_str(), n.c_str(), nullptr, 0);
    if (size < 0) return FailErrno("getxattr");
    std::string value(static_cast<std::size_t>(size), '\0');
    ssize_t got = getxattr(proc.c_str(), n.c_str(), value.data(), value.size());
    if (got < 0 && errno == ERANGE) continue;  // grew meanwhile
    if (got < 0) return FailErrno("getxattr");
    value.resize(static_cast<std::size_t>(got));
    return value;
  }
}

Result<std::string> Vfs::ListXattr(uint64_t ino) {
  auto inode = Get(ino);
  if (!inode) return Fail(ESTALE, "stale inode");
  SettleLanded(inode);
  std::string own = OwnXattrNames(inode);
  std::shared_ptr<UniqueFd> held;
  {
    std::lock_guard lock(inode->mu);
    if (inode->kind != InodeKind::kLocal) return own;
    auto fd = PathFdLocked(*inode);
    if (!fd) return std::unexpected(fd.error());
    held = *fd;
  }
  int ifd = held->get();
  std::string proc = ProcPath(ifd);
  for (;;) {
    ssize_t size = listxattr(proc.c_str(), nullptr, 0);
    if (size < 0) return FailErrno("listxattr");
    std::string names(static_cast<std::size_t>(size), '\0');
    ssize_t got = listxattr(proc.c_str(), names.data(), names.size());
    if (got < 0 && errno == ERANGE) continue;
    if (got < 0) return FailErrno("listxattr");
    names.resize(static_cast<std::size_t>(got));
    return names + own;
  }
}

Result<void> Vfs::SetXattr(uint64_t ino, std::string_view name, std::string_view value, int flags) {
  auto inode = Get(ino);
  if (!inode) return Fail(ESTALE, "stale inode");
  if (name.starts_with(kXattrPrefix)) {
    ControlHandler h;
    {
      std::lock_guard lock(control_mu_);
      h = control_;
    }
    if (name == "user.originfs.refresh") {
      if (auto st = StatInode(inode); st && S_ISDIR(st->st_mode)) return RelistDirectory(inode);
      if (ino != kRootIno) return RefreshFile(inode, value == "force");
    }
    if (ino != kRootIno || !h) return Fail(EPERM, "user.originfs.* attributes are read-only");
    auto r = h(name.substr(kXattrPrefix.size()), value);
    if (name == "user.originfs.reload") {
      std::lock_guard lock(control_mu_);
      last_reload_ = r ? "ok" : "error: " + r.error().message;
    }
    return r;
  }
  if (auto m = Materialize(inode); !m) return m;
  std::lock_guard lock(inode->mu);
  auto pfd = PathFdLocked(*inode);
  if (!pfd) return std::unexpected(pfd.error());
  std::string n(name);
  return Check(
      setxattr(ProcPath((*pfd)->get()).c_str(), n.c_str(), value.data(), value.size(), flags),
      "setxattr");
}

Result<void> Vfs::RemoveXattr(uint64_t ino, std::string_view name) {
  auto inode = Get(ino);
  if (!inode) return Fail(ESTALE, "stale inode");
  if (name.starts_with(kXattrPrefix))
    return Fail(EPERM, "user.originfs.* attributes are read-only");
  if (auto m = Materialize(inode); !m) return m;
  std::lock_guard lock(inode->mu);
  std::string n(name);
  auto pfd = PathFdLocked(*inode);
  if (!pfd) return std::unexpected(pfd.error());
  return Check(removexattr(ProcPath((*pfd)->get()).c_str(), n.c_str()), "removexattr");
}

}  // namespace originfs
