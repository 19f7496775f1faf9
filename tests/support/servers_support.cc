#include "tests/support/servers_support.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

extern char** environ;

namespace originfs::e2e {

namespace {

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(c);
    }
  }
  out.push_back(cur);
  return out;
}

std::string UnescapeMountinfo(const std::string& s) {
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

std::vector<char*> CStrings(std::vector<std::string>& v) {
  std::vector<char*> out;
  for (auto& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

}  // namespace

// ---- processes -------------------------------------------------------------

pid_t SpawnLogged(const std::vector<std::string>& argv, const std::string& log_path,
                  const std::map<std::string, std::string>& env_extra) {
  std::vector<std::string> args = argv;
  auto cargv = CStrings(args);
  std::vector<std::string> env = EnvironmentWith(env_extra);
  auto cenv = CStrings(env);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, cargv[0], &fa, nullptr, cargv.data(), cenv.data());
  posix_spawn_file_actions_destroy(&fa);
  return rc == 0 ? pid : -1;
}

std::vector<pid_t> DaemonChildrenFor(const std::string& mnt) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
    std::string name = e.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    std::string stat = ReadFile(e.path().string() + "/stat");
    auto open_paren = stat.find('(');
    auto close_paren = stat.rfind(')');
    if (open_paren == std::string::npos || close_paren == std::string::npos) continue;
    std::string comm = stat.substr(open_paren + 1, close_paren - open_paren - 1);
    std::istringstream rest(stat.substr(close_paren + 2));
    char state = 0;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid != getpid() || comm != "originfs" || state == 'Z') continue;
    auto args = Split(ReadFile(e.path().string() + "/cmdline"), '\0');
    if (std::find(args.begin(), args.end(), mnt) != args.end()) out.push_back(std::stoi(name));
  }
  return out;
}

bool WaitUntil(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  for (auto& l : Split(text, '\n'))
    if (!l.empty()) out.push_back(l);
  return out;
}

// ---- mounts ----------------------------------------------------------------

std::optional<MountInfoEntry> MountInfoAt(const std::string& mount_point) {
  std::optional<MountInfoEntry> found;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::vector<std::string> f;
    for (std::string w; ls >> w;) f.push_back(w);
    auto dash = std::find(f.begin(), f.end(), "-");
    if (f.size() < 6 || dash == f.end() || f.end() - dash < 3) continue;
    if (UnescapeMountinfo(f[4]) != mount_point) continue;
    MountInfoEntry e;
    e.mount_options = Split(f[5], ',');
    e.fstype = *(dash + 1);
    e.source = UnescapeMountinfo(*(dash + 2));
    if (f.end() - dash >= 4) e.super_options = Split(*(dash + 3), ',');
    found = e;  // the last one is on top
  }
  return found;
}

bool HasWord(const std::vector<std::string>& words, const std::string& word) {
  return std::find(words.begin(), words.end(), word) != words.end();
}

// ---- xattrs ----------------------------------------------------------------

std::optional<std::string> GetXattr(const std::string& path, const std::string& name, int* err) {
  for (;;) {
    ssize_t size = getxattr(path.c_str(), name.c_str(), nullptr, 0);
    if (size < 0) {
      if (err) *err = errno;
      return std::nullopt;
    }
    std::string value(static_cast<std::size_t>(size) + 1, '\0');
    ssize_t got = getxattr(path.c_str(), name.c_str(), value.data(), value.size());
    if (got < 0 && errno == ERANGE) continue;
    if (got < 0) {
      if (err) *err = errno;
      return std::nullopt;
    }
    value.resize(static_cast<std::size_t>(got));
    if (err) *err = 0;
    return value;
  }
}

std::vector<std::string> ListXattr(const std::string& path) {
  for (;;) {
    ssize_t size = listxattr(path.c_str(), nullptr, 0);
    if (size <= 0) return {};
    std::string names(static_cast<std::size_t>(size), '\0');
    ssize_t got = listxattr(path.c_str(), names.data(), names.size());
    if (got < 0 && errno == ERANGE) continue;
    if (got < 0) return {};
    names.resize(static_cast<std::size_t>(got));
    std::vector<std::string> out;
    for (auto& n : Split(names, '\0'))
      if (!n.empty()) out.push_back(n);
    return out;
  }
}

