#include "tests/support/mount_fixture.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>

extern char** environ;

namespace originfs::e2e {

namespace {

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// mountinfo escapes ' ', '\t', '\n' and '\\' as octal.
std::string Unescape(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && std::isdigit(static_cast<unsigned char>(s[i + 1]))) {
      out.push_back(static_cast<char>(std::stoi(s.substr(i + 1, 3), nullptr, 8)));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::vector<MountEntry> AllMounts() {
  std::vector<MountEntry> out;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::vector<std::string> f;
    for (std::string w; ls >> w;) f.push_back(w);
    auto dash = std::find(f.begin(), f.end(), "-");
    if (f.size() < 5 || dash == f.end() || f.end() - dash < 3) continue;
    MountEntry e;
    e.mount_point = Unescape(f[4]);
    sscanf(f[2].c_str(), "%u:%u", &e.major, &e.minor);
    e.fstype = *(dash + 1);
    e.source = *(dash + 2);
    out.push_back(std::move(e));
  }
  return out;
}

std::string Tail(const std::string& s, std::size_t n) {
  return s.size() <= n ? s : "[...]\n" + s.substr(s.size() - n);
}

std::string JoinOpts(const std::vector<std::string>& opts) {
  std::string out;
  for (const auto& o : opts) {
    if (!out.empty()) out += ",";
    out += o;
  }
  return out;
}

std::string MakeTempDir(const std::string& prefix) {
  std::string tmpl = "/tmp/" + prefix + "XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data())) return "";
  return std::filesystem::canonical(buf.data()).string();
}

}  // namespace

// ---- processes -------------------------------------------------------------

bool WaitPid(pid_t pid, std::chrono::milliseconds timeout, int* status) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int st = 0;
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid) {
      if (status) *status = st;
      return true;
    }
    if (r < 0 && errno != EINTR) return errno == ECHILD;  // not ours or already reaped
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
}

ClosedPort::ClosedPort() {
  fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd_ >= 0 && bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port_ = ntohs(a.sin_port);
}

ClosedPort::~ClosedPort() {
  if (fd_ >= 0) close(fd_);
}

std::vector<std::string> EnvironmentWith(const std::map<std::string, std::string>& extra) {
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) {
    std::string kv = *e;
    std::string key = kv.substr(0, kv.find('='));
    if (!extra.contains(key)) env.push_back(kv);
  }
  for (const auto& [k, v] : extra) env.push_back(k + "=" + v);
  return env;
}

CommandResult RunCommand(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                         const RunOptions& options) {
  CommandResult result;
  std::string dir = MakeTempDir("originfs-cmd-");
  std::string out_path = dir + "/out", err_path = dir + "/err";

  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  std::vector<std::string> env = EnvironmentWith(options.env);
  std::vector<char*> cenv;
  for (auto& kv : env) cenv.push_back(kv.data());
  cenv.push_back(nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, options.stdin_path.c_str(), O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, cargv[0], &fa, nullptr, cargv.data(), cenv.data());
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    result.err = "posix_spawnp " + argv[0] + ": " + strerror(rc);
    std::filesystem::remove_all(dir);
    return result;
  }
  int status = 0;
  if (!WaitPid(pid, timeout, &status)) {
    result.timed_out = true;
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
  }
  if (WIFEXITED(status) && !result.timed_out) result.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result.term_signal = WTERMSIG(status);
  result.out = Slurp(out_path);
  result.err = Slurp(err_path);
  std::filesystem::remove_all(dir);
  return result;
}

// ---- mounts ----------------------------------------------------------------

std::vector<MountEntry> FindMounts(const std::string& mount_point) {
  std::vector<MountEntry> out;
  for (auto& e : AllMounts())
    if (e.mount_point == mount_point) out.push_back(e);
  return out;
}

std::vector<MountEntry> MountsUnder(const std::string& path) {
  std::vector<MountEntry> out;
  for (auto& e : AllMounts())
    if (e.mount_point == path || e.mount_point.starts_with(path + "/")) out.push_back(e);
  return out;
}

bool IsMounted(const std::string& mount_point) { return !FindMounts(mount_point).empty(); }

// ---- files -----------------------------------------------------------------

ReadResult ReadAll(const std::string& path) {
  ReadResult r;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    r.err = errno;
    r.stage = "open";
    return r;
  }
  char buf[64 * 1024];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      r.err = errno;
      r.stage = "read";
      break;
    }
    if (n == 0) break;
    r.data.append(buf, static_cast<std::size_t>(n));
  }
  close(fd);
  return r;
}

