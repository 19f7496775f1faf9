// Landing stamps (bucket_store.h): what a file or directory a landing
// changed looked like before and right after, so that the kernel is shown
// an origin file's or directory's first attributes while only landings have
// changed it (tar and rsync compare them before and after reading).
#include "core/store/bucket_store.h"

#include <sys/stat.h>
#include <time.h>

#include <cassert>
#include <iterator>
#include <mutex>

namespace originfs {

namespace {

bool Before(const timespec& a, const timespec& b) {
  return a.tv_sec < b.tv_sec || (a.tv_sec == b.tv_sec && a.tv_nsec < b.tv_nsec);
}

}  // namespace

bool BucketStore::BeginLanding(int fd, struct stat& before) const {
  std::lock_guard lock(stamps_mu_);
  if (fstat(fd, &before) != 0) return false;
  if (stamps_.size() >= kMaxStamps) {  // older landings show their real ctime
    for (auto it = stamps_.begin(); it != stamps_.end();)
      it = it->second.pending ? std::next(it) : stamps_.erase(it);
  }
  Stamp& s = stamps_[{before.st_dev, before.st_ino}];
  ++s.pending;
  // With no landing under way, a ctime other than the last landing's is a
  // change of someone else's: the landings from here on start anew, keeping
  // what it was before the first of them. (Every landing that ended has
  // widened hi before releasing the lock, so none is mistaken for another's.)
  bool in_a_row = s.has_range && !Before(s.hi, before.st_ctim) && !Before(before.st_ctim, s.lo);
  if (!in_a_row && s.pending == 1) {
    s.has_range = false;
    s.has_before = true;
    s.mtime_before = before.st_mtim;
    s.ctime_before = before.st_ctim;
    s.nlink_before = before.st_nlink;
    s.size_before = before.st_size;
  }
  return true;
}

namespace {

void Widen(bool& has_range, timespec& lo, timespec& hi, const timespec& t) {
  if (!has_range) {
    lo = hi = t;
    has_range = true;
    return;
  }
  if (Before(t, lo)) lo = t;
  if (Before(hi, t)) hi = t;
}

}  // namespace

void BucketStore::EndLanding(const struct stat& before, int fd) const {
  struct stat st;
  bool known = fstat(fd, &st) == 0;
  std::lock_guard lock(stamps_mu_);
  auto it = stamps_.find({before.st_dev, before.st_ino});
  if (it == stamps_.end()) return;
  Stamp& s = it->second;
  assert(s.pending > 0);
  if (s.pending > 0) --s.pending;
  // Landings at once end in any order: the range takes every ctime they left.
  if (known) Widen(s.has_range, s.lo, s.hi, st.st_ctim);
}

void BucketStore::NoteMade(int dir, const char* name, bool just_made) const {
  struct stat st;
  if (fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return;
  std::lock_guard lock(stamps_mu_);
  auto [it, fresh] = stamps_.try_emplace({st.st_dev, st.st_ino});
  Stamp& s = it->second;
  // A stamp left by a removed directory whose inode number this one reuses
  // says nothing about it (unless a landing into it has begun already).
  if (!fresh && just_made && s.pending == 0) s = Stamp{};
  Widen(s.has_range, s.lo, s.hi, st.st_ctim);
}

bool BucketStore::UnchangedSinceLanding(const struct stat& now) const {
  std::lock_guard lock(stamps_mu_);
  auto it = stamps_.find({now.st_dev, now.st_ino});
  if (it == stamps_.end()) {
    // A directory a landing is making has no stamp until NoteMade: empty
    // (its own link and ".") and made this second or the last.
    if (!S_ISDIR(now.st_mode) || now.st_nlink != 2 || making_dirs_.load() == 0) return false;
    timespec t;
    clock_gettime(CLOCK_REALTIME_COARSE, &t);
    return now.st_ctim.tv_sec + 1 >= t.tv_sec;
  }
  const Stamp& s = it->second;
  // While a landing changes it, a change seen is the landing's.
  return s.pending > 0 || (s.has_range && !Before(now.st_ctim, s.lo) && !Before(s.hi, now.st_ctim));
}

bool BucketStore::AsBeforeLandings(struct stat& now) const {
  if (!UnchangedSinceLanding(now)) return false;
  std::lock_guard lock(stamps_mu_);
  auto it = stamps_.find({now.st_dev, now.st_ino});
  if (it == stamps_.end() || !it->second.has_before) return false;
  const Stamp& s = it->second;
  now.st_mtim = s.mtime_before;
  now.st_ctim = s.ctime_before;
  now.st_nlink = s.nlink_before;
  now.st_size = s.size_before;
  return true;
}

}  // namespace originfs