std::map<std::string, std::string> ParseGetfattr(const std::string& out) {
  std::map<std::string, std::string> m;
  for (const auto& line : Lines(out)) {
    if (line.starts_with("#")) continue;
    auto eq = line.find('=');
    if (eq == std::string::npos) {
      m[line] = "";
      continue;
    }
    std::string v = line.substr(eq + 1);
    if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
    m[line.substr(0, eq)] = v;
  }
  return m;
}

// ---- the links mount(8) needs ------------------------------------------------

namespace {
constexpr const char* kLinksLock = "/tmp/originfs-e2e-system-links.lock";
}

SystemLinks::SystemLinks() {
  lock_fd_ = open(kLinksLock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd_ < 0) {
    problem_ = std::string("open ") + kLinksLock + ": " + strerror(errno);
    return;
  }
  // Other test processes hold it for a few seconds each.
  bool locked = WaitUntil([this] { return flock(lock_fd_, LOCK_EX | LOCK_NB) == 0; }, 120s);
  if (!locked) {
    problem_ = std::string("could not lock ") + kLinksLock + " within 120 s";
    return;
  }
  Ensure("/usr/local/bin/originfs", ORIGINFS_BINARY);
  if (problem_.empty())
    Ensure("/sbin/mount.originfs",
           std::string(ORIGINFS_SOURCE_DIR) + "/mount-helpers/mount.originfs");
}

void SystemLinks::Ensure(const std::string& path, const std::string& target) {
  struct stat want {
  }, have{};
  if (stat(target.c_str(), &want) != 0) {
    problem_ = target + ": " + strerror(errno);
    return;
  }
  if (lstat(path.c_str(), &have) != 0) {
    if (errno != ENOENT) {
      problem_ = path + ": " + strerror(errno);
      return;
    }
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
    if (symlink(target.c_str(), path.c_str()) != 0) {
      problem_ = "symlink " + path + " -> " + target + ": " + strerror(errno);
      return;
    }
    created_.push_back(path);
    targets_.push_back(target);
    return;
  }
  // Something is there already: usable only if it is (a link to) the file we test.
  if (stat(path.c_str(), &have) != 0 || have.st_dev != want.st_dev || have.st_ino != want.st_ino)
    problem_ = path + " already exists and is not " + target + " (not touching it)";
}

SystemLinks::~SystemLinks() {
  for (std::size_t i = 0; i < created_.size(); ++i) {
    std::error_code ec;
    auto target = std::filesystem::read_symlink(created_[i], ec);
    if (!ec && target == targets_[i]) {
      if (unlink(created_[i].c_str()) != 0)
        std::cerr << "SystemLinks: unlink " << created_[i] << ": " << strerror(errno) << "\n";
    } else {
      std::cerr << "SystemLinks: " << created_[i] << " changed since we created it; left alone\n";
    }
  }
  if (lock_fd_ >= 0) close(lock_fd_);  // releases the flock
}

// ---- mounts whose daemon we adopted ------------------------------------------

AdoptedMount::~AdoptedMount() {
  auto r = Unmount();
  if (!r) std::cerr << "AdoptedMount teardown: " << r.message() << "\n";
}

::testing::AssertionResult AdoptedMount::Unmount(int* exit_status) {
  std::string notes;
  for (int attempt = 0; attempt < 3 && IsMounted(mnt_); ++attempt) {
    auto r = RunCommand({"umount", mnt_}, 10s);
    if (!IsMounted(mnt_)) break;
    notes += "umount: exit " + std::to_string(r.exit_code) + " " + r.err;
    auto f = RunCommand({"fusermount3", "-u", mnt_}, 10s);
    if (!IsMounted(mnt_)) break;
    notes += "; fusermount3 -u: " + f.err;
    auto l = RunCommand({"umount", "-l", mnt_}, 10s);
    if (l.exit_code != 0) notes += "; umount -l: " + l.err;
  }
  if (pid_ > 0) {
    int status = 0;
    if (!WaitPid(pid_, 5s, &status)) {
      notes +=
          "originfs pid " + std::to_string(pid_) + " did not exit within 5 s of unmount; SIGKILL\n";
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
    }
    if (exit_status) *exit_status = status;
    pid_ = -1;
  }
  if (IsMounted(mnt_))
    return ::testing::AssertionFailure() << "mount left at " << mnt_ << ": " << notes;
  return ::testing::AssertionSuccess();
}

// ---- the fixture -------------------------------------------------------------

void ServersTest::SetUp() {
  ASSERT_NO_FATAL_FAILURE(MountTest::SetUp());
  ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0) << strerror(errno);
  subreaper_ = true;
}

