#include "tests/differential/ops.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <sstream>

namespace originfs::difffuzz {
namespace {

constexpr std::array<const char*, static_cast<int>(Kind::kCount)> kNames = {
    "create",   "pwrite",     "append",   "read",      "pread",      "truncate", "rename",
    "unlink",   "link",       "symlink",  "readlink",  "mkdir",      "rmdir",    "readdir",
    "stat",     "copy_range", "sendfile", "mmap_read", "mmap_write", "fsync",    "setxattr",
    "getxattr", "chmod",      "refresh",  "remount"};

// Closes a descriptor at scope end.
struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

Outcome Err() { return Outcome{errno, ""}; }

// Writes all of data at off (or at the end with O_APPEND when off < 0).
Outcome WriteAll(int fd, const std::string& data, long long off) {
  std::size_t done = 0;
  while (done < data.size()) {
    ssize_t n = off < 0 ? write(fd, data.data() + done, data.size() - done)
                        : pwrite(fd, data.data() + done, data.size() - done,
                                 static_cast<off_t>(off + static_cast<long long>(done)));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Err();
    }
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
  }
  return Outcome{0, "wrote " + std::to_string(done)};
}

Outcome ReadToEnd(int fd) {
  std::string out;
  char buf[128 * 1024];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Err();
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return Outcome{0, std::move(out)};
}

char TypeChar(mode_t m) { return S_ISREG(m) ? 'f' : S_ISDIR(m) ? 'd' : S_ISLNK(m) ? 'l' : '?'; }

Outcome Readdir(const std::string& path) {
  DIR* d = opendir(path.c_str());
  if (!d) return Err();
  std::vector<std::string> names;
  errno = 0;
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n == "." || n == "..") continue;
    char t = e->d_type == DT_REG   ? 'f'
             : e->d_type == DT_DIR ? 'd'
             : e->d_type == DT_LNK ? 'l'
                                   : '?';
    // DT_UNKNOWN says "ask stat", as programs then do.
    struct stat st;
    if (e->d_type == DT_UNKNOWN && fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0)
      t = TypeChar(st.st_mode);
    names.push_back(n + ":" + t);
  }
  int err = errno;
  closedir(d);
  if (err) return Outcome{err, ""};
  std::sort(names.begin(), names.end());
  std::string v;
  for (const auto& n : names) v += n + " ";
  return Outcome{0, v};
}

Outcome Stat(const std::string& path) {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) return Err();
  std::string v(1, TypeChar(st.st_mode));
  if (!S_ISDIR(st.st_mode)) v += " size=" + std::to_string(st.st_size);
  char mode[16];
  snprintf(mode, sizeof mode, " mode=%04o", static_cast<unsigned>(st.st_mode & 07777));
  v += mode;
  if (S_ISREG(st.st_mode)) v += " links=" + std::to_string(st.st_nlink);
  return Outcome{0, v};
}