int WriteAll(const std::string& path, const std::string& data, mode_t mode) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return errno;
  std::size_t off = 0;
  while (off < data.size()) {
    ssize_t n = write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      close(fd);
      return e;
    }
    off += static_cast<std::size_t>(n);
  }
  if (close(fd) != 0) return errno;
  return 0;
}

int StatErr(const std::string& path, struct stat* st, bool follow) {
  struct stat tmp;
  int rc = follow ? stat(path.c_str(), st ? st : &tmp) : lstat(path.c_str(), st ? st : &tmp);
  return rc == 0 ? 0 : errno;
}

bool Exists(const std::string& path) { return StatErr(path) == 0; }

bool EventuallyExists(const std::string& path, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!Exists(path)) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

bool EventuallyRequested(const testing::TestOrigin& origin, const std::string& path,
                         std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (origin.GetCount(path) == 0) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

std::vector<std::string> ListDir(const std::string& path) {
  std::vector<std::string> out;
  DIR* d = opendir(path.c_str());
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back(n);
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> StagingFiles(const std::string& bucket) {
  std::vector<std::string> out;
  std::error_code ec;
  std::filesystem::path staging = std::filesystem::path(bucket) / ".originfs" / "staging";
  for (auto it = std::filesystem::recursive_directory_iterator(staging, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file(ec)) out.push_back(it->path().string());
  }
  return out;
}

std::string PatternBytes(std::size_t size, unsigned seed) {
  std::mt19937 gen(seed);
  std::string s(size, '\0');
  for (auto& c : s) c = static_cast<char>(gen() & 0xff);
  return s;
}

std::string ErrnoName(int err) {
  if (err == 0) return "0";
  const char* name = strerrorname_np(err);
  return name ? name : std::to_string(err);
}

std::string RulesToml(const std::vector<RuleSpec>& rules) {
  std::string out;
  for (const auto& r : rules) {
    out += "[[rule]]\n";
    out += "prefix = \"" + r.prefix + "\"\n";
    out += "origin = \"" + r.origin + "\"\n";
    if (r.writeback) out += std::string("writeback = ") + (*r.writeback ? "true" : "false") + "\n";
    if (!r.dirs.empty()) out += "dirs = \"" + r.dirs + "\"\n";
    if (!r.extra.empty()) out += r.extra + (r.extra.ends_with('\n') ? "" : "\n");
    out += "\n";
  }
  return out;
}

// ---- the daemon -------------------------------------------------------------

OriginfsMount::OriginfsMount(std::string bucket, std::string mnt, std::string rules_path,
                             std::string log_path)
    : bucket_(std::move(bucket)),
      mnt_(std::move(mnt)),
      rules_path_(std::move(rules_path)),
      log_path_(std::move(log_path)) {}

OriginfsMount::~OriginfsMount() {
  auto r = Unmount();
  if (!r) std::cerr << "OriginfsMount teardown: " << r.message() << "\n";
}

// The daemon to run: the build's, or ORIGINFS_TEST_BINARY (a copy that a
// rebuild does not replace under a long fuzzer run, or a sanitizer build's).
static std::string Binary() {
  const char* b = std::getenv("ORIGINFS_TEST_BINARY");
  return b && *b ? b : ORIGINFS_BINARY;
}

std::vector<std::string> OriginfsMount::Args(const DaemonOptions& options, bool foreground) const {
  std::vector<std::string> opts = {"log_level=debug"};
  if (!options.rules.empty()) opts.insert(opts.begin(), "rules=" + rules_path_);
  if (options.negative_ttl) opts.push_back("negative_ttl=" + std::to_string(*options.negative_ttl));
  for (const auto& o : options.extra_opts) opts.push_back(o);
  // ORIGINFS_TEST_MOUNT_OPTS=a,b: more options for every test mount, to run
  // the suite by hand in another mode (e.g. io_uring, passthrough=off).
  if (const char* more = std::getenv("ORIGINFS_TEST_MOUNT_OPTS"); more && *more)
    opts.push_back(more);
  std::vector<std::string> args = {Binary(), bucket_, mnt_, "-o", JoinOpts(opts)};
  if (foreground) args.push_back("-f");
  if (options.fd_limit) {  // prlimit sets the limits and then execs the daemon (same pid)
    std::string n = std::to_string(*options.fd_limit);
    args.insert(args.begin(), {"/usr/bin/prlimit", "--nofile=" + n + ":" + n});
  }
  return args;
}

::testing::AssertionResult OriginfsMount::Start(const DaemonOptions& options) {
  if (pid_ > 0) return ::testing::AssertionFailure() << "already started";
  if (WriteAll(rules_path_, RulesToml(options.rules)) != 0)
    return ::testing::AssertionFailure() << "cannot write " << rules_path_;

  auto args = Args(options, true);
  std::vector<char*> cargv;
  for (const auto& a : args) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);
  int rc = posix_spawn(&pid_, cargv[0], &fa, nullptr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    pid_ = -1;
    return ::testing::AssertionFailure() << "posix_spawn " << Binary() << ": " << strerror(rc);
  }

  auto deadline = std::chrono::steady_clock::now() + 10s;
  for (;;) {
    auto mounts = FindMounts(mnt_);
    if (!mounts.empty() && mounts.back().fstype.starts_with("fuse")) {
      fstype_ = mounts.back().fstype;
      break;
    }
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return ::testing::AssertionFailure()
             << "originfs exited before mounting (status " << status << "); log:\n"
             << Tail(Log(), 8000);
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return ::testing::AssertionFailure()
             << "originfs did not mount " << mnt_ << " within 10 s; log:\n"
             << Tail(Log(), 8000);
    }
    std::this_thread::sleep_for(10ms);
  }
  StartWatchdog(options.watchdog);
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult OriginfsMount::StartBackground(const DaemonOptions& options) {
  if (pid_ > 0) return ::testing::AssertionFailure() << "already started";
  if (WriteAll(rules_path_, RulesToml(options.rules)) != 0)
    return ::testing::AssertionFailure() << "cannot write " << rules_path_;
  DaemonOptions with_log = options;
  with_log.extra_opts.push_back("log_file=" + log_path_);
  auto args = Args(with_log, false);

  // Children we already have, so the daemon can be told apart.
  auto children = [] {
    std::vector<pid_t> out;
    for (const auto& e : std::filesystem::directory_iterator("/proc")) {
      std::string name = e.path().filename().string();
      if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
      std::string stat = Slurp(e.path().string() + "/stat");
      auto close_paren = stat.rfind(')');
      if (close_paren == std::string::npos) continue;
      std::istringstream rest(stat.substr(close_paren + 2));
      char state;
      pid_t ppid = 0;
      rest >> state >> ppid;
      if (ppid == getpid()) out.push_back(std::stoi(name));
    }
    return out;
  };
  auto before = children();

  auto r = RunCommand(args, 15s);
  if (r.timed_out) {
    return ::testing::AssertionFailure()
           << "originfs (background mode) did not return within 15 s; stderr:\n"
           << r.err;
  }
  // The mount must be usable as soon as the command returns: no polling.
  auto mounts = FindMounts(mnt_);
  if (!mounts.empty()) fstype_ = mounts.back().fstype;
  for (pid_t p : children())
    if (std::find(before.begin(), before.end(), p) == before.end()) pid_ = p;
  if (r.exit_code != 0) {
    return ::testing::AssertionFailure() << "originfs exited with " << r.exit_code << "; stderr:\n"
                                         << r.err << "\nlog:\n"
                                         << Tail(Log(), 8000);
  }
  if (mounts.empty())
    return ::testing::AssertionFailure() << "originfs returned 0 but " << mnt_ << " is not mounted";
  if (pid_ > 0) StartWatchdog(options.watchdog);
  return ::testing::AssertionSuccess();
}

void OriginfsMount::StartWatchdog(std::chrono::seconds limit) {
  StopWatchdog();
  {
    std::lock_guard lock(mu_);
    stop_watchdog_ = false;
  }
  pid_t pid = pid_;
  watchdog_ = std::thread([this, limit, pid] {
    std::unique_lock lock(mu_);
    if (cv_.wait_for(lock, limit, [this] { return stop_watchdog_; })) return;
    std::cerr << "watchdog: mount " << mnt_ << " still up after " << limit.count()
              << " s; SIGKILL originfs pid " << pid << " to unblock the test\n";
    kill(pid, SIGKILL);  // our own child: aborts the FUSE connection...
    lock.unlock();
    // ...unless one of its threads is stuck in the kernel (a notification
    // waiting for a lock that a blocked caller holds): abort it by hand.
    std::this_thread::sleep_for(500ms);
    AbortConnection(mnt_);
  });
}

void AbortConnection(const std::string& mount_point) {
  auto mounts = FindMounts(mount_point);
  if (mounts.empty()) return;
  const char* dir = "/sys/fs/fuse/connections";
  bool mounted_here = false;
  std::string probe = std::string(dir) + "/" + std::to_string(mounts.back().minor);
  if (access(probe.c_str(), F_OK) != 0) {
    mounted_here = mount("fusectl", dir, "fusectl", 0, nullptr) == 0;
  }
  std::string abort_path = probe + "/abort";
  if (FILE* f = std::fopen(abort_path.c_str(), "w")) {
    std::fputs("1", f);
    std::fclose(f);
    std::cerr << "aborted the FUSE connection of " << mount_point << "\n";
  }
  if (mounted_here) umount2(dir, MNT_DETACH);
}

void OriginfsMount::StopWatchdog() {
  if (!watchdog_.joinable()) return;
  {
    std::lock_guard lock(mu_);
    stop_watchdog_ = true;
  }
  cv_.notify_all();
  watchdog_.join();
}

bool OriginfsMount::WaitExit(std::chrono::milliseconds timeout, int* status) {
  if (pid_ <= 0 || !WaitPid(pid_, timeout, status)) return false;
  StopWatchdog();
  pid_ = -1;
  return true;
}

void OriginfsMount::Kill() {
  StopWatchdog();
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

::testing::AssertionResult OriginfsMount::Unmount() {
  StopWatchdog();
  std::string notes;
  for (int attempt = 0; attempt < 3 && IsMounted(mnt_); ++attempt) {
    auto r = RunCommand({"fusermount3", "-u", mnt_}, 10s);
    if (IsMounted(mnt_)) {
      notes += "fusermount3 -u: exit " + std::to_string(r.exit_code) + " " + r.err;
      auto l = RunCommand({"umount", "-l", mnt_}, 10s);
      if (l.exit_code != 0) notes += "; umount -l: " + l.err;
    }
  }
  if (pid_ > 0) {
    if (!WaitPid(pid_, 5s)) {
      notes +=
          "originfs pid " + std::to_string(pid_) + " did not exit within 5 s of unmount; SIGKILL\n";
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    pid_ = -1;
  }
  if (IsMounted(mnt_))
    return ::testing::AssertionFailure() << "mount left at " << mnt_ << ": " << notes;
  return ::testing::AssertionSuccess();
}

std::string OriginfsMount::Log() const { return Slurp(log_path_); }

// ---- the fixture -------------------------------------------------------------

MountTest::MountTest() = default;

void MountTest::SetUp() {
  root_ = MakeTempDir("originfs-e2e-");
  ASSERT_FALSE(root_.empty()) << "mkdtemp: " << strerror(errno);
  bucket_ = root_ + "/bucket";
  mnt_ = root_ + "/mnt";
  plain_ = root_ + "/plain";
  for (const auto& d : {bucket_, mnt_, plain_}) ASSERT_EQ(mkdir(d.c_str(), 0755), 0) << d;
  mount_ = std::make_unique<OriginfsMount>(bucket_, mnt_, root_ + "/rules.toml",
                                           root_ + "/originfs.log");
}

void MountTest::TearDown() {
  if (root_.empty()) return;
  // fds into the temp root left open by the test (they would also block the unmount).
  std::vector<std::string> leaked;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    auto target = std::filesystem::read_symlink(e.path(), ec).string();
    if (!ec && (target == root_ || target.starts_with(root_ + "/"))) leaked.push_back(target);
  }
  EXPECT_TRUE(leaked.empty()) << "fds left open: " << ::testing::PrintToString(leaked);

  if (mount_) {
    EXPECT_TRUE(mount_->Unmount());
  }
  // Read after the daemon exited: it flushes debug lines only then.
  std::string log = mount_ ? mount_->Log() : "";
  mount_.reset();
  auto left = MountsUnder(root_);
  EXPECT_TRUE(left.empty()) << "mounts left under " << root_;
  if (HasFailure() && !log.empty())
    std::cerr << "---- originfs log ----\n" << Tail(log, 20000) << "----\n";
  if (left.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }
}

DaemonOptions MountTest::Defaults() const {
  DaemonOptions o;
  o.rules = {RuleSpec{"", origin_.url()}};
  return o;
}

void MountTest::Mount(const DaemonOptions& options) {
  last_options_ = options;
  ASSERT_TRUE(mount_->Start(options));
}

void MountTest::Unmount() { ASSERT_TRUE(mount_->Unmount()); }

void MountTest::Remount() {
  ASSERT_NO_FATAL_FAILURE(Unmount());
  ASSERT_NO_FATAL_FAILURE(Mount(last_options_));
}

long MountTest::Counter(const std::string& name) const {
  char buf[64] = {};
  ssize_t n = getxattr(mnt_.c_str(), ("user.originfs." + name).c_str(), buf, sizeof buf - 1);
  return n > 0 ? std::strtol(buf, nullptr, 10) : -1;
}

}  // namespace originfs::e2e
