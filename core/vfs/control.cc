// The control protocol's daemon side (see core/vfs/control_protocol.h):
// counters, refresh and reload through user.originfs.* attributes, and the
// pass-through of every other extended attribute.
#include <fcntl.h>
#include <malloc.h>
#include <sys/resource.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <unordered_set>
#include <utility>

#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

#include "core/common/key_hash.h"
#include "core/vfs/control_protocol.h"
#include "core/vfs/inode.h"
#include "core/vfs/vfs.h"

namespace originfs {

using namespace vfs_internal;

std::vector<Counter> Vfs::Counters() {
  const TableMemory table = InodeTableMemory();
  const MirrorStats& m = mirror_.stats();
  uint64_t uptime = static_cast<uint64_t>(std::max<int64_t>(0, Now() - mount_time_));
  std::vector<Counter> all = {
      {"hits", "Lookups answered from the bucket.", stats_.hits.load(), false},
      {"revalidations",
       "Landed files checked with their origin by revalidate or refresh --recursive.",
       stats_.revalidations.load(), false},
      {"revalidation_updates",
       "Landed files revalidation found changed at the origin and replaced.",
       stats_.revalidation_updates.load(), false},
      {"revalidation_kept",
       "Landed files revalidation kept because they changed locally since they landed.",
       stats_.revalidation_kept.load(), false},
      {"readdirplus_entries",
       "Entries listed with their attributes (readdirplus), needing no lookup of their own.",
       stats_.plus_entries.load(), false},
      {"misses", "Lookups of names missing from the bucket that went to the rules.",
       m.misses.load(), false},
      {"fetches", "Objects downloaded from an origin.", m.fetches.load(), false},
      {"fetched_bytes", "Bytes downloaded from origins.", m.fetched_bytes.load(), false},
      {"not_found", "Keys every matching origin answered 404 for.", m.not_found.load(), false},
      {"origin_errors", "Failed back-source transfers (EIO).", m.origin_errors.load(), false},
      {"requests", "HTTP requests sent to origins.", m.requests.load(), false},
      {"fetches_last_minute", "Objects landed from origins in the last 60 seconds.",
       m.fetched_last_minute.LastMinute().events, true},
      {"fetched_bytes_last_minute", "Bytes landed from origins in the last 60 seconds.",
       m.fetched_last_minute.LastMinute().bytes, true},
      {"inflight", "Downloads in progress.",
       static_cast<uint64_t>(std::max<int64_t>(0, m.inflight.load())), true},
      {"uptime", "Seconds since mount.", uptime, true},
      {"rules", "Back-source rules in force.", mirror_.rules()->rules().size(), true},
      {"origins_down", "Origins that cannot be reached now (probed in the background).",
       OriginsDown(), true},
      {"inodes", "Inodes the kernel holds.", InodeCount(), true},
      {"descriptor_inodes", "Inodes holding open descriptors now (bounded by the cache).",
       CachedDescriptorInodes(), true},
      {"number_aliases",
       "Bucket files and directories shown under the number they had at "
       "the origin (bounded by the inodes the kernel holds).",
       AliasCount(), true},
      {"inode_table_bytes", "Heap bytes of the inode table (entries, their parts, index).",
       table.bytes, true},
      {"inode_bytes_each", "Heap bytes of the inode table per inode.", table.bytes_per_inode, true},
      {"heap_bytes", "Heap bytes in use by the daemon (malloc).", HeapBytes(), true},
      {"rss_bytes", "Resident memory of the daemon.", ResidentBytes(), true},
  };
  for (auto& c : backing_files_.Counters()) all.push_back(std::move(c));
  if (extra_counters_)
    for (auto& c : extra_counters_()) all.push_back(std::move(c));
  return all;
}

namespace {

// A malloc'd block of n bytes takes n + 8 rounded up to 16, at least 32
// (glibc's chunk header and alignment).
constexpr std::size_t Chunk(std::size_t n) {
  return std::max<std::size_t>(32, (n + 8 + 15) & ~std::size_t(15));
}

}  // namespace

uint64_t Vfs::HeapBytes() {
  struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;  // in chunks of the heaps, and mmap'd blocks
}

uint64_t Vfs::ResidentBytes() {
  long pages = 0, resident = 0;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return static_cast<uint64_t>(resident) * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

Vfs::TableMemory Vfs::InodeTableMemory() {
  TableMemory m;
  {
    std::lock_guard lock(table_mu_);
    m.inodes = inodes_.size();
    m.bytes = inodes_.memory_bytes() + by_backing_.memory_bytes();
  }
  // make_shared: one block for the control block (16 bytes) and the inode.
  m.bytes += m.inodes * Chunk(sizeof(Inode) + 16);
  auto parts = [](int64_t n) { return static_cast<std::size_t>(std::max<int64_t>(0, n)); };
  m.bytes += parts(Inode::Origin::live.load()) * Chunk(sizeof(Inode::Origin));
  m.bytes += parts(Inode::Io::live.load()) * Chunk(sizeof(Inode::Io));
  m.bytes_per_inode = m.inodes ? m.bytes / m.inodes : 0;
  return m;
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
  ForgetContradicted(inode->ino, *key);
  return {};
}

Result<void> Vfs::RefreshFile(const InodeRef& inode, bool force,
                              std::optional<Mirror::RefreshOutcome>* said) {
  if (auto m = WaitLanded(inode); !m) return m;
  auto key = KeyOf(inode->ino);
  if (!key) return std::unexpected(key.error());
  // Not under a writer through the mount: its writes would go to the old copy.
  auto r = mirror_.Refresh(
      *key, force, [&inode] { return inode->open_writers.load(std::memory_order_relaxed) == 0; });
  if (r && said) *said = *r;
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
  if (*r == Mirror::RefreshOutcome::kUpdated) {
    std::lock_guard lock(inode->mu);
    inode->replaced = true;
  }
  if (*r == Mirror::RefreshOutcome::kUpdated && invalidate_) {
    // The name now points at a new file: make the kernel look it up again.
    std::size_t slash = key->rfind('/');
    std::string parent_key = slash == std::string::npos ? "" : key->substr(0, slash);
    std::string name = slash == std::string::npos ? *key : key->substr(slash + 1);
    uint64_t parent = 0;
    if (parent_key.empty()) {
      parent = kRootIno;
    } else {
      // Through the store's resolver: a symlink in the path is never followed.
      struct stat st {};
      bool found = false;
      if (auto dir = store_.OpenKey(parent_key, O_PATH | O_DIRECTORY)) {
        UniqueFd held(*dir);
        found = fstat(held.get(), &st) == 0;
      }
      std::lock_guard lock(table_mu_);
      if (found) {
        parent = by_backing_.Find(st.st_dev, st.st_ino);
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
    names += control::kPrefix;
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
  if (kind == InodeKind::kOriginFile) {
    add(control::kOrigin);
  } else if (kind == InodeKind::kLocal) {
    if (LandedHere(inode, *key)) {
      add(control::kOrigin);
      add(control::kFetchedAt);
    }
  }
  return names;
}

std::optional<ObjectRecord> Vfs::LandedHere(const InodeRef& inode, const std::string& key) {
  auto rec = mirror_.LandedRecord(key);
  if (!rec || rec->landed_ino == 0) return rec;
  // A record stays after its file was removed (whiteouts): it is not of a
  // file made at the name since.
  std::lock_guard lock(inode->mu);
  if (inode->backing_ino != rec->landed_ino) return std::nullopt;
  return rec;
}

Result<std::string> Vfs::GetOwnXattr(const InodeRef& inode, std::string_view name) {
  if (auto m = MigrationXattr(inode, name)) return std::move(*m);
  if (inode->ino == kRootIno) {
    for (const auto& c : Counters()) {
      if (c.name == name) return std::to_string(c.value);
    }
    if (name == control::kRefreshResult) {  // unlisted; `originfs refresh MNT .` re-lists the root
      std::lock_guard lock(control_mu_);
      if (auto it = refresh_results_.find(""); it != refresh_results_.end()) return it->second;
      return Fail(ENODATA, "not refreshed");
    }
    if (name == control::kLastReload) {  // unlisted; read by `originfs reload`
      std::lock_guard lock(control_mu_);
      return last_reload_;
    }
    if (name == control::kOrigins) {  // unlisted; read by `originfs stats`
      std::string out;
      for (const OriginState& o : mirror_.OriginStates()) {
        char since[64] = "";
        time_t t = static_cast<time_t>(o.down_since);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(since, sizeof since, "%Y-%m-%dT%H:%M:%SZ", &tm);
        out += o.up ? fmt::format("{} up (was down; last error: {})\n", o.origin, o.last_error)
                    : fmt::format("{} down since {} ({} s): {}\n", o.origin, since,
                                  Now() - o.down_since, o.last_error);
      }
      return out;
    }
    return Fail(ENODATA, "no such attribute");
  }
  if (name == control::kRefreshResult) {  // unlisted; read by `originfs refresh`
    // By key, or by inode: right after a replace the caller may still reach the old file.
    auto key = KeyOf(inode->ino);
    std::lock_guard lock(control_mu_);
    auto it = key ? refresh_results_.find(*key) : refresh_results_.end();
    if (it == refresh_results_.end()) it = refresh_results_.find("#" + std::to_string(inode->ino));
    if (it == refresh_results_.end()) return Fail(ENODATA, "not refreshed");
    return it->second;
  }
  if (name == control::kState) {  // unlisted; used by `originfs warm`
    std::lock_guard lock(inode->mu);
    return std::string(inode->kind == InodeKind::kOriginFile ? control::kStateRemote
                                                             : control::kStateLocal);
  }
  if (name ==
      control::kLandedNs) {  // unlisted; when this mount landed it (used by `originfs warm`)
    std::lock_guard lock(inode->mu);
    if (!inode->origin || inode->origin->landed_ns <= 0)
      return Fail(ENODATA, "not fetched by this mount");
    return std::to_string(inode->OriginPart().landed_ns);
  }
  if (name != control::kOrigin && name != control::kFetchedAt)
    return Fail(ENODATA, "no such attribute");
  {
    std::lock_guard lock(inode->mu);
    if (inode->kind == InodeKind::kOriginFile) {
      if (name == control::kOrigin && !inode->OriginPart().res.url.empty())
        return inode->OriginPart().res.url;
      return Fail(ENODATA, "not fetched yet");
    }
    if (inode->kind == InodeKind::kOriginDir) return Fail(ENODATA, "no such attribute");
  }
  auto key = KeyOf(inode->ino);
  if (!key) return Fail(ENODATA, "no such attribute");
  auto rec = LandedHere(inode, *key);
  if (!rec) return Fail(ENODATA, "written locally");
  if (name == control::kOrigin) return rec->url;
  char buf[64];
  time_t t = static_cast<time_t>(rec->fetched_at);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return std::string(buf);
}

Result<std::string> Vfs::GetXattr(uint64_t ino, std::string_view name) {
  auto inode = Get(ino);
  if (!inode) return Fail(ESTALE, "stale inode");
  ORIGINFS_TRY(NotReplaced(inode));
  NoteIfLanded(inode);
  if (name.starts_with(control::kPrefix))
    return GetOwnXattr(inode, name.substr(control::kPrefix.size()));
  if (name.starts_with(control::kBucketPrefix)) return Fail(ENODATA, "no such attribute");
  std::shared_ptr<UniqueFd> held;
  {
    std::lock_guard lock(inode->mu);
    if (inode->kind != InodeKind::kLocal) return Fail(ENODATA, "no such attribute");
    auto fd = PathFdLocked(inode);
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
  ORIGINFS_TRY(NotReplaced(inode));
  NoteIfLanded(inode);
  // A file's own attributes (origin, fetched_at) are read by name only:
  // listed, cp -a, mv across filesystems, rsync -X and tar --xattrs would
  // copy them and fail on each (they are read-only). The root's counters
  // stay listed (getfattr -d on the mount root).
  std::string own = inode->ino == kRootIno ? OwnXattrNames(inode) : std::string();
  std::shared_ptr<UniqueFd> held;
  {
    std::lock_guard lock(inode->mu);
    if (inode->kind != InodeKind::kLocal) return own;
    auto fd = PathFdLocked(inode);
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
    // The bucket's own marks (user.originfs.opaque) are not the file's.
    std::string shown;
    for (std::size_t at = 0; at < names.size();) {
      std::size_t end = names.find('\0', at);
      if (end == std::string::npos) end = names.size();
      std::string_view n(names.data() + at, end - at);
      if (!n.starts_with(control::kPrefix) && !n.starts_with(control::kBucketPrefix)) {
        shown += n;
        shown += '\0';
      }
      at = end + 1;
    }
    return shown + own;
  }
}

Result<void> Vfs::SetXattr(uint64_t ino, std::string_view name, std::string_view value, int flags) {
  auto inode = Get(ino);
  if (!inode) return Fail(ESTALE, "stale inode");
  ORIGINFS_TRY(NotReplaced(inode));
  if (name.starts_with(control::kPrefix)) {
    ControlHandler h;
    {
      std::lock_guard lock(control_mu_);
      h = control_;
    }
    if (name.substr(control::kPrefix.size()) == control::kRestore) {
      if (auto st = StatInode(inode); !st || !S_ISDIR(st->st_mode))
        return Fail(ENOTDIR, "restore: set on the directory, with the name as value");
      if (value.empty() || value.find('/') != std::string_view::npos || DotOrDotDot(value))
        return Fail(EINVAL, "restore: the value is one name in this directory");
      return RestoreName(inode, value);
    }
    if (name.substr(control::kPrefix.size()) == control::kRefresh) {
      if (auto st = StatInode(inode); st && S_ISDIR(st->st_mode)) return RelistDirectory(inode);
      if (ino != kRootIno && value == control::kRefreshRevalidate) return RevalidateNamed(inode);
      if (ino != kRootIno) return RefreshFile(inode, value == control::kRefreshForce);
    }
    if (ino != kRootIno || !h) return Fail(EPERM, "user.originfs.* attributes are read-only");
    auto r = h(name.substr(control::kPrefix.size()), value);
    if (name.substr(control::kPrefix.size()) == control::kReload) {
      std::lock_guard lock(control_mu_);
      last_reload_ = r ? "ok" : "error: " + r.error().message;
    }
    return r;
  }
  if (name.starts_with(control::kBucketPrefix)) return Fail(EPERM, "the bucket's own mark");
  if (auto m = WaitLanded(inode); !m) return m;
  std::lock_guard lock(inode->mu);
  auto pfd = PathFdLocked(inode);
  if (!pfd) return std::unexpected(pfd.error());
  std::string n(name);
  return Check(
      setxattr(ProcPath((*pfd)->get()).c_str(), n.c_str(), value.data(), value.size(), flags),
      "setxattr");
}

Result<void> Vfs::RemoveXattr(uint64_t ino, std::string_view name) {
  auto inode = Get(ino);
  if (!inode) return Fail(ESTALE, "stale inode");
  ORIGINFS_TRY(NotReplaced(inode));
  if (name.starts_with(control::kPrefix) || name.starts_with(control::kBucketPrefix))
    return Fail(EPERM, "user.originfs.* attributes are read-only");
  if (auto m = WaitLanded(inode); !m) return m;
  std::lock_guard lock(inode->mu);
  std::string n(name);
  auto pfd = PathFdLocked(inode);
  if (!pfd) return std::unexpected(pfd.error());
  return Check(removexattr(ProcPath((*pfd)->get()).c_str(), n.c_str()), "removexattr");
}

}  // namespace originfs