Outcome Xattrs(const std::string& path) {
  char value[4096];
  ssize_t n = getxattr(path.c_str(), "user.fz", value, sizeof value);
  std::string v = n >= 0 ? "user.fz=" + std::string(value, static_cast<std::size_t>(n))
                         : "user.fz:" + std::to_string(errno);
  if (n < 0 && errno != ENODATA) return Err();
  char list[4096];
  ssize_t l = listxattr(path.c_str(), list, sizeof list);
  if (l < 0) return Err();
  std::vector<std::string> names;
  for (ssize_t i = 0; i < l;) {
    std::string name(list + i);
    i += static_cast<ssize_t>(name.size()) + 1;
    if (name.starts_with("user.") && !name.starts_with("user.originfs.")) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  for (const auto& name : names) v += " " + name;
  return Outcome{0, v};
}

// A mapping whose file cannot be read (a download that broke off while the
// origin misbehaves) faults with SIGBUS: that is the mapping's EIO, not a
// crash of the worker.
// volatile: the stores around the copy must stay (without it the compiler may
// drop the first as dead, and a SIGBUS then killed the worker: CI, seed 1).
thread_local sigjmp_buf* volatile t_bus_jump = nullptr;

void OnBus(int) {
  if (t_bus_jump) siglongjmp(*t_bus_jump, 1);
  signal(SIGBUS, SIG_DFL);
  raise(SIGBUS);
}

// Copies n bytes from or to a mapping; false if that faulted with SIGBUS.
bool GuardedCopy(void* to, const void* from, std::size_t n) {
  static const bool installed = [] {
    struct sigaction sa {};
    sa.sa_handler = OnBus;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_NODEFER;
    return sigaction(SIGBUS, &sa, nullptr) == 0;
  }();
  (void)installed;
  sigjmp_buf jump;
  if (sigsetjmp(jump, 1) != 0) {
    t_bus_jump = nullptr;
    return false;
  }
  t_bus_jump = &jump;
  std::memcpy(to, from, n);
  t_bus_jump = nullptr;
  return true;
}

Outcome Map(const std::string& path, const Op& op, bool write) {
  Fd fd(open(path.c_str(), write ? O_RDWR : O_RDONLY));
  if (fd.fd < 0) return Err();
  struct stat st {};
  if (fstat(fd.fd, &st) != 0) return Err();
  if (!S_ISREG(st.st_mode)) return Outcome{0, "not a file"};
  if (st.st_size == 0) return Outcome{0, "empty"};
  std::size_t size = static_cast<std::size_t>(st.st_size);
  void* p = mmap(nullptr, size, write ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd.fd, 0);
  if (p == MAP_FAILED) return Err();
  Outcome o;
  if (write) {
    std::size_t at = op.off % size;
    std::string data = Bytes(std::min<std::size_t>(op.len % 8192, size - at), op.seed);
    if (!GuardedCopy(static_cast<char*>(p) + at, data.data(), data.size())) {
      munmap(p, size);
      return Outcome{EIO, "SIGBUS"};
    }
    if (msync(p, size, MS_SYNC) != 0) o.err = errno;
    o.value = "mapped " + std::to_string(data.size());
  } else {
    o.value.resize(size);
    if (!GuardedCopy(o.value.data(), p, size)) {
      munmap(p, size);
      return Outcome{EIO, "SIGBUS"};
    }
  }
  munmap(p, size);
  return o;
}

Outcome Copy(const std::string& from, const std::string& to, const Op& op, bool sendfile_copy) {
  Fd in(open(from.c_str(), O_RDONLY));
  if (in.fd < 0) return Err();
  Fd out(open(to.c_str(), O_WRONLY | O_CREAT | (sendfile_copy ? O_TRUNC : 0), 0644));
  if (out.fd < 0) return Err();
  std::size_t total = 0;
  loff_t off_in = 0, off_out = static_cast<loff_t>(op.off);
  while (total < op.len) {
    ssize_t n = sendfile_copy
                    ? sendfile(out.fd, in.fd, nullptr, op.len - total)
                    : copy_file_range(in.fd, &off_in, out.fd, &off_out, op.len - total, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Err();
    }
    if (n == 0) break;
    total += static_cast<std::size_t>(n);
  }
  return Outcome{0, "copied " + std::to_string(total)};
}

}  // namespace

const char* KindName(Kind k) { return kNames[static_cast<int>(k)]; }

std::optional<Kind> KindFromName(const std::string& name) {
  for (int i = 0; i < static_cast<int>(Kind::kCount); ++i)
    if (name == kNames[i]) return static_cast<Kind>(i);
  return std::nullopt;
}

std::string Serialize(const Op& op) {
  return std::string(KindName(op.kind)) + "\t" + op.a + "\t" + op.b + "\t" +
         std::to_string(op.off) + "\t" + std::to_string(op.len) + "\t" + std::to_string(op.flags) +
         "\t" + std::to_string(op.seed);
}

std::optional<Op> Parse(const std::string& line) {
  std::vector<std::string> f;
  std::stringstream ss(line);
  for (std::string part; std::getline(ss, part, '\t');) f.push_back(part);
  if (f.size() == 6) f.insert(f.begin() + 2, "");  // getline drops nothing, but be lenient
  if (f.size() != 7) return std::nullopt;
  auto kind = KindFromName(f[0]);
  if (!kind) return std::nullopt;
  Op op;
  op.kind = *kind;
  op.a = f[1];
  op.b = f[2];
  op.off = std::stoull(f[3]);
  op.len = static_cast<std::uint32_t>(std::stoul(f[4]));
  op.flags = static_cast<std::uint32_t>(std::stoul(f[5]));
  op.seed = static_cast<std::uint32_t>(std::stoul(f[6]));
  return op;
}

