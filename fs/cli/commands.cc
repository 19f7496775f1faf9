#include "fs/cli/commands.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <spdlog/fmt/fmt.h>

#include "core/config/rules.h"
#include "core/vfs/control_protocol.h"

namespace originfs {
namespace {

using control::Attr;
using control::kPrefix;

std::string HumanBytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) {
    b /= 1024;
    ++u;
  }
  return u == 0 ? fmt::format("{:.0f} {}", b, units[u]) : fmt::format("{:.1f} {}", b, units[u]);
}

std::string HumanDuration(uint64_t s) {
  return fmt::format("{}d {:02}:{:02}:{:02}", s / 86400, (s / 3600) % 24, (s / 60) % 60, s % 60);
}

bool GetAttr(const std::string& path, const std::string& name, std::string* value) {
  char buf[4096];
  ssize_t n = getxattr(path.c_str(), name.c_str(), buf, sizeof buf);
  if (n < 0) return false;
  value->assign(buf, static_cast<std::size_t>(n));
  return true;
}

// On the open file, not its path: the inode that is downloading, even when
// the name has since been looked up again.
bool FGetAttr(int fd, const std::string& name, std::string* value) {
  char buf[4096];
  ssize_t n = fgetxattr(fd, name.c_str(), buf, sizeof buf);
  if (n < 0) return false;
  value->assign(buf, static_cast<std::size_t>(n));
  return true;
}

// /proc/self/mountinfo escapes space, tab, newline and backslash as \ooo.
std::string UnescapeMountField(std::string_view f) {
  std::string out;
  for (std::size_t i = 0; i < f.size(); ++i) {
    if (f[i] == '\\' && i + 3 < f.size() && f[i + 1] >= '0' && f[i + 1] <= '7' && f[i + 2] >= '0' &&
        f[i + 2] <= '7' && f[i + 3] >= '0' && f[i + 3] <= '7') {
      out += static_cast<char>((f[i + 1] - '0') * 64 + (f[i + 2] - '0') * 8 + (f[i + 3] - '0'));
      i += 3;
    } else {
      out += f[i];
    }
  }
  return out;
}

bool IsOriginfsMount(const std::string& mnt) {
  std::string v;
  return GetAttr(mnt, Attr(control::kUptime), &v);
}

}  // namespace

// The source (bucket) of an originfs mount at exactly path, if there is one.
std::optional<std::string> OriginfsMountSource(const std::string& path) {
  std::FILE* f = std::fopen("/proc/self/mountinfo", "re");
  if (!f) return std::nullopt;
  std::optional<std::string> found;
  char* line = nullptr;
  std::size_t cap = 0;
  while (getline(&line, &cap, f) > 0) {
    std::string_view l = line;
    if (l.ends_with('\n')) l.remove_suffix(1);
    std::vector<std::string_view> fields;
    for (std::size_t pos = 0; pos <= l.size();) {
      std::size_t sp = l.find(' ', pos);
      if (sp == std::string_view::npos) sp = l.size();
      fields.push_back(l.substr(pos, sp - pos));
      pos = sp + 1;
    }
    // id parent major:minor root MOUNTPOINT options [optional...] - FSTYPE SOURCE super
    auto dash = std::find(fields.begin(), fields.end(), "-");
    if (fields.size() < 5 || dash == fields.end() || fields.end() - dash < 3) continue;
    if (dash[1] != "fuse.originfs" || UnescapeMountField(fields[4]) != path) continue;
    found = UnescapeMountField(dash[2]);
  }
  std::free(line);
  std::fclose(f);
  return found;
}

int CheckCommand(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: originfs check RULES_FILE\n");
    return 1;
  }
  auto rules = RuleSet::Load(argv[2]);
  if (!rules) {
    std::fprintf(stderr, "originfs: %s\n", rules.error().message.c_str());
    return 1;
  }
  std::printf("%s: %zu rule(s), tried in this order:\n%s", argv[2], rules->rules().size(),
              rules->Format().c_str());
  return 0;
}