void ServersTest::TearDown() {
  for (auto& m : adopted_) EXPECT_TRUE(m->Unmount());
  adopted_.clear();
  // A test that stopped half-way may leave mounts made through mount(8) that
  // it never adopted: unmount them and stop their daemons (our children, by pid).
  pid_t fixture_pid = mount_ ? mount_->pid() : -1;
  auto mounts = MountsUnder(root_);
  std::sort(mounts.begin(), mounts.end(), [](const MountEntry& a, const MountEntry& b) {
    return a.mount_point.size() > b.mount_point.size();
  });
  for (const auto& e : mounts) {
    auto pids = DaemonChildrenFor(e.mount_point);
    std::erase(pids, fixture_pid);
    if (pids.empty() && mount_ && e.mount_point == mnt_) continue;  // the fixture's own
    ADD_FAILURE() << "mount left at " << e.mount_point << " by the test; unmounting it";
    AdoptedMount stray(e.mount_point, pids.size() == 1 ? pids[0] : -1);
    EXPECT_TRUE(stray.Unmount());
  }
  // Daemons of ours for paths in our temp root that serve no mount.
  std::error_code ec;
  for (const auto& p : std::filesystem::directory_iterator("/proc", ec)) {
    std::string name = p.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    pid_t pid = std::stoi(name);
    if (pid == fixture_pid) continue;
    auto args = Split(ReadFile(p.path().string() + "/cmdline"), '\0');
    bool ours = std::any_of(args.begin(), args.end(),
                            [&](const std::string& a) { return a.starts_with(root_ + "/"); });
    if (!ours) continue;
    std::string stat = ReadFile(p.path().string() + "/stat");
    auto close_paren = stat.rfind(')');
    if (close_paren == std::string::npos) continue;
    std::istringstream rest(stat.substr(close_paren + 2));
    char state = 0;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid != getpid() || stat.find("(originfs)") == std::string::npos) continue;
    if (state != 'Z')
      ADD_FAILURE() << "originfs pid " << pid << " left running by the test; stopping it";
    kill(pid, SIGTERM);
    if (!WaitPid(pid, 5s)) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  }
  if (HasFailure()) {
    for (const auto& l : logs_) {
      std::string text = ReadFile(l);
      if (text.size() > 12000) text = "[...]\n" + text.substr(text.size() - 12000);
      std::cerr << "---- " << l << " ----\n" << text << "----\n";
    }
  }
  MountTest::TearDown();
  if (subreaper_) prctl(PR_SET_CHILD_SUBREAPER, 0);
}

std::string ServersTest::Dir(const std::string& name) {
  std::string d = root_ + "/" + name;
  std::error_code ec;
  std::filesystem::create_directories(d, ec);
  chmod(d.c_str(), 0755);
  return d;
}

::testing::AssertionResult ServersTest::Adopt(const std::string& mnt, const std::string& log_path) {
  if (!log_path.empty()) NoteLog(log_path);
  auto info = MountInfoAt(mnt);
  std::vector<pid_t> pids;
  // The daemon is reparented to us when its foreground half exits, which
  // happens before mount(8) returns; allow a moment anyway.
  WaitUntil(
      [&] {
        pids = DaemonChildrenFor(mnt);
        for (auto& a : adopted_) std::erase(pids, a->pid());
        return !pids.empty();
      },
      2s);
  adopted_.push_back(std::make_unique<AdoptedMount>(mnt, pids.size() == 1 ? pids[0] : -1));
  if (!info) return ::testing::AssertionFailure() << mnt << " is not mounted";
  if (info->fstype != "fuse.originfs")
    return ::testing::AssertionFailure() << mnt << " is mounted with type " << info->fstype;
  if (pids.size() != 1)
    return ::testing::AssertionFailure() << "expected one originfs daemon for " << mnt
                                         << " among our children, found " << pids.size();
  return ::testing::AssertionSuccess();
}

AdoptedMount* ServersTest::Adopted(const std::string& mnt) {
  for (auto& a : adopted_)
    if (a->mnt() == mnt) return a.get();
  return nullptr;
}

std::string ServersTest::WriteRules(const std::string& name, const std::vector<RuleSpec>& rules) {
  std::string path = root_ + "/" + name;
  EXPECT_EQ(WriteAll(path, RulesToml(rules)), 0) << path;
  return path;
}

}  // namespace originfs::e2e
