// End-to-end test support: real originfs mounts in temp dirs under /tmp.
//
// OriginfsMount runs the built `originfs` binary as a child process (kept by
// pid, stderr to a log file), waits until the mount shows up in
// /proc/self/mountinfo, and on teardown unmounts with `fusermount3 -u`
// (falling back to `umount -l`), waits a bounded time for the child and only
// then SIGKILLs that one pid. A watchdog SIGKILLs the daemon if a test blocks
// on the mount for too long, which aborts the FUSE connection so blocked
// syscalls return instead of hanging the suite.
//
// MountTest is the gtest fixture: a temp root with bucket/, mnt/ and plain/
// (a plain directory for comparing syscalls), a TestOrigin, and checks in
// TearDown that no mount and no fd into the temp root is left behind.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/support/test_origin.h"

namespace originfs::e2e {

using namespace std::chrono_literals;

// ---- processes -------------------------------------------------------------

struct CommandResult {
  int exit_code = -1;      // exit status, or -1 when killed by a signal / timed out
  int term_signal = 0;     // the signal that ended it, if any
  bool timed_out = false;  // still running at the deadline (then SIGKILLed)
  std::string out;         // stdout
  std::string err;         // stderr
};

struct RunOptions {
  std::string stdin_path = "/dev/null";
  std::map<std::string, std::string> env;  // added to (or replacing in) our environment
};

// Runs argv[0] (searched in PATH) with stdin from options.stdin_path and
// stdout/stderr captured to files, waiting for the process itself to exit
// (not for EOF, so a daemon that inherits the streams does not block us).
// After timeout the process, and only it, is SIGKILLed.
CommandResult RunCommand(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                         const RunOptions& options = {});

// Our environment with extra added (or replacing), as "KEY=VALUE" strings.
std::vector<std::string> EnvironmentWith(const std::map<std::string, std::string>& extra);

// Waits up to timeout for child pid to exit; returns true if it was reaped.
bool WaitPid(pid_t pid, std::chrono::milliseconds timeout, int* status = nullptr);

// A TCP port on 127.0.0.1 that is bound but never listens: connecting to it
// is refused, and no other process can take it while this object lives.
class ClosedPort {
 public:
  ClosedPort();
  ~ClosedPort();
  ClosedPort(const ClosedPort&) = delete;
  ClosedPort& operator=(const ClosedPort&) = delete;
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// ---- mounts ----------------------------------------------------------------

struct MountEntry {
  std::string mount_point;
  std::string fstype;  // e.g. "fuse.originfs"
  std::string source;
  unsigned major = 0, minor = 0;
};

// All mounts at exactly mount_point (stacked mounts give several).
std::vector<MountEntry> FindMounts(const std::string& mount_point);
// All mounts at or below path.
std::vector<MountEntry> MountsUnder(const std::string& path);
bool IsMounted(const std::string& mount_point);
// Aborts the FUSE connection of the mount at mount_point through fusectl
// (mounted at /sys/fs/fuse/connections for the moment if it is not): every
// request waiting on it fails, even if the daemon cannot exit.
void AbortConnection(const std::string& mount_point);

// ---- files -----------------------------------------------------------------

struct ReadResult {
  int err = 0;        // 0, or errno of the failing call
  std::string stage;  // "open" or "read" when err != 0
  std::string data;
};
// open(O_RDONLY) + read to EOF.
ReadResult ReadAll(const std::string& path);
// Creates/truncates and writes; returns 0 or errno.
int WriteAll(const std::string& path, const std::string& data, mode_t mode = 0644);
// 0 or errno of lstat (stat when follow).
int StatErr(const std::string& path, struct stat* st = nullptr, bool follow = false);
bool Exists(const std::string& path);
// Polls until path exists. A reader may follow a download and see all bytes a
// moment before the object is linked into the bucket, so write-back checks wait.
bool EventuallyExists(const std::string& path, std::chrono::milliseconds timeout = 3s);
// Polls until the origin has received a GET for path (a download started).
bool EventuallyRequested(const testing::TestOrigin& origin, const std::string& path,
                         std::chrono::milliseconds timeout = 5s);
// Names in a directory, sorted, without "." and "..".
std::vector<std::string> ListDir(const std::string& path);
// Regular files below bucket/.originfs/staging (leftovers of downloads).
std::vector<std::string> StagingFiles(const std::string& bucket);
// Deterministic pseudo-random bytes.
std::string PatternBytes(std::size_t size, unsigned seed);
std::string ErrnoName(int err);

// ---- the daemon -------------------------------------------------------------

struct RuleSpec {
  std::string prefix;
  std::string origin;
  std::optional<bool> writeback;  // absent: the default
  std::string dirs;               // "" : the default
  std::string extra;              // more TOML lines for this rule, verbatim
};
std::string RulesToml(const std::vector<RuleSpec>& rules);

struct DaemonOptions {
  std::vector<RuleSpec> rules;  // empty: no rules= option (e.g. origin= in extra_opts)
  std::optional<int> negative_ttl;
  std::vector<std::string> extra_opts;    // more "-o" options
  std::chrono::seconds watchdog = 40s;    // SIGKILL the daemon if still mounted after this
  std::optional<unsigned long> fd_limit;  // run the daemon under `ulimit -n` this (soft and hard)
};

class OriginfsMount {
 public:
  // Paths must exist; rules_path and log_path are (re)written.
  OriginfsMount(std::string bucket, std::string mnt, std::string rules_path, std::string log_path);
  ~OriginfsMount();  // Unmount()
  OriginfsMount(const OriginfsMount&) = delete;
  OriginfsMount& operator=(const OriginfsMount&) = delete;