std::string Describe(const Outcome& o) {
  std::string err =
      o.err ? std::string(strerrorname_np(o.err) ? strerrorname_np(o.err) : "?") : "ok";
  bool printable =
      std::all_of(o.value.begin(), o.value.end(), [](char c) { return c >= 32 && c < 127; });
  std::string v = printable && o.value.size() <= 200
                      ? o.value
                      : "<" + std::to_string(o.value.size()) + " bytes>";
  return err + (v.empty() ? "" : " " + v);
}

std::string Difference(const Outcome& mount, const Outcome& reference) {
  std::string s = "mount: " + Describe(mount) + "\n  reference: " + Describe(reference);
  if (mount.err == reference.err && mount.value != reference.value) {
    std::size_t i = 0;
    while (i < mount.value.size() && i < reference.value.size() &&
           mount.value[i] == reference.value[i])
      ++i;
    s += "\n  first difference at byte " + std::to_string(i) + " (lengths " +
         std::to_string(mount.value.size()) + " and " + std::to_string(reference.value.size()) +
         ")";
  }
  return s;
}

bool Mutates(Kind k) {
  switch (k) {
    case Kind::kRead:
    case Kind::kPread:
    case Kind::kReadlink:
    case Kind::kReaddir:
    case Kind::kStat:
    case Kind::kMmapRead:
    case Kind::kFsync:
    case Kind::kGetXattr:
    case Kind::kRefresh:
    case Kind::kRemount:
      return false;
    default:
      return true;
  }
}

std::vector<std::string> Paths(const Op& op) {
  switch (op.kind) {
    case Kind::kRename:
    case Kind::kLink:
    case Kind::kCopyRange:
    case Kind::kSendfile:
      return {op.a, op.b};
    default:
      return {op.a};
  }
}

Op Generate(std::mt19937_64& rng, const std::vector<std::string>& pool) {
  // Weights: reads and stats most, then writes, then the namespace.
  static constexpr std::array<int, static_cast<int>(Kind::kCount)> kWeights = {
      6, 6, 4, 12, 8, 4, 5, 3, 2, 2, 2, 3, 2, 6, 10, 3, 2, 3, 2, 2, 2, 2, 2, 2, 0};
  int total = 0;
  for (int w : kWeights) total += w;
  int pick = static_cast<int>(rng() % static_cast<unsigned>(total));
  int k = 0;
  while (pick >= kWeights[k]) pick -= kWeights[k++];
  Op op;
  op.kind = static_cast<Kind>(k);
  op.a = pool[rng() % pool.size()];
  op.b = pool[rng() % pool.size()];
  if (op.kind == Kind::kSymlink) {
    static const std::array<const char*, 5> kTargets = {"x", "y", "c/x", "nowhere", "a/x"};
    op.b = kTargets[rng() % kTargets.size()];
  }
  bool far = rng() % 5 == 0;  // sometimes near the end of a big file
  op.off = far ? rng() % (4u << 20) : rng() % (96u << 10);
  op.len = rng() % 4 == 0 ? static_cast<std::uint32_t>(rng() % 300000)
                          : static_cast<std::uint32_t>(rng() % 20000);
  op.flags = static_cast<std::uint32_t>(rng());
  op.seed = static_cast<std::uint32_t>(rng());
  return op;
}

std::string Bytes(std::size_t size, std::uint32_t seed) {
  std::string s(size, '\0');
  std::uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (std::size_t i = 0; i < size; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    s[i] = static_cast<char>(x);
  }
  return s;
}

