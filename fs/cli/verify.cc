// originfs verify and originfs stats MNT DIR...: a directory tree of the
// bucket (read in the bucket itself) against the origin's listings (read
// through the mount, user.originfs.listing.N), so that nothing only at the
// origin is downloaded to be counted.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <spdlog/fmt/fmt.h>

#include "core/common/unique_fd.h"
#include "core/mirror/digest.h"
#include "core/vfs/control_protocol.h"
#include "fs/cli/cli_support.h"
#include "fs/cli/commands.h"

namespace originfs {

using control::Attr;

namespace {

struct Options {
  bool list = false;      // every difference, a line each
  bool strict = false;    // local edits and whiteouts fail too
  bool checksum = false;  // MD5 of landed files against their ETag
  bool details = true;    // ask the daemon about each landed file (verify)
  bool fresh = true;      // listings read anew from the origin (verify)
};

// What a walk found below one directory.
struct Tally {
  uint64_t at_origin = 0;        // files the origin lists
  uint64_t in_bucket = 0;        // of those, in the bucket
  uint64_t in_bucket_bytes = 0;  // (their size in the bucket)
  uint64_t missing = 0;          // listed at the origin, not in the bucket
  uint64_t missing_bytes = 0;    // (of those whose size the listing gives)
  uint64_t missing_unsized = 0;  // missing files of unknown size
  uint64_t differ = 0;           // size, time or checksum not the origin's
  uint64_t local_edits = 0;      // changed since they landed, or local files over origin names
  uint64_t whiteouts = 0;        // origin names removed through the mount
  uint64_t local_only = 0;       // files the origin does not list
  uint64_t checksummed = 0;
  uint64_t unlisted = 0;  // directories whose origin part is unknown (no listing)
  uint64_t errors = 0;
};

struct BucketEntry {
  enum Kind { kFile, kDir, kWhiteout, kOther } kind = kOther;
  uint64_t size = 0;
  int64_t mtime = 0;
};

struct OriginEntry {
  char type = 'f';  // 'd', 'f', '?'
  std::optional<uint64_t> size;
  std::optional<int64_t> mtime;
};

class Walker {
 public:
  Walker(std::string mnt, int bucket_fd, Options o)
      : mnt_(std::move(mnt)), bucket_(bucket_fd), o_(o) {}

  void Walk(const std::string& dir, Tally& t) { WalkDir(dir, false, t); }

 private:
  std::string Path(const std::string& key) const { return key.empty() ? mnt_ : mnt_ + "/" + key; }
  static std::string Child(const std::string& dir, const std::string& name) {
    return dir.empty() ? name : dir + "/" + name;
  }
  void Say(const std::string& line) {
    if (o_.list) std::printf("%s\n", line.c_str());
  }

