// Revalidation: a landed file is checked against its origin with a
// conditional GET (Mirror::Refresh) without anyone asking for it by name --
// when it is opened for reading and its rule says `revalidate`, at most once
// per that duration (0: at every open, which then waits for the answer), and
// for each file `originfs refresh --recursive` walks. A file changed locally
// since it landed is not replaced (Mirror::Refresh's checks), and a reader
// keeps the file it opened, since a replacement is a new file under the name
// (MigrationTest.RevalidateZeroServesTheOriginsCopyAtEveryOpen).
#include <fcntl.h>

#include "core/vfs/inode.h"

namespace originfs {

using vfs_internal::Now;

namespace {

// Keys remembered with the time of their last revalidation; past this many
// the memory starts over (files are then asked about once more, no harm).
constexpr std::size_t kMaxRevalidated = 200000;

}  // namespace

Vfs::Revalidation Vfs::RevalidationDue(const InodeRef& inode, int flags) {
  if (!mirror_.Revalidates()) return Revalidation::kNone;  // the common case: no lock, no copy
  auto rules = mirror_.rules();
  // Only opens for reading check. A file open for writing through the mount
  // is not replaced either (RefreshFile asks open_writers right before the
  // rename: MigrationTest.RevalidationKeepsAFileOpenForWriting).
  if ((flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC)) return Revalidation::kNone;
  {
    std::lock_guard lock(inode->mu);
    if (inode->kind != InodeKind::kLocal) return Revalidation::kNone;  // arriving: fresh
  }
  auto key = KeyOf(inode->ino);
  if (!key) return Revalidation::kNone;
  auto candidates = rules->Match(*key);
  if (candidates.empty() || !candidates.front()->revalidate) return Revalidation::kNone;
  int64_t every = *candidates.front()->revalidate;
  int64_t now = Now();
  if (every > 0) {
    std::lock_guard lock(revalidated_mu_);
    auto it = revalidated_.find(*key);
    if (it != revalidated_.end() && now - it->second < every) return Revalidation::kNone;
  }
  // Only files that landed from an origin (a record), not local ones.
  auto record = mirror_.LandedRecord(*key);
  if (!record) return Revalidation::kNone;
  if (every == 0) return Revalidation::kWait;
  std::lock_guard lock(revalidated_mu_);
  auto [it, fresh] = revalidated_.try_emplace(*key, record->fetched_at);
  if (now - it->second < every) return Revalidation::kNone;  // landed (or refreshed) lately
  if (revalidated_.size() > kMaxRevalidated) {
    revalidated_.clear();
    revalidated_.emplace(*key, now);
  } else {
    it->second = now;  // one check per period, however many opens race
  }
  return Revalidation::kBackground;
}

Result<void> Vfs::Revalidate(const InodeRef& inode) {
  stats_.revalidations++;
  std::optional<Mirror::RefreshOutcome> outcome;
  auto r = RefreshFile(inode, false, &outcome);
  if (outcome == Mirror::RefreshOutcome::kUpdated) stats_.revalidation_updates++;
  if (outcome == Mirror::RefreshOutcome::kChangedLocally) stats_.revalidation_kept++;
  if (!r && !outcome) {
    // The origin did not answer: the local copy is served (logged by the
    // refresh with the URL).
    if (auto key = KeyOf(inode->ino))
      spdlog::info("revalidate key={}: {}; serving the local copy", *key, r.error().message);
  }
  return r;
}

Result<void> Vfs::RevalidateNamed(const InodeRef& inode) {
  auto key = KeyOf(inode->ino);
  if (!key) return std::unexpected(key.error());
  {
    std::lock_guard lock(inode->mu);
    if (inode->kind != InodeKind::kLocal) return Fail(EINVAL, "not in the bucket");
  }
  if (!mirror_.LandedRecord(*key) || !mirror_.HasRule(*key)) {
    // (A key no rule matches any more, e.g. under a retired rule, is local too.)
    NoteRefresh(*key, inode->ino, "local file (never fetched)");
    return {};
  }
  {
    std::lock_guard lock(revalidated_mu_);
    if (revalidated_.size() > kMaxRevalidated) revalidated_.clear();
    revalidated_[*key] = Now();
  }
  return Revalidate(inode);
}

}  // namespace originfs
