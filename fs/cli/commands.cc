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
#include "fs/cli/cli_support.h"

namespace originfs {

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

// Values are read whole, up to the kernel's limit (64 KiB), in one call: a
// second call could see another value (a listing asked anew).
bool GetAttr(const std::string& path, const std::string& name, std::string* value) {
  thread_local std::vector<char> buffer(65536);
  char* buf = buffer.data();
  ssize_t n = getxattr(path.c_str(), name.c_str(), buf, buffer.size());
  if (n < 0) return false;
  value->assign(buf, static_cast<std::size_t>(n));
  return true;
}

// On the open file, not its path: the inode that is downloading, even when
// the name has since been looked up again.
bool FGetAttr(int fd, const std::string& name, std::string* value) {
  thread_local std::vector<char> buffer(65536);
  char* buf = buffer.data();
  ssize_t n = fgetxattr(fd, name.c_str(), buf, buffer.size());
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

// The source (bucket) of an originfs mount at exactly path, if there is one.
unsigned char EntryType(DIR* dir, const dirent* e) {
  if (e->d_type != DT_UNKNOWN) return e->d_type;
  struct stat st;
  if (fstatat(dirfd(dir), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) return DT_UNKNOWN;
  return S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : DT_UNKNOWN;
}

int OpenBucketOf(const std::string& mnt) {
  char real[PATH_MAX];
  if (!realpath(mnt.c_str(), real)) return -1;
  auto bucket = OriginfsMountSource(real);
  if (!bucket) return -1;
  return open(bucket->c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
}

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
  if (argc < 3) {
    std::fprintf(stderr, "usage: originfs stats MOUNTPOINT [DIR...]\n");
    return 1;
  }
  std::string mnt = argv[2];
  if (argc > 3) {
    if (!IsOriginfsMount(mnt)) {
      std::fprintf(stderr, "originfs: %s is not an originfs mount\n", mnt.c_str());
      return 1;
    }
    return StatsTreesCommand(mnt, argv + 3, argv + argc);
  }
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
    if (shortname.ends_with("_bytes"))
      shown = fmt::format("{} ({})", v, HumanBytes(static_cast<double>(num)));
    if (shortname == "uptime") shown = fmt::format("{} s ({})", v, HumanDuration(num));
    if (shortname == "inode_bytes_each") shown = v + " B";
    std::printf("  %-18s %s\n", shortname.c_str(), shown.c_str());
  }
  std::string origins;
  if (GetAttr(mnt, Attr(control::kOrigins), &origins) && !origins.empty())
    std::printf("origins that have been unreachable:\n%s", origins.c_str());
  std::string rules;
  if (GetAttr(mnt, Attr(control::kRuleStats), &rules) && !rules.empty())
    std::printf("by rule:\n%s", rules.c_str());
  return 0;
}

// Undoes removals of origin names: the whiteout goes (or a directory made in
// its place is no longer opaque) and the origin's copy is shown again.
// Exit codes: 0 every key restored, 1 a key failed (or bad usage).
int RestoreCommand(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: originfs restore MOUNTPOINT KEY...\n");
    return 1;
  }
  std::string mnt = argv[2];
  if (!IsOriginfsMount(mnt)) {
    std::fprintf(stderr, "originfs: %s is not an originfs mount\n", mnt.c_str());
    return 1;
  }
  int failed = 0;
  std::string name = Attr(control::kRestore);
  for (int i = 3; i < argc; ++i) {
    std::string key = argv[i];
    while (key.starts_with('/')) key.erase(0, 1);
    while (key.ends_with('/')) key.pop_back();
    std::size_t slash = key.rfind('/');
    std::string dir = mnt + (slash == std::string::npos ? "" : "/" + key.substr(0, slash));
    std::string base = slash == std::string::npos ? key : key.substr(slash + 1);
    if (base.empty() || setxattr(dir.c_str(), name.c_str(), base.data(), base.size(), 0) != 0) {
      ++failed;
      std::printf("%s: failed: %s\n", key.c_str(),
                  base.empty()      ? "no name"
                  : errno == ENOENT ? "not removed"
                                    : std::strerror(errno));
    } else {
      std::printf("%s: restored\n", key.c_str());
    }
  }
  return failed ? 1 : 0;
}

}  // namespace originfs
