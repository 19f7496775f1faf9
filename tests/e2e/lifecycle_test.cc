// The daemon as a process: mounting (foreground and background), bad
// configuration, concurrent readers, and a crash in the middle of a download.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <future>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

// Only for the library version originfs is built against.
#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 34
#endif
#include <fuse3/fuse_lowlevel.h>

#include "tests/support/mount_fixture.h"

namespace originfs::e2e {
namespace {

class LifecycleTest : public MountTest {};

TEST_F(LifecycleTest, MountsAsFuseOriginfs) {
  ASSERT_NO_FATAL_FAILURE(Mount());
  auto mounts = FindMounts(mnt_);
  ASSERT_EQ(mounts.size(), 1u);
  EXPECT_EQ(mounts[0].fstype, "fuse.originfs");
  struct stat st {};
  ASSERT_EQ(StatErr(mnt_, &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
}

TEST_F(LifecycleTest, ForegroundDaemonExitsOnUnmount) {
  ASSERT_NO_FATAL_FAILURE(Mount());
  pid_t pid = mount_->pid();
  ASSERT_GT(pid, 0);
  auto r = RunCommand({"fusermount3", "-u", mnt_}, 10s);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  int status = 0;
  ASSERT_TRUE(WaitPid(pid, 5s, &status)) << "originfs -f still running 5 s after fusermount3 -u";
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  EXPECT_FALSE(IsMounted(mnt_));
}

TEST_F(LifecycleTest, BackgroundModeReturnsWithTheMountUsable) {
  origin_.SetFile("/bg.txt", "background");
  // Make the daemonised process our child once its parent exits, so teardown
  // can wait for it (and, if it hangs, kill exactly that pid).
  ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  auto started = mount_->StartBackground(Defaults());
  prctl(PR_SET_CHILD_SUBREAPER, 0);
  ASSERT_TRUE(started);
  EXPECT_EQ(mount_->fstype(), "fuse.originfs");
  // Usable immediately, without polling.
  auto r = ReadAll(M("bg.txt"));
  EXPECT_EQ(r.err, 0) << r.stage << ": " << ErrnoName(r.err);
  EXPECT_EQ(r.data, "background");
  pid_t pid = mount_->pid();
  EXPECT_GT(pid, 0) << "daemon process not found among our children";
  ASSERT_TRUE(mount_->Unmount());
  if (pid > 0) {
    EXPECT_NE(kill(pid, 0), 0) << "daemon still alive after unmount";
  }
}

TEST_F(LifecycleTest, ConcurrentReadersShareOneGet) {
  const std::string body = PatternBytes(3 * 1024 * 1024 + 11, 10);
  testing::Behavior b;
  b.body = body;
  b.delay_ms = 300;  // so every reader arrives while the download runs
  origin_.Set("/popular.bin", b);
  ASSERT_NO_FATAL_FAILURE(Mount());

  constexpr int kReaders = 16;
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::future<ReadResult>> results;
  for (int i = 0; i < kReaders; ++i) {
    results.push_back(std::async(std::launch::async, [&] {
      ready++;
      while (!go) std::this_thread::yield();
      return ReadAll(M("popular.bin"));
    }));
  }
  while (ready < kReaders) std::this_thread::yield();
  go = true;
  for (int i = 0; i < kReaders; ++i) {
    ASSERT_EQ(results[i].wait_for(20s), std::future_status::ready) << "reader " << i << " hangs";
    auto r = results[i].get();
    EXPECT_EQ(r.err, 0) << "reader " << i << ": " << r.stage << ": " << ErrnoName(r.err);
    EXPECT_EQ(r.data.size(), body.size()) << "reader " << i;
    EXPECT_TRUE(r.data == body) << "reader " << i << " got different bytes";
  }
  EXPECT_EQ(origin_.GetCount("/popular.bin"), 1) << ::testing::PrintToString(origin_.Log());
  EXPECT_EQ(origin_.TotalCount(), 1) << ::testing::PrintToString(origin_.Log());
}

// Reads of different keys (named by key_of) download in parallel.
void ReadManyKeysInParallel(testing::TestOrigin& origin, const std::string& mnt,
                            const std::function<std::string(int)>& key_of) {
  constexpr int kKeys = 8;
  std::vector<std::string> bodies;
  for (int i = 0; i < kKeys; ++i) {
    bodies.push_back(PatternBytes(256 * 1024 + i, 20 + i));
    testing::Behavior b;
    b.body = bodies.back();
    b.delay_ms = 250;
    origin.Set("/" + key_of(i), b);
  }
  std::vector<std::future<ReadResult>> results;
  for (int i = 0; i < kKeys; ++i) {
    std::string path = mnt + "/" + key_of(i);
    results.push_back(std::async(std::launch::async, [path] { return ReadAll(path); }));
  }
  for (int i = 0; i < kKeys; ++i) {
    ASSERT_EQ(results[i].wait_for(20s), std::future_status::ready);
    auto r = results[i].get();
    EXPECT_EQ(r.err, 0) << key_of(i) << ": " << r.stage << ": " << ErrnoName(r.err);
    EXPECT_TRUE(r.data == bodies[i]) << key_of(i);
  }
  // Serialised lookups would reach the origin one at a time; each request
  // waits 250 ms, so readers that start together overlap at the origin.
  EXPECT_GE(origin.MaxConcurrent(), 2) << "downloads of different keys were serialised";
}

TEST_F(LifecycleTest, ConcurrentReadersOfKeysInDifferentDirectories) {
  origin_.SetNginxDirectories(true);
  ASSERT_NO_FATAL_FAILURE(Mount());
  ReadManyKeysInParallel(origin_, mnt_,
                         [](int i) { return "d" + std::to_string(i) + "/k" + std::to_string(i); });
}

TEST_F(LifecycleTest, ConcurrentReadersOfKeysInOneDirectory) {
  // libfuse before 3.17 never passes FUSE_PARALLEL_DIROPS to the kernel;
  // fs/kernel_channel.cc sets it in the INIT reply, so these lookups run in
  // parallel instead of one at a time behind the directory's lock.
  ASSERT_NO_FATAL_FAILURE(Mount());
  ReadManyKeysInParallel(origin_, mnt_, [](int i) { return "k" + std::to_string(i); });
}

TEST_F(LifecycleTest, KillDuringDownloadLeavesNoPartialFile) {
  const std::string body = PatternBytes(8 * 1024 * 1024, 11);
  testing::Behavior b;
  b.body = body;
  b.stall_ms = 3000;  // half the body, then a pause
  origin_.Set("/big.bin", b);
  ASSERT_NO_FATAL_FAILURE(Mount());

  auto reader = std::async(std::launch::async, [this] { return ReadAll(M("big.bin")); });
  // Wait until the GET is running and the first half had time to arrive.
  EventuallyRequested(origin_, "/big.bin");
  ASSERT_EQ(origin_.GetCount("/big.bin"), 1);
  std::this_thread::sleep_for(500ms);
  EXPECT_FALSE(Exists(B("big.bin"))) << "object visible in the bucket before it is complete";

  mount_->Kill();
  ASSERT_EQ(reader.wait_for(10s), std::future_status::ready)
      << "reader still blocked after the daemon died";
  auto r = reader.get();
  EXPECT_NE(r.err, 0) << "read completed although the daemon was killed mid-download";
  EXPECT_FALSE(Exists(B("big.bin"))) << "partial object left in the bucket";
  EXPECT_TRUE(StagingFiles(bucket_).empty()) << ::testing::PrintToString(StagingFiles(bucket_));

  // The dead mount answers ENOTCONN (for a name the kernel has not cached);
  // unmount it and start again.
  EXPECT_EQ(StatErr(M("after-death.txt")), ENOTCONN);
  ASSERT_TRUE(mount_->Unmount());
  origin_.SetFile("/big.bin", body);  // no more stalling
  ASSERT_NO_FATAL_FAILURE(Mount(last_options_));
  auto again = ReadAll(M("big.bin"));
  ASSERT_EQ(again.err, 0) << again.stage << ": " << ErrnoName(again.err);
  EXPECT_EQ(again.data.size(), body.size());
  EXPECT_TRUE(again.data == body);
  ASSERT_TRUE(EventuallyExists(B("big.bin")));
  EXPECT_TRUE(ReadAll(B("big.bin")).data == body);
  EXPECT_EQ(origin_.GetCount("/big.bin"), 2);
  EXPECT_TRUE(StagingFiles(bucket_).empty());
}

// Start-up failures follow mount(8): 1 for a usage or configuration error
// (command line, options, rules), 32 for a mount failure (bucket or mount
// point missing, already mounted there, the kernel refused); one line on
// stderr, nothing mounted.
TEST_F(LifecycleTest, StartupFailuresExitWithMountCodesAndOneLine) {
  struct Case {
    const char* what;
    std::vector<std::string> args;
    int code;
  };
  const std::string origin = "origin=" + origin_.url();
  const Case cases[] = {
      {"bucket missing", {root_ + "/no-such-bucket", mnt_, "-o", origin}, 32},
      {"bucket is a file", {root_ + "/file", mnt_, "-o", origin}, 32},
      {"mount point missing", {bucket_, root_ + "/no-such-mnt", "-o", origin}, 32},
      {"bad option value", {bucket_, mnt_, "-o", origin + ",negative_ttl=soon"}, 1},
      {"no rules", {bucket_, mnt_}, 1},
      {"rules file missing", {bucket_, mnt_, "-o", "rules=" + root_ + "/none.toml"}, 1},
      {"unknown argument", {bucket_, mnt_, "--frobnicate"}, 1},
  };
  ASSERT_EQ(WriteAll(root_ + "/file", "not a directory"), 0);
  for (const auto& c : cases) {
    for (bool foreground : {true, false}) {
      std::vector<std::string> argv = {ORIGINFS_BINARY};
      argv.insert(argv.end(), c.args.begin(), c.args.end());
      if (foreground) argv.push_back("-f");
      std::string how = std::string(c.what) + (foreground ? " (-f)" : " (background)");
      auto r = RunCommand(argv, 10s);
      EXPECT_FALSE(r.timed_out) << how;
      EXPECT_EQ(r.exit_code, c.code) << how << ": " << r.err;
      EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << how << ": " << r.err;
      EXPECT_TRUE(r.err.starts_with("originfs: ")) << how << ": " << r.err;
      EXPECT_FALSE(IsMounted(mnt_)) << how;
    }
  }
  EXPECT_EQ(origin_.TotalCount(), 0);
}

// A second originfs on a mount point that has one would stack on it (two
// daemons, the first hidden): refused with one line and 32; the first mount
// stays alone and keeps serving.
TEST_F(LifecycleTest, MountingOverAnOriginfsMountIsRefused) {
  origin_.SetFile("/one.txt", "first mount");
  ASSERT_NO_FATAL_FAILURE(Mount());
  std::string other = root_ + "/other-bucket";
  ASSERT_EQ(mkdir(other.c_str(), 0755), 0);
  for (bool foreground : {true, false}) {
    std::string how = foreground ? "-f" : "background";
    std::vector<std::string> argv = {ORIGINFS_BINARY, other, mnt_, "-o", "origin=" + origin_.url()};
    if (foreground) argv.push_back("-f");
    auto r = RunCommand(argv, 10s);
    EXPECT_FALSE(r.timed_out) << how << ": the second daemon kept running";
    EXPECT_EQ(r.exit_code, 32) << how << ": " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << how << ": " << r.err;
    EXPECT_NE(r.err.find("already an originfs mount"), std::string::npos) << how << ": " << r.err;
    // Also through a path that is not spelled like the mount point.
    argv[2] = root_ + "/./mnt/";
    auto r2 = RunCommand(argv, 10s);
    EXPECT_FALSE(r2.timed_out) << how;
    EXPECT_EQ(r2.exit_code, 32) << how << ": " << r2.err;
    EXPECT_EQ(FindMounts(mnt_).size(), 1u) << how << ": stacked mounts";
  }
  auto r = ReadAll(M("one.txt"));
  EXPECT_EQ(r.err, 0) << r.stage << ": " << ErrnoName(r.err);
  EXPECT_EQ(r.data, "first mount");
  EXPECT_TRUE(ListDir(other).empty()) << "the refused daemon touched its bucket";
}

// Two mounts of one local bucket directory with the default shared=auto:
// the second finds the first's instance lock and coordinates; the first,
// running uncoordinated until then, notices the second at its next miss.
// The same keys read at once through both make one GET each.
TEST_F(LifecycleTest, TwoMountsOfOneLocalBucketMakeOneGetPerKey) {
  constexpr int kKeys = 6;
  std::vector<std::string> bodies;
  for (int i = 0; i < kKeys; ++i) {
    testing::Behavior b;
    b.body = PatternBytes(64 * 1024 + i, 60 + i);
    b.delay_ms = 400;  // both mounts ask while the first GET is still being answered
    bodies.push_back(b.body);
    origin_.Set("/k" + std::to_string(i) + ".bin", b);
  }
  origin_.SetFile("/before.txt", "read before the second mount");
  ASSERT_NO_FATAL_FAILURE(Mount());
  // The first mount is busy (and uncoordinated) before the second appears.
  ASSERT_EQ(ReadAll(M("before.txt")).data, "read before the second mount");
  std::string mnt2 = root_ + "/mnt2";
  ASSERT_EQ(mkdir(mnt2.c_str(), 0755), 0);
  OriginfsMount second(bucket_, mnt2, root_ + "/rules2.toml", root_ + "/originfs2.log");
  ASSERT_TRUE(second.Start(Defaults()));

  std::vector<std::future<ReadResult>> reads;
  for (int i = 0; i < kKeys; ++i) {
    for (const std::string& m : {mnt_, mnt2, mnt_, mnt2}) {
      std::string path = m + "/k" + std::to_string(i) + ".bin";
      reads.push_back(std::async(std::launch::async, [path] { return ReadAll(path); }));
    }
  }
  for (std::size_t j = 0; j < reads.size(); ++j) {
    ASSERT_EQ(reads[j].wait_for(30s), std::future_status::ready) << "reader " << j << " hangs";
    auto r = reads[j].get();
    EXPECT_EQ(r.err, 0) << "reader " << j << ": " << r.stage << ": " << ErrnoName(r.err);
    EXPECT_TRUE(r.data == bodies[j / 4]) << "reader " << j << " got other bytes";
  }
  for (int i = 0; i < kKeys; ++i) {
    std::string k = "k" + std::to_string(i) + ".bin";
    EXPECT_EQ(origin_.GetCount("/" + k), 1) << k << ": " << ::testing::PrintToString(origin_.Log());
    ASSERT_TRUE(EventuallyExists(B(k)));
    EXPECT_TRUE(ReadAll(B(k)).data == bodies[i]) << k;
  }
  ASSERT_TRUE(second.Unmount());
  EXPECT_NE(second.Log().find("another instance serves this bucket"), std::string::npos)
      << second.Log();
  EXPECT_NE(mount_->Log().find("another instance serves this bucket"), std::string::npos);
  EXPECT_TRUE(ListDir(bucket_ + "/.originfs/locks").empty())
      << ::testing::PrintToString(ListDir(bucket_ + "/.originfs/locks"));
}

struct BadRules {
  const char* name;
  const char* toml;  // "%s" is replaced by a valid origin URL
};

class BadRulesTest : public MountTest, public ::testing::WithParamInterface<BadRules> {};

TEST_P(BadRulesTest, ExitsNonZeroNamingTheRuleAndMountsNothing) {
  std::string toml = GetParam().toml;
  if (auto pos = toml.find("%s"); pos != std::string::npos) toml.replace(pos, 2, origin_.url());
  std::string rules = root_ + "/bad.toml";
  ASSERT_EQ(WriteAll(rules, toml), 0);
  auto r = RunCommand(
      {ORIGINFS_BINARY, bucket_, mnt_, "-o", "rules=" + rules + ",log_level=debug", "-f"}, 10s);
  EXPECT_FALSE(r.timed_out) << "originfs kept running with a bad rules file";
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("rule #"), std::string::npos) << "stderr does not name the rule:\n" << r.err;
  EXPECT_FALSE(IsMounted(mnt_));
  EXPECT_EQ(origin_.TotalCount(), 0);
}

const BadRules kBadRules[] = {
    {"NonHttpOrigin",
     "[[rule]]\nprefix = \"a/\"\norigin = \"%s\"\n\n[[rule]]\nprefix = \"\"\norigin = "
     "\"gopher://example.com\"\n"},
    {"UnknownKey", "[[rule]]\nprefix = \"\"\norigin = \"%s\"\ncolour = \"blue\"\n"},
    {"BadDirsMode", "[[rule]]\nprefix = \"\"\norigin = \"%s\"\ndirs = \"sometimes\"\n"},
    {"WritebackNotABool", "[[rule]]\nprefix = \"\"\norigin = \"%s\"\nwriteback = \"yes\"\n"},
    {"DuplicatePrefix",
     "[[rule]]\nprefix = \"x/\"\norigin = \"%s\"\n\n[[rule]]\nprefix = \"x/\"\norigin = "
     "\"http://127.0.0.1:1\"\n"},
};

INSTANTIATE_TEST_SUITE_P(Rules, BadRulesTest, ::testing::ValuesIn(kBadRules),
                         [](const ::testing::TestParamInfo<BadRules>& info) {
                           return info.param.name;
                         });

TEST_F(LifecycleTest, UnparsableRulesFileFails) {
  std::string rules = root_ + "/garbage.toml";
  ASSERT_EQ(WriteAll(rules, "[[rule]\nprefix = \n"), 0);
  auto r = RunCommand({ORIGINFS_BINARY, bucket_, mnt_, "-o", "rules=" + rules, "-f"}, 10s);
  EXPECT_FALSE(r.timed_out);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_FALSE(r.err.empty());
  EXPECT_FALSE(IsMounted(mnt_));
}

}  // namespace
}  // namespace originfs::e2e