Outcome Apply(const std::string& root, const Op& op, bool on_mount) {
  std::string a = root + "/" + op.a, b = root + "/" + op.b;
  switch (op.kind) {
    case Kind::kCreate: {
      int flags = O_CREAT | O_WRONLY | ((op.flags & 1) ? O_EXCL : 0) |
                  ((op.flags & 2) ? O_TRUNC : 0) | ((op.flags & 4) ? O_APPEND : 0);
      Fd fd(open(a.c_str(), flags, 0644));
      if (fd.fd < 0) return Err();
      return WriteAll(fd.fd, Bytes(op.len, op.seed), (op.flags & 4) ? -1 : 0);
    }
    case Kind::kPwrite:
    case Kind::kAppend: {
      Fd fd(open(a.c_str(), O_WRONLY | (op.kind == Kind::kAppend ? O_APPEND : 0)));
      if (fd.fd < 0) return Err();
      return WriteAll(fd.fd, Bytes(op.len, op.seed),
                      op.kind == Kind::kAppend ? -1 : static_cast<long long>(op.off));
    }
    case Kind::kRead: {
      Fd fd(open(a.c_str(), O_RDONLY));
      if (fd.fd < 0) return Err();
      return ReadToEnd(fd.fd);
    }
    case Kind::kPread: {
      Fd fd(open(a.c_str(), O_RDONLY));
      if (fd.fd < 0) return Err();
      std::string buf(op.len, '\0');
      ssize_t n = pread(fd.fd, buf.data(), buf.size(), static_cast<off_t>(op.off));
      if (n < 0) return Err();
      buf.resize(static_cast<std::size_t>(n));
      return Outcome{0, buf};
    }
    case Kind::kTruncate:
      return truncate(a.c_str(), static_cast<off_t>(op.off)) == 0 ? Outcome{} : Err();
    case Kind::kRename: {
      int rc = (op.flags & 1)
                   ? renameat2(AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), RENAME_NOREPLACE)
                   : rename(a.c_str(), b.c_str());
      return rc == 0 ? Outcome{} : Err();
    }
    case Kind::kUnlink:
      return unlink(a.c_str()) == 0 ? Outcome{} : Err();
    case Kind::kLink:
      return link(a.c_str(), b.c_str()) == 0 ? Outcome{} : Err();
    case Kind::kSymlink:
      return symlink(op.b.c_str(), a.c_str()) == 0 ? Outcome{} : Err();
    case Kind::kReadlink: {
      char buf[4096];
      ssize_t n = readlink(a.c_str(), buf, sizeof buf);
      if (n < 0) return Err();
      return Outcome{0, std::string(buf, static_cast<std::size_t>(n))};
    }
    case Kind::kMkdir:
      return mkdir(a.c_str(), 0755) == 0 ? Outcome{} : Err();
    case Kind::kRmdir:
      return rmdir(a.c_str()) == 0 ? Outcome{} : Err();
    case Kind::kReaddir:
      return Readdir(a);
    case Kind::kStat:
      return Stat(a);
    case Kind::kCopyRange:
    case Kind::kSendfile:
      return Copy(a, b, op, op.kind == Kind::kSendfile);
    case Kind::kMmapRead:
    case Kind::kMmapWrite:
      return Map(a, op, op.kind == Kind::kMmapWrite);
    case Kind::kFsync: {
      Fd fd(open(a.c_str(), O_RDONLY));
      if (fd.fd < 0) return Err();
      return ((op.flags & 1) ? fdatasync(fd.fd) : fsync(fd.fd)) == 0 ? Outcome{} : Err();
    }
    case Kind::kSetXattr: {
      std::string v = Bytes(op.len % 64, op.seed);
      for (auto& c : v) c = static_cast<char>('a' + static_cast<unsigned char>(c) % 26);
      return setxattr(a.c_str(), "user.fz", v.data(), v.size(),
                      (op.flags & 1) ? XATTR_CREATE : 0) == 0
                 ? Outcome{}
                 : Err();
    }
    case Kind::kGetXattr:
      return Xattrs(a);
    case Kind::kChmod: {
      static constexpr std::array<mode_t, 4> kModes = {0600, 0644, 0755, 0444};
      return chmod(a.c_str(), kModes[op.flags % 4]) == 0 ? Outcome{} : Err();
    }
    case Kind::kRefresh: {
      struct stat st {};
      if (stat(a.c_str(), &st) != 0) return Err();
      if (!S_ISREG(st.st_mode)) return Outcome{0, "not a file"};
      if (!on_mount) return Outcome{0, "refreshed"};
      // A kept file (changed locally, or never fetched) is EBUSY: as good as done.
      if (setxattr(a.c_str(), "user.originfs.refresh", "1", 1, 0) != 0 && errno != EBUSY)
        return Err();
      return Outcome{0, "refreshed"};
    }
    case Kind::kRemount:
      return Outcome{};
    case Kind::kCount:
      break;
  }
  return Outcome{EINVAL, "bad op"};
}

}  // namespace originfs::difffuzz
