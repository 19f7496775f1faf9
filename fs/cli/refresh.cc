// originfs refresh: keys by name (a conditional GET each, replaced when the
// origin's copy changed), directories (their listing read again), and with
// --recursive every landed file below directories (revalidation).
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <spdlog/fmt/fmt.h>

#include "core/vfs/control_protocol.h"
#include "fs/cli/cli_support.h"
#include "fs/cli/commands.h"

namespace originfs {

using control::Attr;

namespace {

enum class Said { kDone, kLocal, kKept, kFailed };

// One key through the mount: the refresh attribute set with value, and what
// the daemon said of it (printed as "KEY: outcome").
Said RefreshOne(const std::string& mnt, std::string key, std::string_view value,
                std::string* line) {
  while (key.starts_with('/')) key.erase(0, 1);
  std::string path = mnt + "/" + key;
  int rc = setxattr(path.c_str(), Attr(control::kRefresh).c_str(), value.data(), value.size(), 0);
  int err = errno;
  std::string outcome;
  GetAttr(path, Attr(control::kRefreshResult), &outcome);
  if (rc != 0 && err == EBUSY && outcome.ends_with(", kept")) {
    *line = fmt::format("{}: {}", key, outcome);  // replacing it would lose a local change
    return Said::kKept;
  }
  if (rc != 0) {
    *line = fmt::format("{}: failed: {}", key,
                        outcome.starts_with("error: ") ? outcome.substr(7) : std::strerror(err));
    return Said::kFailed;
  }
  *line = fmt::format("{}: {}", key, outcome.empty() ? "refreshed" : outcome);
  return outcome.starts_with("local file") ? Said::kLocal : Said::kDone;
}

// The regular files below dir (a key) in the bucket itself: landed or local,
// never an origin-only name (walking the mount would download those).
// Whiteouts, symlinks and the state directory are left out.
bool BucketFiles(int bucket_fd, const std::string& dir, std::vector<std::string>* keys,
                 std::string* error) {
  std::vector<std::string> pending = {dir};
  while (!pending.empty()) {
    std::string d = std::move(pending.back());
    pending.pop_back();
    int fd = openat(bucket_fd, d.empty() ? "." : d.c_str(),
                    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR* dp = fd >= 0 ? fdopendir(fd) : nullptr;
    if (!dp) {
      if (fd >= 0) close(fd);
      if (d != dir && errno == ENOENT) continue;  // removed meanwhile
      *error = fmt::format("{}: {}", d.empty() ? "." : d, std::strerror(errno));
      return false;
    }
    for (;;) {
      errno = 0;
      dirent* e = readdir(dp);
      if (!e) {
        if (errno == 0) break;
        *error = fmt::format("{}: {}", d.empty() ? "." : d, std::strerror(errno));
        closedir(dp);
        return false;
      }
      std::string_view name = e->d_name;
      if (name == "." || name == ".." || (d.empty() && name == ".originfs")) continue;
      std::string key = d.empty() ? std::string(name) : d + "/" + std::string(name);
      unsigned char type = EntryType(dp, e);
      if (type == DT_DIR) pending.push_back(std::move(key));
      if (type == DT_REG) keys->push_back(std::move(key));
    }
    closedir(dp);
  }
  return true;
}

int RefreshRecursive(const std::string& mnt, const std::vector<std::string>& dirs, int jobs) {
  int bucket_fd = OpenBucketOf(mnt);
  if (bucket_fd < 0) {
    std::fprintf(stderr,
                 "originfs: cannot see the bucket of %s (refresh --recursive walks it: run as "
                 "root or as the bucket's owner)\n",
                 mnt.c_str());
    return 1;
  }
  std::vector<std::string> keys;
  int failed = 0;
  for (std::string d : dirs) {
    while (d.starts_with("./")) d.erase(0, 2);
    while (d.starts_with('/')) d.erase(0, 1);
    while (d.ends_with('/')) d.pop_back();
    if (d == ".") d.clear();
    if (d == ".." || d.starts_with("../") || d.find("/../") != std::string::npos) {
      std::fprintf(stderr, "originfs: %s is not below the mount\n", d.c_str());
      close(bucket_fd);
      return 1;
    }
    std::string error;
    if (!BucketFiles(bucket_fd, d, &keys, &error)) {
      std::fprintf(stderr, "refresh: cannot walk %s\n", error.c_str());
      ++failed;
    }
  }
  close(bucket_fd);
  std::atomic<std::size_t> next{0};
  std::atomic<uint64_t> counts[4] = {};
  std::mutex out_mu;
  bool tty = isatty(STDERR_FILENO);
  auto started = std::chrono::steady_clock::now();
  auto worker = [&] {
    for (std::size_t i; (i = next++) < keys.size();) {
      std::string line;
      Said s = RefreshOne(mnt, keys[i], control::kRefreshRevalidate, &line);
      uint64_t done = ++counts[static_cast<int>(s)];
      std::lock_guard lock(out_mu);
      // Every change and failure is printed; unchanged and local files only counted.
      if (line.ends_with(": updated") || s == Said::kKept || s == Said::kFailed ||
          line.ends_with("(local copy kept)"))
        std::printf("%s\n", line.c_str());
      (void)done;
      if (tty) {
        uint64_t n = counts[0] + counts[1] + counts[2] + counts[3];
        std::fprintf(stderr, "\rrefresh: %llu/%zu checked", static_cast<unsigned long long>(n),
                     keys.size());
      }
    }
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < std::max(1, jobs); ++i) threads.emplace_back(worker);
  for (auto& t : threads) t.join();
  if (tty) std::fprintf(stderr, "\n");
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::printf(
      "refresh: %zu files in %.1f s: %llu checked with the origin, %llu local (never fetched), "
      "%llu kept (changed locally), %llu failed\n",
      keys.size(), secs, static_cast<unsigned long long>(counts[0].load()),
      static_cast<unsigned long long>(counts[1].load()),
      static_cast<unsigned long long>(counts[2].load()),
      static_cast<unsigned long long>(counts[3].load()));
  failed += static_cast<int>(counts[3]);
  return failed ? 1 : counts[2] ? 2 : 0;
}

}  // namespace

// Exit codes: 0 every key refreshed (updated, unchanged or gone at the
// origin), 1 a key failed (or bad usage), 2 no key failed but some were kept
// because they changed locally (or are local files): --force replaces them.
int RefreshCommand(int argc, char** argv) {
  bool force = false, recursive = false;
  int jobs = 8;
  int first = 2;
  for (; first < argc; ++first) {
    std::string a = argv[first];
    if (a == "--force") {
      force = true;
    } else if (a == "--recursive" || a == "-r") {
      recursive = true;
    } else if ((a == "-j" || a == "--jobs") && first + 1 < argc) {
      jobs = std::atoi(argv[++first]);
    } else if (a == "--") {
      ++first;
      break;
    } else {
      break;
    }
  }
  if (argc - first < 2 || std::string_view(argv[first]).starts_with("-") || jobs < 1 ||
      (force && recursive)) {
    std::fprintf(stderr,
                 "usage: originfs refresh [--force] MOUNTPOINT KEY...\n"
                 "       originfs refresh --recursive [-j N] MOUNTPOINT DIR...\n%s",
                 force && recursive ? "(--force replaces local changes: only by name)\n" : "");
    return 1;
  }
  std::string mnt = argv[first];
  if (!IsOriginfsMount(mnt)) {
    std::fprintf(stderr, "originfs: %s is not an originfs mount\n", mnt.c_str());
    return 1;
  }
  if (recursive) return RefreshRecursive(mnt, {argv + first + 1, argv + argc}, jobs);
  int failed = 0, kept = 0;
  std::string value = force ? std::string(control::kRefreshForce) : "1";
  for (int i = first + 1; i < argc; ++i) {
    std::string line;
    Said s = RefreshOne(mnt, argv[i], value, &line);
    std::printf("%s\n", line.c_str());
    kept += s == Said::kKept;
    failed += s == Said::kFailed;
  }
  if (kept && !force)
    std::fprintf(stderr, "originfs: %d key%s kept; `originfs refresh --force` replaces them\n",
                 kept, kept == 1 ? "" : "s");
  return failed ? 1 : kept ? 2 : 0;
}

}  // namespace originfs
