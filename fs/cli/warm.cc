// originfs warm: fetches keys through a mount, from a key list or (with
// --recursive) every file below directories of the mount, N at a time, with
// a progress line and a summary.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <functional>
#include <iostream>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/fmt/fmt.h>

#include "core/vfs/control_protocol.h"
#include "fs/cli/cli_support.h"
#include "fs/cli/commands.h"

namespace originfs {
namespace {

using control::Attr;

struct WarmTotals {
  std::atomic<uint64_t> done{0}, fetched{0}, present{0}, not_found{0}, failed{0}, bytes{0};
  std::atomic<uint64_t> queued{0};      // keys read from the list or the listings so far
  std::atomic<bool> all_queued{false};  // the list or the walk has ended
};

// Keys flow from the reader (a key list or a tree walk) to the fetching
// threads through a bounded queue, so warm's memory does not grow with the
// number of keys: a list of ten million keys is read as it is fetched.
class KeyQueue {
 public:
  explicit KeyQueue(std::size_t capacity) : capacity_(capacity) {}
  void Push(std::string key) {
    std::unique_lock lock(mu_);
    not_full_.wait(lock, [&] { return q_.size() < capacity_; });
    q_.push_back(std::move(key));
    not_empty_.notify_one();
  }
  void Close() {
    std::lock_guard lock(mu_);
    closed_ = true;
    not_empty_.notify_all();
  }
  // The next key, or nullopt once closed and drained.
  std::optional<std::string> Pop() {
    std::unique_lock lock(mu_);
    not_empty_.wait(lock, [&] { return !q_.empty() || closed_; });
    if (q_.empty()) return std::nullopt;
    std::string k = std::move(q_.front());
    q_.pop_front();
    not_full_.notify_one();
    return k;
  }

 private:
  std::mutex mu_;
  std::condition_variable not_full_, not_empty_;
  std::deque<std::string> q_;
  const std::size_t capacity_;
  bool closed_ = false;
};
using KeySink = std::function<void(std::string)>;

enum class WarmResult { kFetched, kPresent, kNotFound, kFailed };

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
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
    // The last byte is served before the file lands; fsync waits until it
    // has landed durably (or says why it did not), so a key is counted only
    // once a power cut can no longer take it back.
    if (fsync(fd) != 0) {
      *why = fmt::format("landing: {}", std::strerror(errno));
      close(fd);
      return WarmResult::kFailed;
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
void CollectTree(const std::string& mnt, const std::string& dir, const KeySink& keys,
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
      unsigned char type = EntryType(dp, e);
      if (type == DT_DIR)
        pending.push_back(std::move(key));
      else if (type == DT_REG)
        keys(std::move(key));
    }
    closedir(dp);
  }
}

// Exit codes: 0 every key is in the bucket (fetched or already present) or
// was missed but is there by the end; 1 bad usage (or not a mount);
// kWarmNotFound if a key was not found at any origin, kWarmFailed if one
// failed (EIO, ...): both bits when both happened.
constexpr int kWarmNotFound = 2;
constexpr int kWarmFailed = 4;

struct WarmArgs {
  std::string mnt;
  std::string keys_file;          // "" or "-": stdin
  std::vector<std::string> dirs;  // --recursive
  bool recursive = false;
  int jobs = 8;
};

std::optional<WarmArgs> ParseWarmArgs(int argc, char** argv) {
  WarmArgs w;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--recursive" || a == "-r") {
      w.recursive = true;
    } else if (w.recursive && !w.mnt.empty()) {
      w.dirs.push_back(a);
    } else if ((a == "-j" || a == "--jobs") && i + 1 < argc) {
      w.jobs = std::atoi(argv[++i]);
    } else if (a.starts_with("-j") && a.size() > 2) {
      w.jobs = std::atoi(a.c_str() + 2);
    } else if (w.mnt.empty()) {
      w.mnt = a;
    } else if (w.keys_file.empty()) {
      w.keys_file = a;
    } else {
      return std::nullopt;
    }
  }
  if (w.mnt.empty() || w.jobs < 1 || w.jobs > 1024) return std::nullopt;
  if (w.recursive) {
    if (!w.keys_file.empty()) w.dirs.insert(w.dirs.begin(), w.keys_file);
    if (w.dirs.empty()) w.dirs.push_back(".");
  }
  return w;
}