int ReloadCommand(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: originfs reload MOUNTPOINT\n");
    return 1;
  }
  std::string mnt = argv[2];
  if (!IsOriginfsMount(mnt)) {
    std::fprintf(stderr, "originfs: %s is not an originfs mount\n", mnt.c_str());
    return 1;
  }
  std::string name = Attr(control::kReload);
  int rc = setxattr(mnt.c_str(), name.c_str(), "1", 1, 0);
  std::string outcome;
  GetAttr(mnt, Attr(control::kLastReload), &outcome);
  if (rc != 0) {
    std::fprintf(stderr, "originfs: reload refused, old rules stay: %s\n",
                 outcome.starts_with("error: ") ? outcome.substr(7).c_str() : std::strerror(errno));
    return 1;
  }
  std::string rules;
  GetAttr(mnt, Attr(control::kRules), &rules);
  std::printf("reloaded: %s rule(s) in force\n", rules.c_str());
  return 0;
}

int StatsCommand(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: originfs stats MOUNTPOINT\n");
    return 1;
  }
  std::string mnt = argv[2];
  ssize_t size = listxattr(mnt.c_str(), nullptr, 0);
  if (size < 0 || !IsOriginfsMount(mnt)) {
    std::fprintf(stderr, "originfs: %s is not an originfs mount\n", mnt.c_str());
    return 1;
  }
  std::string names(static_cast<std::size_t>(size), '\0');
  size = listxattr(mnt.c_str(), names.data(), names.size());
  if (size < 0) {
    std::perror("originfs: listxattr");
    return 1;
  }
  names.resize(static_cast<std::size_t>(size));
  std::printf("originfs mount %s\n", mnt.c_str());
  for (std::size_t pos = 0; pos < names.size();) {
    std::string n = names.c_str() + pos;
    pos += n.size() + 1;
    if (!n.starts_with(kPrefix)) continue;
    std::string v;
    if (!GetAttr(mnt, n, &v)) continue;
    std::string shortname = n.substr(kPrefix.size());
    std::string shown = v;
    uint64_t num = std::strtoull(v.c_str(), nullptr, 10);
    if (shortname == "fetched_bytes")
      shown = fmt::format("{} ({})", v, HumanBytes(static_cast<double>(num)));
    if (shortname == "uptime") shown = fmt::format("{} s ({})", v, HumanDuration(num));
    std::printf("  %-14s %s\n", shortname.c_str(), shown.c_str());
  }
  return 0;
}