  // `originfs BUCKET MNT -o rules=...,log_level=debug[,...] -f`, waiting up to
  // 10 s until MNT is a fuse mount.
  ::testing::AssertionResult Start(const DaemonOptions& options);
  // The same without -f: the command must return 0 with MNT already mounted.
  // The daemon is then found among our children (the caller must have made
  // this process a child subreaper) so teardown can wait for it.
  ::testing::AssertionResult StartBackground(const DaemonOptions& options);

  // Waits for the daemon to exit on its own and reaps it (status as waitpid's).
  bool WaitExit(std::chrono::milliseconds timeout, int* status);
  // SIGKILL of the daemon (and reaping it); the mount stays, dead.
  void Kill();
  // Unmounts (fusermount3 -u, then umount -l), waits up to 5 s for the daemon
  // to exit, then SIGKILLs it. Returns failure if a mount is left.
  ::testing::AssertionResult Unmount();

  pid_t pid() const { return pid_; }
  const std::string& mnt() const { return mnt_; }
  const std::string& rules_path() const { return rules_path_; }
  std::string Log() const;
  std::string fstype() const { return fstype_; }

 private:
  std::vector<std::string> Args(const DaemonOptions& options, bool foreground) const;
  void StartWatchdog(std::chrono::seconds limit);
  void StopWatchdog();

  std::string bucket_, mnt_, rules_path_, log_path_;
  pid_t pid_ = -1;
  std::string fstype_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_watchdog_ = false;  // guarded by mu_
  std::thread watchdog_;
};

// ---- the fixture -------------------------------------------------------------

class MountTest : public ::testing::Test {
 protected:
  MountTest();
  void SetUp() override;
  void TearDown() override;
  // A counter of the mount (user.originfs.NAME on its root), -1 if unreadable.
  long Counter(const std::string& name) const;

  // One rule, prefix "", for origin_.
  DaemonOptions Defaults() const;
  // Mounts (use with ASSERT_NO_FATAL_FAILURE).
  void Mount(const DaemonOptions& options);
  void Mount() { Mount(Defaults()); }
  void Unmount();
  void Remount();

  std::string M(const std::string& rel) const { return mnt_ + "/" + rel; }
  std::string B(const std::string& rel) const { return bucket_ + "/" + rel; }
  std::string P(const std::string& rel) const { return plain_ + "/" + rel; }

  testing::TestOrigin origin_;
  std::string root_, bucket_, mnt_, plain_;
  std::unique_ptr<OriginfsMount> mount_;
  DaemonOptions last_options_;
};

}  // namespace originfs::e2e