// --recursive: every file below the directories, as keys; directories that
// cannot be listed in list_errors. False for a directory outside the mount.
std::optional<std::vector<std::string>> TreeRoots(const WarmArgs& w) {
  std::vector<std::string> roots;
  for (std::string d : w.dirs) {
    while (d.starts_with("./")) d.erase(0, 2);
    while (!d.empty() && d.front() == '/') d.erase(0, 1);
    while (!d.empty() && d.back() == '/') d.pop_back();
    if (d == ".") d.clear();
    if (d == ".." || d.starts_with("../") || d.find("/../") != std::string::npos) {
      std::fprintf(stderr, "originfs: %s is not below the mount\n", d.c_str());
      return std::nullopt;
    }
    roots.push_back(std::move(d));
  }
  return roots;
}

void KeysOfTrees(const std::string& mnt, const std::vector<std::string>& roots, const KeySink& keys,
                 std::vector<std::string>* list_errors) {
  for (const auto& d : roots) CollectTree(mnt, d, keys, list_errors);
  for (const auto& e : *list_errors) std::fprintf(stderr, "warm: cannot list %s\n", e.c_str());
}

// The keys of a key list (one per line; blank lines and # comments skipped).
void KeysOfList(std::istream& in, const KeySink& keys) {
  std::string line;
  while (std::getline(in, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    std::size_t start = line.find_first_not_of(" /");
    if (start == std::string::npos || line[start] == '#') continue;
    keys(line.substr(start));
  }
}

// Keys kept for the final check of missed ones; past this many, later
// misses are counted but not checked again (memory stays bounded).
constexpr std::size_t kMaxMissedKept = 100000;

// Fetches the keys the queue yields with jobs threads, printing progress to
// stderr; returns the keys that were not found or failed (at most
// kMaxMissedKept of them; *missed_dropped counts the rest).
std::vector<std::string> WarmKeys(const std::string& mnt, int bucket_fd, KeyQueue& queue, int jobs,
                                  WarmTotals& t, std::chrono::steady_clock::time_point started,
                                  std::size_t* missed_dropped) {
  std::mutex err_mu;
  std::vector<std::string> missed;  // guarded by err_mu
  bool tty = isatty(STDERR_FILENO);
  auto worker = [&] {
    while (auto key = queue.Pop()) {
      std::string why;
      WarmResult r = WarmOne(mnt, bucket_fd, *key, t, &why);
      if (r == WarmResult::kNotFound || r == WarmResult::kFailed) {
        std::lock_guard lock(err_mu);
        if (missed.size() < kMaxMissedKept)
          missed.push_back(*key);
        else
          ++*missed_dropped;
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
          std::fprintf(stderr, "%sfailed: %s: %s\n", tty ? "\r\033[K" : "", key->c_str(),
                       why.c_str());
          break;
        }
      }
      t.done++;
    }
  };
  auto progress = [&] {
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    uint64_t done = t.done.load(), queued = t.queued.load();
    bool all = t.all_queued.load();
    std::string s = fmt::format(
        "{}/{}{} keys ({:.0f}/s)  fetched {}  present {}  not found {}  failed {}  {} ({}/s)", done,
        queued, all ? "" : "+", secs > 0 ? static_cast<double>(done) / secs : 0.0, t.fetched.load(),
        t.present.load(), t.not_found.load(), t.failed.load(),
        HumanBytes(static_cast<double>(t.bytes.load())),
        HumanBytes(secs > 0 ? static_cast<double>(t.bytes.load()) / secs : 0));
    if (tty) {
      int width = 30;
      int filled = queued == 0 ? (all ? width : 0) : static_cast<int>(width * done / queued);
      std::fprintf(stderr, "\r\033[K[%s%s] %s", std::string(filled, '#').c_str(),
                   std::string(width - filled, '.').c_str(), s.c_str());
    } else {
      std::fprintf(stderr, "progress: %s\n", s.c_str());
    }
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < jobs; ++i) threads.emplace_back(worker);
  auto last = std::chrono::steady_clock::now();
  while (!t.all_queued.load() || t.done.load() < t.queued.load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    auto now = std::chrono::steady_clock::now();
    if (tty || now - last >= std::chrono::seconds(5)) {
      progress();
      last = now;
    }
  }
  for (auto& th : threads) th.join();
  if (tty) std::fprintf(stderr, "\r\033[K");
  return missed;
}

}  // namespace

