// originfs on servers: mounting through mount(8) and fstab, for both fstab
// types — "fuse.originfs" (mount.fuse3 runs `originfs` from PATH) and
// "originfs" (mount(8) runs /sbin/mount.originfs) — with the options a server
// fstab line carries; and a bad rules file refused through mount(8).
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "tests/support/servers_support.h"

namespace originfs::e2e {
namespace {

// stat(path) as another user, in a forked child; 0 or the errno.
int StatAs(uid_t uid, gid_t gid, const std::string& path) {
  const char* p = path.c_str();
  pid_t pid = fork();
  if (pid == 0) {
    if (setgroups(0, nullptr) != 0 || setresgid(gid, gid, gid) != 0 ||
        setresuid(uid, uid, uid) != 0)
      _exit(120);
    struct stat st;
    _exit(stat(p, &st) == 0 ? 0 : (errno & 0x7f));
  }
  if (pid < 0) return -1;
  int status = 0;
  if (!WaitPid(pid, 10s, &status)) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -2;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -3;
}

std::string Mode(mode_t m) {
  char buf[16];
  snprintf(buf, sizeof buf, "%04o", m & 07777);
  return buf;
}

class ServersMountTest : public ServersTest, public ::testing::WithParamInterface<std::string> {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(ServersTest::SetUp());
    links_ = std::make_unique<SystemLinks>();
    if (!links_->problem().empty())
      GTEST_SKIP() << "cannot make originfs findable by mount(8): " << links_->problem();
  }
  void TearDown() override {
    ServersTest::TearDown();  // unmount before the links go
    links_.reset();
  }
  const std::string& type() const { return GetParam(); }