namespace {

struct WarmTotals {
  std::atomic<uint64_t> done{0}, fetched{0}, present{0}, not_found{0}, failed{0}, bytes{0};
};

enum class WarmResult { kFetched, kPresent, kNotFound, kFailed };

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// The bucket directory behind mnt (from /proc/self/mountinfo), when this
// process can see into it; -1 otherwise.
int OpenBucketOf(const std::string& mnt) {
  char real[PATH_MAX];
  if (!realpath(mnt.c_str(), real)) return -1;
  auto bucket = OriginfsMountSource(real);
  if (!bucket) return -1;
  return open(bucket->c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
}

// True if key is in the bucket itself (never asks the mount, so never the origin).
bool InBucket(int bucket_fd, const std::string& key) {
  if (bucket_fd < 0 || key.empty()) return false;
  for (std::size_t pos = 0; pos <= key.size();) {  // no ".." walks out of it
    std::size_t slash = std::min(key.find('/', pos), key.size());
    if (key.compare(pos, slash - pos, "..") == 0) return false;
    pos = slash + 1;
  }
  struct stat st;
  return fstatat(bucket_fd, key.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
}

// Whether this run fetched key: decided from the bucket itself when it is
// visible (not there before the lookup, a regular file through the mount
// after it), else from the inode's state and landing time. The byte count
// is the file's size, whoever read how much of it: an object that landed
// before we looked was fetched all the same.
WarmResult WarmOne(const std::string& mnt, int bucket_fd, const std::string& key, WarmTotals& t,
                   std::string* why) {
  std::string path = mnt + "/" + key;
  const int64_t started_ns = NowNs();
  if (InBucket(bucket_fd, key)) return WarmResult::kPresent;
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) {
    *why = std::strerror(errno);
    return errno == ENOENT ? WarmResult::kNotFound : WarmResult::kFailed;
  }
  if (!S_ISREG(st.st_mode)) return WarmResult::kPresent;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *why = std::strerror(errno);
    return errno == ENOENT ? WarmResult::kNotFound : WarmResult::kFailed;
  }
  std::string state;
  bool remote = FGetAttr(fd, Attr(control::kState), &state) && state == control::kStateRemote;
  if (remote) {
    // Reading pulls the whole object through the mount (and verifies it arrived).
    static thread_local std::vector<char> buf(1 << 20);
    for (;;) {
      ssize_t n = read(fd, buf.data(), buf.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        *why = std::strerror(errno);
        close(fd);
        return WarmResult::kFailed;
      }
      if (n == 0) break;
    }
  }
  bool fetched = remote || bucket_fd >= 0;
  // A small object may land before we look: landed after our lstat began counts as ours.
  std::string landed;
  if (!fetched && FGetAttr(fd, Attr(control::kLandedNs), &landed) &&
      std::strtoll(landed.c_str(), nullptr, 10) >= started_ns)
    fetched = true;
  if (fetched && fstat(fd, &st) == 0) t.bytes += static_cast<uint64_t>(st.st_size);
  close(fd);
  return fetched ? WarmResult::kFetched : WarmResult::kPresent;
}

// warm --recursive: the files below dir (a key, "" for the root), read from
// the mount's listings (the bucket's names and, under a rule with listings,
// the origin's: one request per directory). Directories that cannot be
// listed are reported in errors.
void CollectTree(const std::string& mnt, const std::string& dir, std::vector<std::string>* keys,
                 std::vector<std::string>* errors) {
  std::vector<std::string> pending = {dir};
  while (!pending.empty()) {
    std::string d = std::move(pending.back());
    pending.pop_back();
    std::string path = d.empty() ? mnt : mnt + "/" + d;
    DIR* dp = opendir(path.c_str());
    if (!dp) {
      errors->push_back(fmt::format("{}: {}", d.empty() ? "." : d, std::strerror(errno)));
      continue;
    }
    for (;;) {
      errno = 0;
      dirent* e = readdir(dp);
      if (!e) {
        if (errno)
          errors->push_back(fmt::format("{}: {}", d.empty() ? "." : d, std::strerror(errno)));
        break;
      }
      std::string_view name = e->d_name;
      if (name == "." || name == "..") continue;
      std::string key = d.empty() ? std::string(name) : d + "/" + std::string(name);
      unsigned char type = e->d_type;
      if (type == DT_UNKNOWN) {
        struct stat st;
        if (fstatat(dirfd(dp), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
        type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : DT_UNKNOWN;
      }
      if (type == DT_DIR)
        pending.push_back(std::move(key));
      else if (type == DT_REG)
        keys->push_back(std::move(key));
    }
    closedir(dp);
  }
}

}  // namespace

// Exit codes: 0 every key is in the bucket (fetched or already present) or
// was missed but is there by the end; 1 bad usage (or not a mount);
// kWarmNotFound if a key was not found at any origin, kWarmFailed if one
// failed (EIO, ...): both bits when both happened.
constexpr int kWarmNotFound = 2;
constexpr int kWarmFailed = 4;

int WarmCommand(int argc, char** argv) {
  std::string mnt, keys_file;
  std::vector<std::string> dirs;  // --recursive
  bool recursive = false;
  int jobs = 8;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--recursive" || a == "-r") {
      recursive = true;
    } else if (recursive && !mnt.empty()) {
      dirs.push_back(a);
    } else if ((a == "-j" || a == "--jobs") && i + 1 < argc) {
      jobs = std::atoi(argv[++i]);
    } else if (a.starts_with("-j") && a.size() > 2) {
      jobs = std::atoi(a.c_str() + 2);
    } else if (mnt.empty()) {
      mnt = a;
    } else if (keys_file.empty()) {
      keys_file = a;
    } else {
      mnt.clear();
      break;
    }
  }
  if (mnt.empty() || jobs < 1 || jobs > 1024) {
    std::fprintf(stderr,
                 "usage: originfs warm MOUNTPOINT [-j N] [KEYS_FILE]   (keys from stdin when no "
                 "file or \"-\")\n"
                 "       originfs warm MOUNTPOINT [-j N] --recursive DIR...   (every file below "
                 "each DIR, from the listings; \".\" for all)\n");
    return 1;
  }
  if (!IsOriginfsMount(mnt)) {
    std::fprintf(stderr, "originfs: %s is not an originfs mount\n", mnt.c_str());
    return 1;
  }
  std::vector<std::string> keys;
  std::vector<std::string> list_errors;
  if (recursive) {
    if (!keys_file.empty()) dirs.insert(dirs.begin(), keys_file);
    if (dirs.empty()) dirs.push_back(".");
    for (std::string d : dirs) {
      while (d.starts_with("./")) d.erase(0, 2);
      while (!d.empty() && d.front() == '/') d.erase(0, 1);
      while (!d.empty() && d.back() == '/') d.pop_back();
      if (d == ".") d.clear();
      if (d == ".." || d.starts_with("../") || d.find("/../") != std::string::npos) {
        std::fprintf(stderr, "originfs: %s is not below the mount\n", d.c_str());
        return 1;
      }
      CollectTree(mnt, d, &keys, &list_errors);
    }
    for (const auto& e : list_errors) std::fprintf(stderr, "warm: cannot list %s\n", e.c_str());
  }
  if (!recursive) {
    std::ifstream file;
    std::istream* in = &std::cin;
    if (!keys_file.empty() && keys_file != "-") {
      file.open(keys_file);
      if (!file) {
        std::fprintf(stderr, "originfs: cannot read %s: %s\n", keys_file.c_str(),
                     std::strerror(errno));
        return 1;
      }
      in = &file;
    }
    std::string line;
    while (std::getline(*in, line)) {
      while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
      std::size_t start = line.find_first_not_of(" /");
      if (start == std::string::npos || line[start] == '#') continue;
      keys.push_back(line.substr(start));
    }
  }