int WarmCommand(int argc, char** argv) {
  auto w = ParseWarmArgs(argc, argv);
  if (!w) {
    std::fprintf(stderr,
                 "usage: originfs warm MOUNTPOINT [-j N] [KEYS_FILE]   (keys from stdin when no "
                 "file or \"-\")\n"
                 "       originfs warm MOUNTPOINT [-j N] --recursive DIR...   (every file below "
                 "each DIR, from the listings; \".\" for all)\n");
    return 1;
  }
  if (!IsOriginfsMount(w->mnt)) {
    std::fprintf(stderr, "originfs: %s is not an originfs mount\n", w->mnt.c_str());
    return 1;
  }
  std::optional<std::vector<std::string>> roots;
  std::ifstream file;
  std::istream* in = &std::cin;
  if (w->recursive) {
    roots = TreeRoots(*w);
    if (!roots) return 1;
  } else if (!w->keys_file.empty() && w->keys_file != "-") {
    file.open(w->keys_file);
    if (!file) {
      std::fprintf(stderr, "originfs: cannot read %s: %s\n", w->keys_file.c_str(),
                   std::strerror(errno));
      return 1;
    }
    in = &file;
  }

  WarmTotals t;
  std::vector<std::string> list_errors;
  KeyQueue queue(static_cast<std::size_t>(w->jobs) * 64);
  std::thread reader([&] {
    KeySink sink = [&](std::string key) {
      t.queued++;
      queue.Push(std::move(key));
    };
    if (roots)
      KeysOfTrees(w->mnt, *roots, sink, &list_errors);
    else
      KeysOfList(*in, sink);
    t.all_queued = true;
    queue.Close();
  });
  const int bucket_fd = OpenBucketOf(w->mnt);
  auto started = std::chrono::steady_clock::now();
  std::size_t missed_dropped = 0;
  std::vector<std::string> missed =
      WarmKeys(w->mnt, bucket_fd, queue, w->jobs, t, started, &missed_dropped);
  reader.join();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::printf(
      "warm: %lu keys in %.1fs (%.0f keys/s): fetched %lu, already present %lu, not found %lu, "
      "failed %lu (%s)\n",
      static_cast<unsigned long>(t.done.load()), secs,
      secs > 0 ? static_cast<double>(t.done.load()) / secs : 0.0,
      static_cast<unsigned long>(t.fetched.load()), static_cast<unsigned long>(t.present.load()),
      static_cast<unsigned long>(t.not_found.load()), static_cast<unsigned long>(t.failed.load()),
      HumanBytes(static_cast<double>(t.bytes.load())).c_str());
  // Keys that were missed but are in the bucket now (put there meanwhile)
  // are no reason to fail.
  std::size_t still_missing = missed_dropped;
  for (const auto& k : missed) still_missing += !InBucket(bucket_fd, k);
  if (bucket_fd >= 0) close(bucket_fd);
  if (!list_errors.empty())
    std::printf("warm: %zu directories could not be listed\n", list_errors.size());
  if (still_missing == 0 && list_errors.empty()) return 0;
  return (t.not_found.load() ? kWarmNotFound : 0) |
         (t.failed.load() || !list_errors.empty() ? kWarmFailed : 0);
}

}  // namespace originfs