  // The bucket's entries of dir; nullopt when the bucket has no such directory.
  std::optional<std::map<std::string, BucketEntry>> BucketDir(const std::string& dir, Tally& t) {
    UniqueFd fd(dir.empty() ? openat(bucket_, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                            : openat(bucket_, dir.c_str(),
                                     O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) {
      if (errno != ENOENT && errno != ENOTDIR) {
        std::fprintf(stderr, "originfs: %s in the bucket: %s\n", dir.c_str(), std::strerror(errno));
        t.errors++;
      }
      return std::nullopt;
    }
    DIR* dp = fdopendir(fd.get());
    if (!dp) return std::nullopt;
    fd.Release();
    std::map<std::string, BucketEntry> out;
    for (;;) {
      errno = 0;
      dirent* d = readdir(dp);
      if (!d) {
        if (errno != 0) {
          std::fprintf(stderr, "originfs: %s in the bucket: %s\n", dir.c_str(),
                       std::strerror(errno));
          t.errors++;
        }
        break;
      }
      std::string name = d->d_name;
      if (name == "." || name == ".." || (dir.empty() && name == ".originfs")) continue;
      struct stat st;
      if (fstatat(dirfd(dp), d->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
      BucketEntry e;
      e.kind = S_ISREG(st.st_mode)                      ? BucketEntry::kFile
               : S_ISDIR(st.st_mode)                    ? BucketEntry::kDir
               : S_ISCHR(st.st_mode) && st.st_rdev == 0 ? BucketEntry::kWhiteout
                                                        : BucketEntry::kOther;
      e.size = static_cast<uint64_t>(st.st_size);
      e.mtime = st.st_mtime;
      out.emplace(std::move(name), e);
    }
    closedir(dp);
    return out;
  }

  // The origin's listing of dir through the mount; nullopt when there is
  // none (the origin serves no index page, or no rule lists the directory).
  std::optional<std::map<std::string, OriginEntry>> OriginDir(const std::string& dir, Tally& t) {
    std::map<std::string, OriginEntry> out;
    std::string path = Path(dir);
    for (std::size_t first = 0;;) {
      std::string page;
      std::string page_name =
          Attr(control::kListing) +
          (first == 0 && o_.fresh ? std::string(control::kListingFresh) : std::to_string(first));
      if (!GetAttr(path, page_name, &page)) {
        std::fprintf(stderr, "originfs: listing of %s/: %s\n", dir.empty() ? "." : dir.c_str(),
                     std::strerror(errno));
        t.errors++;
        return std::nullopt;
      }
      std::size_t pos = 0;
      std::optional<std::size_t> more;
      while (pos < page.size()) {
        std::size_t nl = page.find('\n', pos);
        if (nl == std::string::npos) nl = page.size();
        std::string_view line(page.data() + pos, nl - pos);
        pos = nl + 1;
        if (line == "#none") return std::nullopt;
        if (line == "#end") break;
        if (line.starts_with("#more ")) {
          more = std::strtoull(std::string(line.substr(6)).c_str(), nullptr, 10);
          break;
        }
        std::size_t a = line.find('\t'), b = line.find('\t', a + 1), c = line.find('\t', b + 1);
        if (a != 1 || b == std::string_view::npos || c == std::string_view::npos) continue;
        OriginEntry e;
        e.type = line[0];
        std::string size(line.substr(a + 1, b - a - 1)), mtime(line.substr(b + 1, c - b - 1));
        if (size != "-") e.size = std::strtoull(size.c_str(), nullptr, 10);
        if (mtime != "-") e.mtime = std::strtoll(mtime.c_str(), nullptr, 10);
        out.emplace(std::string(line.substr(c + 1)), e);
      }
      if (!more || *more <= first) break;
      first = *more;
    }
    return out;
  }

  // Every file below dir counted as at the origin only (not in the bucket).
  void Missing(const std::string& key, const OriginEntry& e, Tally& t) {
    if (e.type == 'd') return WalkDir(key, true, t);
    t.at_origin++;
    t.missing++;
    if (e.size)
      t.missing_bytes += *e.size;
    else
      t.missing_unsized++;
    Say("missing " + key);
  }

  void LocalOnly(const std::string& key, const BucketEntry& b, Tally& t) {
    if (b.kind == BucketEntry::kDir) {
      auto entries = BucketDir(key, t);
      if (entries)
        for (const auto& [name, e] : *entries) LocalOnly(Child(key, name), e, t);
      return;
    }
    if (b.kind != BucketEntry::kFile) return;
    t.local_only++;
    Say("local only " + key);
  }

  void Both(const std::string& key, const OriginEntry& o, const BucketEntry& b, Tally& t) {
    t.at_origin++;
    t.in_bucket++;
    t.in_bucket_bytes += b.size;
    if (!o_.details) return;
    std::string landed;
    if (!GetAttr(Path(key), Attr(control::kLanded), &landed)) {
      std::fprintf(stderr, "originfs: %s: %s\n", key.c_str(), std::strerror(errno));
      t.errors++;
      return;
    }
    if (!landed.starts_with("unchanged")) {
      t.local_edits++;
      Say(landed == "changed locally" ? "changed locally " + key : "local file over " + key);
      return;
    }
    if (o.size && *o.size != b.size) {
      t.differ++;
      Say(fmt::format("differs {}: {} bytes at the origin, {} in the bucket", key, *o.size,
                      b.size));
      return;
    }
    if (o.mtime && *o.mtime != b.mtime) {
      t.differ++;
      Say(fmt::format("differs {}: modified {} at the origin, {} in the bucket", key, *o.mtime,
                      b.mtime));
      return;
    }
    if (o_.checksum) {
      std::string md5 = EtagMd5(std::string_view(landed).substr(std::strlen("unchanged ")));
      if (md5.empty()) return;  // the origin gave no MD5 to compare with
      t.checksummed++;
      UniqueFd fd(openat(bucket_, key.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
      Md5 sum;
      char buf[1 << 16];
      ssize_t n = 0;
      while (fd && (n = read(fd.get(), buf, sizeof buf)) > 0)
        sum.Update(buf, static_cast<std::size_t>(n));
      if (!fd || n < 0) {
        t.errors++;
        return;
      }
      if (sum.HexDigest() != md5) {
        t.differ++;
        Say(fmt::format("differs {}: MD5 is not the origin's ETag {}", key, md5));
      }
    }
  }

  void WalkDir(const std::string& dir, bool origin_only, Tally& t) {
    std::optional<std::map<std::string, BucketEntry>> bucket;
    if (!origin_only) bucket = BucketDir(dir, t);
    auto origin = OriginDir(dir, t);
    if (!origin) {
      // Its origin part is unknown: what the bucket has is all that is counted.
      t.unlisted++;
      Say("unlisted " + (dir.empty() ? std::string(".") : dir) + "/");
      if (bucket)
        for (const auto& [name, b] : *bucket) {
          if (b.kind == BucketEntry::kDir)
            WalkDir(Child(dir, name), false, t);
          else if (b.kind == BucketEntry::kFile)
            t.local_only++;
        }
      return;
    }
    for (const auto& [name, o] : *origin) {
      std::string key = Child(dir, name);
      const BucketEntry* b = nullptr;
      if (bucket)
        if (auto it = bucket->find(name); it != bucket->end()) b = &it->second;
      if (!b) {
        Missing(key, o, t);
      } else if (b->kind == BucketEntry::kWhiteout) {
        t.whiteouts++;
        Say("whiteout " + key);
      } else if (b->kind == BucketEntry::kDir && o.type != 'f') {
        WalkDir(key, false, t);
      } else if (b->kind == BucketEntry::kFile && o.type != 'd') {
        Both(key, o, *b, t);
      } else {
        t.at_origin++;
        t.differ++;
        Say("differs " + key + ": a file on one side, a directory on the other");
      }
    }
    if (bucket)
      for (const auto& [name, b] : *bucket)
        if (!origin->contains(name) && b.kind != BucketEntry::kWhiteout)
          LocalOnly(Child(dir, name), b, t);
  }

  std::string mnt_;
  int bucket_;
  Options o_;
};

// DIR arguments as keys ("" for the root); nullopt for one outside the mount.
std::optional<std::vector<std::string>> Roots(char** first, char** last) {
  std::vector<std::string> roots;
  for (char** a = first; a != last; ++a) {
    std::string d = *a;
    while (d.starts_with("./")) d.erase(0, 2);
    while (d.starts_with('/')) d.erase(0, 1);
    while (d.ends_with('/')) d.pop_back();
    if (d == ".") d.clear();
    if (d == ".." || d.starts_with("../") || d.find("/../") != std::string::npos) {
      std::fprintf(stderr, "originfs: %s is not below the mount\n", *a);
      return std::nullopt;
    }
    roots.push_back(std::move(d));
  }
  if (roots.empty()) roots.emplace_back();
  return roots;
}

std::string Shown(const std::string& root) { return root.empty() ? "." : root + "/"; }

}  // namespace

// Exit codes: 0 every tree is complete and equal (local edits and whiteouts
// allowed unless --strict); 1 it is not; 2 it could not be verified
// (unreadable bucket or listing, bad usage).
int VerifyCommand(int argc, char** argv) {
  Options o;
  int i = 2;
  for (; i < argc && std::string_view(argv[i]).starts_with("--"); ++i) {
    std::string_view a = argv[i];
    if (a == "--list")
      o.list = true;
    else if (a == "--strict")
      o.strict = true;
    else if (a == "--checksum")
      o.checksum = true;
    else if (a == "--") {
      ++i;
      break;
    } else {
      i = argc + 1;
      break;
    }
  }
  if (i >= argc) {
    std::fprintf(stderr,
                 "usage: originfs verify [--list] [--strict] [--checksum] MOUNTPOINT [DIR...]\n");
    return 2;
  }
  std::string mnt = argv[i];
  if (!IsOriginfsMount(mnt)) {
    std::fprintf(stderr, "originfs: %s is not an originfs mount\n", mnt.c_str());
    return 2;
  }
  auto roots = Roots(argv + i + 1, argv + argc);
  if (!roots) return 2;
  UniqueFd bucket(OpenBucketOf(mnt));
  if (!bucket) {
    std::fprintf(stderr,
                 "originfs: cannot see the bucket of %s (verify reads it: run as root or as the "
                 "bucket's owner)\n",
                 mnt.c_str());
    return 2;
  }
  Walker w(mnt, bucket.get(), o);
  bool complete = true, errors = false;
  for (const std::string& root : *roots) {
    Tally t;
    w.Walk(root, t);
    bool ok = t.missing == 0 && t.differ == 0 && t.unlisted == 0 &&
              (!o.strict || (t.local_edits == 0 && t.whiteouts == 0));
    std::printf(
        "%s: %s: %llu files at the origin, %llu in the bucket, %llu missing (%s%s), %llu differ, "
        "%llu changed locally, %llu whiteouts, %llu only in the bucket%s%s\n",
        Shown(root).c_str(),
        t.errors ? "could not verify"
        : ok     ? "complete"
                 : "NOT complete",
        (unsigned long long)t.at_origin, (unsigned long long)t.in_bucket,
        (unsigned long long)t.missing, HumanBytes(static_cast<double>(t.missing_bytes)).c_str(),
        t.missing_unsized ? fmt::format(" + {} of unknown size", t.missing_unsized).c_str() : "",
        (unsigned long long)t.differ, (unsigned long long)t.local_edits,
        (unsigned long long)t.whiteouts, (unsigned long long)t.local_only,
        t.unlisted
            ? fmt::format(", {} directories without a listing (their origin part is unknown)",
                          t.unlisted)
                  .c_str()
            : "",
        o.checksum ? fmt::format(", {} checked by MD5", t.checksummed).c_str() : "");
    complete = complete && ok;
    errors = errors || t.errors;
  }
  return errors ? 2 : complete ? 0 : 1;
}

// originfs stats MNT DIR...: how much of each tree is in the bucket.
int StatsTreesCommand(const std::string& mnt, char** first, char** last) {
  auto roots = Roots(first, last);
  if (!roots) return 1;
  UniqueFd bucket(OpenBucketOf(mnt));
  if (!bucket) {
    std::fprintf(stderr,
                 "originfs: cannot see the bucket of %s (run as root or as the bucket's owner)\n",
                 mnt.c_str());
    return 1;
  }
  std::string files_min, bytes_min;
  GetAttr(mnt, Attr("fetches_last_minute"), &files_min);
  GetAttr(mnt, Attr("fetched_bytes_last_minute"), &bytes_min);
  double rate = std::strtod(bytes_min.c_str(), nullptr) / 60.0;
  double file_rate = std::strtod(files_min.c_str(), nullptr) / 60.0;
  Options o;
  o.details = false;
  o.fresh = false;  // the listings the mount has (one request per directory per list_ttl)
  Walker w(mnt, bucket.get(), o);
  bool tty = isatty(STDOUT_FILENO);
  int rc = 0;
  for (const std::string& root : *roots) {
    Tally t;
    w.Walk(root, t);
    uint64_t total = t.in_bucket + t.missing;
    double share =
        total ? 100.0 * static_cast<double>(t.in_bucket) / static_cast<double>(total) : 100.0;
    std::printf(
        "%s: %llu of %llu origin files in the bucket (%.1f%%), %s; %llu only at the origin "
        "(%s%s)%s; %llu only in the bucket\n",
        Shown(root).c_str(), (unsigned long long)t.in_bucket, (unsigned long long)total, share,
        HumanBytes(static_cast<double>(t.in_bucket_bytes)).c_str(), (unsigned long long)t.missing,
        HumanBytes(static_cast<double>(t.missing_bytes)).c_str(),
        t.missing_unsized ? fmt::format(" + {} of unknown size", t.missing_unsized).c_str() : "",
        t.unlisted
            ? fmt::format("; unknown below {} directories without a listing", t.unlisted).c_str()
            : "",
        (unsigned long long)t.local_only);
    if (tty) {
      int filled = static_cast<int>(share / 100.0 * 40.0 + 0.5);
      std::printf("  [%s%s] %.1f%%\n", std::string(static_cast<std::size_t>(filled), '#').c_str(),
                  std::string(static_cast<std::size_t>(40 - filled), '.').c_str(), share);
    }
    std::string eta = "unknown";
    if (t.missing == 0) {
      eta = "done";
    } else if (t.missing_unsized == 0 && rate > 0) {
      eta = HumanDuration(static_cast<uint64_t>(static_cast<double>(t.missing_bytes) / rate));
    } else if (file_rate > 0) {
      eta = HumanDuration(static_cast<uint64_t>(static_cast<double>(t.missing) / file_rate));
    }
    std::printf("  fetched %s files (%s) in the last minute; ETA %s\n", files_min.c_str(),
                HumanBytes(std::strtod(bytes_min.c_str(), nullptr)).c_str(), eta.c_str());
    if (t.errors) rc = 1;
  }
  return rc;
}

}  // namespace originfs