  WarmTotals t;
  std::atomic<std::size_t> next{0};
  std::mutex err_mu;
  std::vector<std::string> missed;  // not found or failed; guarded by err_mu
  const int bucket_fd = OpenBucketOf(mnt);
  bool tty = isatty(STDERR_FILENO);
  auto started = std::chrono::steady_clock::now();
  auto worker = [&] {
    for (;;) {
      std::size_t i = next.fetch_add(1);
      if (i >= keys.size()) return;
      std::string why;
      WarmResult r = WarmOne(mnt, bucket_fd, keys[i], t, &why);
      if (r == WarmResult::kNotFound || r == WarmResult::kFailed) {
        std::lock_guard lock(err_mu);
        missed.push_back(keys[i]);
      }
      switch (r) {
        case WarmResult::kFetched:
          t.fetched++;
          break;
        case WarmResult::kPresent:
          t.present++;
          break;
        case WarmResult::kNotFound:
          t.not_found++;
          break;
        case WarmResult::kFailed: {
          t.failed++;
          std::lock_guard lock(err_mu);
          std::fprintf(stderr, "%sfailed: %s: %s\n", tty ? "\r\033[K" : "", keys[i].c_str(),
                       why.c_str());
          break;
        }
      }
      t.done++;
    }
  };
  auto line = [&](bool final) {
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    std::string s = fmt::format(
        "{}/{} keys  fetched {}  present {}  not found {}  failed {}  {} ({}/s)", t.done.load(),
        keys.size(), t.fetched.load(), t.present.load(), t.not_found.load(), t.failed.load(),
        HumanBytes(static_cast<double>(t.bytes.load())),
        HumanBytes(secs > 0 ? static_cast<double>(t.bytes.load()) / secs : 0));
    if (tty && !final) {
      int width = 30;
      int filled = keys.empty() ? width : static_cast<int>(width * t.done.load() / keys.size());
      std::fprintf(stderr, "\r\033[K[%s%s] %s", std::string(filled, '#').c_str(),
                   std::string(width - filled, '.').c_str(), s.c_str());
    } else if (!final) {
      std::fprintf(stderr, "progress: %s\n", s.c_str());
    }
    return s;
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < jobs; ++i) threads.emplace_back(worker);
  auto last = std::chrono::steady_clock::now();
  while (t.done.load() < keys.size()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    auto now = std::chrono::steady_clock::now();
    if (tty || now - last >= std::chrono::seconds(5)) {
      line(false);
      last = now;
    }
  }
  for (auto& th : threads) th.join();
  if (tty) std::fprintf(stderr, "\r\033[K");
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::printf(
      "warm: %zu keys in %.1fs: fetched %lu, already present %lu, not found %lu, failed %lu (%s)\n",
      keys.size(), secs, static_cast<unsigned long>(t.fetched.load()),
      static_cast<unsigned long>(t.present.load()), static_cast<unsigned long>(t.not_found.load()),
      static_cast<unsigned long>(t.failed.load()),
      HumanBytes(static_cast<double>(t.bytes.load())).c_str());
  // Keys that were missed but are in the bucket now (put there meanwhile)
  // are no reason to fail.
  std::size_t still_missing = 0;
  for (const auto& k : missed) still_missing += !InBucket(bucket_fd, k);
  if (bucket_fd >= 0) close(bucket_fd);
  if (!list_errors.empty())
    std::printf("warm: %zu directories could not be listed\n", list_errors.size());
  if (still_missing == 0 && list_errors.empty()) return 0;
  return (t.not_found.load() ? kWarmNotFound : 0) |
         (t.failed.load() || !list_errors.empty() ? kWarmFailed : 0);
}