  std::unique_ptr<SystemLinks> links_;
};

TEST_P(ServersMountTest, FstabLinesWithServerOptions) {
  origin_.SetFile("/f.txt", "fstab body");
  origin_.SetFile("/g.txt", "second fetch");
  std::string rules = WriteRules("rules.toml", {RuleSpec{"", origin_.url()}});
  // Let other users reach the mount points (for allow_other).
  ASSERT_EQ(chmod(root_.c_str(), 0711), 0);
  std::string b1 = Dir("b1"), m1 = Dir("m1"), b2 = Dir("b2"), m2 = Dir("m2"), b3 = Dir("b3"),
              m3 = Dir("m3");
  ASSERT_EQ(WriteAll(b2 + "/local.txt", "local two"), 0);
  ASSERT_EQ(WriteAll(b3 + "/local.txt", "local three"), 0);
  ASSERT_EQ(chmod((b3 + "/local.txt").c_str(), 0644), 0);
  std::string l1 = root_ + "/m1.log", l2 = root_ + "/m2.log", l3 = root_ + "/m3.log";
  for (const auto& l : {l1, l2, l3}) NoteLog(l);

  std::string fstab = root_ + "/fstab";
  std::string text =
      "# originfs test fstab\n" + b1 + " " + m1 + " " + type() + " defaults,rules=" + rules +
      ",log_file=" + l1 + ",_netdev,nofail,x-systemd.automount,x-systemd.idle-timeout=60 0 0\n" +
      b2 + " " + m2 + " " + type() + " ro,nosuid,nodev,allow_other,rules=" + rules +
      ",log_file=" + l2 + ",_netdev 0 0\n" + b3 + " " + m3 + " " + type() +
      " noauto,nofail,rules=" + rules + ",log_file=" + l3 + ",uid=1234,gid=2345,umask=027 0 0\n";
  ASSERT_EQ(WriteAll(fstab, text), 0);

  // mount -a: every line but the noauto one.
  auto all = RunCommand({"mount", "-T", fstab, "-a"}, 30s);
  ASSERT_FALSE(all.timed_out);
  EXPECT_EQ(all.exit_code, 0) << all.err;
  ASSERT_TRUE(Adopt(m1, l1));
  ASSERT_TRUE(Adopt(m2, l2));
  EXPECT_FALSE(IsMounted(m3)) << "mount -a mounted a noauto line";

  // noauto: mount by mount point.
  auto one = RunCommand({"mount", "-T", fstab, m3}, 30s);
  ASSERT_FALSE(one.timed_out);
  EXPECT_EQ(one.exit_code, 0) << one.err;
  ASSERT_TRUE(Adopt(m3, l3));

  // Line 1 (defaults, _netdev, nofail, x-systemd.*): an ordinary read-write mount.
  {
    auto r = ReadAll(m1 + "/f.txt");
    EXPECT_EQ(r.err, 0) << r.stage << ": " << ErrnoName(r.err);
    EXPECT_EQ(r.data, "fstab body");
    EXPECT_TRUE(EventuallyExists(b1 + "/f.txt"));
    EXPECT_EQ(WriteAll(m1 + "/written.txt", "w"), 0);
    EXPECT_EQ(ReadFile(b1 + "/written.txt"), "w");
    auto info = MountInfoAt(m1);
    ASSERT_TRUE(info);
    EXPECT_TRUE(HasWord(info->mount_options, "rw"))
        << ::testing::PrintToString(info->mount_options);
    EXPECT_EQ(info->source, b1);
  }
  // Line 2 (ro, nosuid, nodev, allow_other).
  {
    auto info = MountInfoAt(m2);
    ASSERT_TRUE(info);
    EXPECT_TRUE(HasWord(info->mount_options, "ro"))
        << ::testing::PrintToString(info->mount_options);
    EXPECT_TRUE(HasWord(info->mount_options, "nosuid"))
        << ::testing::PrintToString(info->mount_options);
    EXPECT_TRUE(HasWord(info->mount_options, "nodev"))
        << ::testing::PrintToString(info->mount_options);
    EXPECT_TRUE(HasWord(info->super_options, "allow_other"))
        << ::testing::PrintToString(info->super_options);
    EXPECT_TRUE(HasWord(info->super_options, "default_permissions"))
        << ::testing::PrintToString(info->super_options);
    auto r = ReadAll(m2 + "/f.txt");  // read-only still reads through
    EXPECT_EQ(r.err, 0) << r.stage << ": " << ErrnoName(r.err);
    EXPECT_EQ(r.data, "fstab body");
    EXPECT_EQ(ReadAll(m2 + "/local.txt").data, "local two");
    EXPECT_EQ(ErrnoName(WriteAll(m2 + "/new.txt", "x")), ErrnoName(EROFS));
    EXPECT_EQ(ErrnoName(WriteAll(m2 + "/local.txt", "x")), ErrnoName(EROFS));
    errno = 0;
    EXPECT_EQ(mkdir((m2 + "/d").c_str(), 0755), -1);
    EXPECT_EQ(ErrnoName(errno), ErrnoName(EROFS));
    EXPECT_EQ(ReadFile(b2 + "/local.txt"), "local two");
    EXPECT_FALSE(Exists(b2 + "/new.txt"));
    // allow_other: another user gets in here, but not into the mount without it.
    EXPECT_EQ(ErrnoName(StatAs(65534, 65534, m2 + "/local.txt")), "0");
    EXPECT_EQ(ErrnoName(StatAs(65534, 65534, m1)), ErrnoName(EACCES));
  }
  // Line 3 (noauto, uid=, gid=, umask=).
  {
    struct stat st {};
    ASSERT_EQ(StatErr(m3 + "/local.txt", &st), 0);
    EXPECT_EQ(st.st_uid, 1234u);
    EXPECT_EQ(st.st_gid, 2345u);
    EXPECT_EQ(Mode(st.st_mode), "0640");
    EXPECT_EQ(ReadAll(m3 + "/local.txt").data, "local three");
    auto r = ReadAll(m3 + "/g.txt");
    EXPECT_EQ(r.err, 0) << r.stage << ": " << ErrnoName(r.err);
    EXPECT_EQ(r.data, "second fetch");
    ASSERT_TRUE(EventuallyExists(b3 + "/g.txt"));
    ASSERT_EQ(StatErr(m3 + "/g.txt", &st), 0);
    EXPECT_EQ(st.st_uid, 1234u);
    EXPECT_EQ(st.st_gid, 2345u);
    EXPECT_EQ(st.st_mode & 027, 0u) << Mode(st.st_mode);
    ASSERT_EQ(StatErr(m3, &st), 0);
    EXPECT_EQ(st.st_uid, 1234u);
    EXPECT_EQ(st.st_gid, 2345u);
    EXPECT_EQ(Mode(st.st_mode), "0750");
    // What is in the bucket keeps its real owner.
    ASSERT_EQ(StatErr(b3 + "/local.txt", &st), 0);
    EXPECT_EQ(st.st_uid, 0u);
    EXPECT_EQ(Mode(st.st_mode), "0644");
  }

  // mount -a again: everything is mounted already; nothing is stacked.
  auto again = RunCommand({"mount", "-T", fstab, "-a"}, 30s);
  EXPECT_EQ(again.exit_code, 0) << again.err;
  for (const auto& m : {m1, m2})
    EXPECT_EQ(FindMounts(m).size(), 1u) << m << " mounted twice by a second mount -a";
  for (auto& a : adopted_) {
    for (int i = 0; i < 3 && FindMounts(a->mnt()).size() > 1; ++i) {
      // Stacked duplicates: unmount the top ones; their daemons are strays we adopt.
      auto extra = DaemonChildrenFor(a->mnt());
      std::erase(extra, a->pid());
      RunCommand({"umount", a->mnt()}, 10s);
      for (pid_t p : extra) {
        if (!WaitPid(p, 5s)) {
          kill(p, SIGKILL);
          waitpid(p, nullptr, 0);
        }
      }
    }
  }

  // umount(8) stops each daemon cleanly.
  for (auto& a : adopted_) {
    int status = -1;
    EXPECT_TRUE(a->Unmount(&status));
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << a->mnt() << ": status " << status;
  }
  EXPECT_TRUE(MountsUnder(root_).empty());
}

TEST_P(ServersMountTest, MountTypeWithOptions) {
  origin_.SetFile("/direct.txt", "mounted with mount -t");
  std::string rules = WriteRules("rules.toml", {RuleSpec{"", origin_.url()}});
  std::string log = root_ + "/direct.log";
  auto r = RunCommand(
      {"mount", "-t", type(), bucket_, mnt_, "-o", "rules=" + rules + ",log_file=" + log}, 30s);
  ASSERT_FALSE(r.timed_out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(Adopt(mnt_, log));
  auto info = MountInfoAt(mnt_);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->fstype, "fuse.originfs");
  EXPECT_EQ(info->source, bucket_);
  auto read = ReadAll(M("direct.txt"));
  EXPECT_EQ(read.err, 0) << read.stage << ": " << ErrnoName(read.err);
  EXPECT_EQ(read.data, "mounted with mount -t");
  EXPECT_TRUE(EventuallyExists(B("direct.txt")));
  auto rules_attr = GetXattr(mnt_, "user.originfs.rules");
  EXPECT_EQ(rules_attr.value_or("?"), "1");

  int status = -1;
  ASSERT_TRUE(adopted_.back()->Unmount(&status));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
}

TEST_P(ServersMountTest, BadRulesFileFailsWithOneLineNamingTheRule) {
  std::string bad = root_ + "/bad.toml";
  ASSERT_EQ(WriteAll(bad, "[[rule]]\nprefix = \"x/\"\norigin = \"" + origin_.url() +
                              "\"\n\n[[rule]]\nprefix = \"x/\"\norigin = \"http://127.0.0.1:1\"\n"),
            0);
  std::string fstab = root_ + "/fstab";
  ASSERT_EQ(
      WriteAll(fstab, bucket_ + " " + mnt_ + " " + type() + " rules=" + bad + ",_netdev 0 0\n"), 0);

  auto check = [&](const CommandResult& r, const std::string& how) {
    EXPECT_FALSE(r.timed_out) << how;
    EXPECT_NE(r.exit_code, 0) << how;
    auto lines = Lines(r.err);
    EXPECT_EQ(lines.size(), 1u) << how << " stderr:\n" << r.err;
    EXPECT_NE(r.err.find("rule #2"), std::string::npos) << how << " stderr:\n" << r.err;
    EXPECT_NE(r.err.find("duplicate prefix"), std::string::npos) << how << " stderr:\n" << r.err;
    EXPECT_FALSE(IsMounted(mnt_)) << how;
    EXPECT_TRUE(DaemonChildrenFor(mnt_).empty()) << how << ": a daemon is running";
  };
  check(RunCommand({"mount", "-t", type(), bucket_, mnt_, "-o", "rules=" + bad}, 30s),
        "mount -t " + type());
  check(RunCommand({"mount", "-T", fstab, mnt_}, 30s), "mount -T fstab MNT");
  check(RunCommand({"mount", "-T", fstab, "-a"}, 30s), "mount -T fstab -a");
  EXPECT_EQ(origin_.TotalCount(), 0);
}

INSTANTIATE_TEST_SUITE_P(FstabTypes, ServersMountTest,
                         ::testing::Values("fuse.originfs", "originfs"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param == "originfs" ? std::string("Originfs")
                                                           : std::string("FuseOriginfs");
                         });

}  // namespace
}  // namespace originfs::e2e
