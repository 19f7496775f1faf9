// Support for the "originfs on servers" e2e tests: mounts made through
// mount(8) and fstab, daemons started with a custom environment, the
// system-wide links mount(8) needs to find originfs, xattr and mountinfo
// helpers.
//
// Daemons that background themselves (mount(8), mount.fuse3 and
// mount.originfs all end in `originfs` forking) are adopted by making the
// test process a child subreaper for the duration of a ServersTest, so they
// can be waited for and, if they hang, SIGKILLed by pid.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/support/mount_fixture.h"

namespace originfs::e2e {

// ---- processes -------------------------------------------------------------

// Starts argv (argv[0] a path) with stdin /dev/null and stdout+stderr
// appended to log_path; returns the pid or -1.
pid_t SpawnLogged(const std::vector<std::string>& argv, const std::string& log_path,
                  const std::map<std::string, std::string>& env = {});

// Our child processes whose comm is "originfs" and whose command line has
// mnt as an argument (daemons adopted through the subreaper).
std::vector<pid_t> DaemonChildrenFor(const std::string& mnt);

// Polls pred every 10 ms until it is true or timeout passes.
bool WaitUntil(const std::function<bool()>& pred, std::chrono::milliseconds timeout);

std::string ReadFile(const std::string& path);
std::vector<std::string> Lines(const std::string& text);  // without empty lines

// ---- mounts ----------------------------------------------------------------

struct MountInfoEntry {
  std::string fstype;
  std::string source;
  std::vector<std::string> mount_options;  // per-mount: rw/ro, nosuid, nodev, ...
  std::vector<std::string> super_options;  // per-superblock: user_id=, allow_other, ...
};
// The top mount at exactly mount_point, if any.
std::optional<MountInfoEntry> MountInfoAt(const std::string& mount_point);
bool HasWord(const std::vector<std::string>& words, const std::string& word);

// ---- xattrs ----------------------------------------------------------------

// getxattr; nullopt with *err set (errno) on failure.
std::optional<std::string> GetXattr(const std::string& path, const std::string& name,
                                    int* err = nullptr);
std::vector<std::string> ListXattr(const std::string& path);
// `getfattr -d` output -> name -> value (quotes removed).
std::map<std::string, std::string> ParseGetfattr(const std::string& out);

// ---- the links mount(8) needs ------------------------------------------------

// Makes `originfs` findable for mount.fuse3 (/usr/local/bin/originfs) and the
// type "originfs" helper findable for mount(8) (/sbin/mount.originfs), by
// symlinks created only where nothing exists yet. Holds an exclusive flock
// for its whole life so tests in other processes (ctest -j) that need the
// links never see them disappear; removes exactly the links it created.
class SystemLinks {
 public:
  SystemLinks();
  ~SystemLinks();
  SystemLinks(const SystemLinks&) = delete;
  SystemLinks& operator=(const SystemLinks&) = delete;

  // Empty when usable; otherwise why not (e.g. a different originfs is
  // installed at the path).
  const std::string& problem() const { return problem_; }
  std::vector<std::string> created() const { return created_; }

 private:
  void Ensure(const std::string& path, const std::string& target);
  int lock_fd_ = -1;
  std::vector<std::string> created_;  // paths we made, with their targets in targets_
  std::vector<std::string> targets_;
  std::string problem_;
};

// ---- mounts whose daemon we adopted ------------------------------------------

// A mount at mnt served by daemon pid (our child). Teardown: umount(8), then
// fusermount3 -u, then umount -l; waits up to 5 s for the daemon, then
// SIGKILLs exactly that pid.
class AdoptedMount {
 public:
  AdoptedMount(std::string mnt, pid_t pid) : mnt_(std::move(mnt)), pid_(pid) {}
  ~AdoptedMount();
  AdoptedMount(const AdoptedMount&) = delete;
  AdoptedMount& operator=(const AdoptedMount&) = delete;

  ::testing::AssertionResult Unmount(int* exit_status = nullptr);
  pid_t pid() const { return pid_; }
  const std::string& mnt() const { return mnt_; }
  void Forget() { pid_ = -1; }  // the caller reaped it

 private:
  std::string mnt_;
  pid_t pid_;
};

// ---- the fixture -------------------------------------------------------------

class ServersTest : public MountTest {
 protected:
  void SetUp() override;
  void TearDown() override;

  // A new directory under the temp root.
  std::string Dir(const std::string& name);
  // After a mount(8) command returned 0: checks mnt is a fuse.originfs mount
  // and adopts its daemon (so teardown unmounts it and waits for it).
  ::testing::AssertionResult Adopt(const std::string& mnt, const std::string& log_path = "");
  AdoptedMount* Adopted(const std::string& mnt);
  // Writes rules (one rule per spec) to root_/name and returns the path.
  std::string WriteRules(const std::string& name, const std::vector<RuleSpec>& rules);
  // Logs printed if the test fails.
  void NoteLog(const std::string& path) { logs_.push_back(path); }

  std::vector<std::unique_ptr<AdoptedMount>> adopted_;
  std::vector<std::string> logs_;
  bool subreaper_ = false;
};

}  // namespace originfs::e2e