// Exit codes: 0 every key refreshed (updated, unchanged or gone at the
// origin), 1 a key failed (or bad usage), 2 no key failed but some were kept
// because they changed locally (or are local files): --force replaces them.
int RefreshCommand(int argc, char** argv) {
  bool force = false;
  int first = 2;
  for (; first < argc; ++first) {
    std::string a = argv[first];
    if (a == "--force") {
      force = true;
    } else if (a == "--") {
      ++first;
      break;
    } else {
      break;
    }
  }
  if (argc - first < 2 || std::string_view(argv[first]).starts_with("-")) {
    std::fprintf(stderr, "usage: originfs refresh [--force] MOUNTPOINT KEY...\n");
    return 1;
  }
  std::string mnt = argv[first];
  if (!IsOriginfsMount(mnt)) {
    std::fprintf(stderr, "originfs: %s is not an originfs mount\n", mnt.c_str());
    return 1;
  }
  int failed = 0, kept = 0;
  std::string name = Attr(control::kRefresh);
  std::string value = force ? std::string(control::kRefreshForce) : "1";
  for (int i = first + 1; i < argc; ++i) {
    std::string key = argv[i];
    while (key.starts_with('/')) key.erase(0, 1);
    std::string path = mnt + "/" + key;
    int rc = setxattr(path.c_str(), name.c_str(), value.data(), value.size(), 0);
    int err = errno;
    std::string outcome;
    GetAttr(path, Attr(control::kRefreshResult), &outcome);
    if (rc != 0 && err == EBUSY && outcome.ends_with(", kept")) {
      ++kept;  // replacing it would lose a local change
      std::printf("%s: %s\n", key.c_str(), outcome.c_str());
    } else if (rc != 0) {
      ++failed;
      std::printf("%s: failed: %s\n", key.c_str(),
                  outcome.starts_with("error: ") ? outcome.substr(7).c_str() : std::strerror(err));
    } else {
      std::printf("%s: %s\n", key.c_str(), outcome.empty() ? "refreshed" : outcome.c_str());
    }
  }
  if (kept && !force)
    std::fprintf(stderr, "originfs: %d key%s kept; `originfs refresh --force` replaces them\n",
                 kept, kept == 1 ? "" : "s");
  return failed ? 1 : kept ? 2 : 0;
}

}  // namespace originfs
